"""Entry point: `python -m server` or the `stride-server` console script.

One process serves the API, unless settings ask for several (STRIDE_PROCESSES > 1): then
this process becomes their supervisor (server.supervisor) and each of them, started again
through this entry point, is told by its environment that it is a supervised child.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import metadata

import structlog

from core.process import configure_observability
from core.settings import SettingsError, load_settings
from runtime import check_server
from server import supervisor
from server.app import serve
from storage.database import DatabaseUnavailable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="stride-server",
        description="Serve Stride's gRPC API. Every setting is an environment variable with "
        "the STRIDE_ prefix, or a line of .env (README: Configuration); with none, it runs "
        "the embedded default (SQLite and in-process workers in ./.stride-data). "
        "STRIDE_PROCESSES=N runs N server processes on one port under a supervising parent "
        "that restarts them and serves the metrics of all (unset: one per core with "
        "STRIDE_DATABASE_URL, one on the embedded default; docs/processes.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.parse_args(argv)
    try:
        settings = load_settings()
        check_server(settings)
    except SettingsError as exc:
        print(f"stride: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_observability(settings)
    role = supervisor.ChildRole.from_environment()
    try:
        if role is not None:
            supervisor.run_child(settings, role)
        elif settings.process_count > 1:
            sys.exit(supervisor.supervise(settings))
        else:
            asyncio.run(serve(settings))
    except (DatabaseUnavailable, RuntimeError, OSError) as exc:
        structlog.get_logger("server").error("cannot start", error=str(exc))
        sys.exit(1)


def _version() -> str:
    try:
        return metadata.version("stride")
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    main()
