"""Entry point: `python -m server` or the `stride-server` console script."""

from __future__ import annotations

import asyncio
import sys

import structlog

from core.process import configure_observability
from core.settings import SettingsError, load_settings
from runtime import check_server
from server.app import serve
from storage.database import DatabaseUnavailable


def main() -> None:
    try:
        settings = load_settings()
        check_server(settings)
    except SettingsError as exc:
        print(f"stride: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_observability(settings)
    try:
        asyncio.run(serve(settings))
    except (DatabaseUnavailable, RuntimeError, OSError) as exc:
        structlog.get_logger("server").error("cannot start", error=str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
