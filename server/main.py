"""Entry point: `python -m server` or the `stride-server` console script."""

from __future__ import annotations

import asyncio
import sys

import structlog

from core.logging import configure_logging
from core.settings import SettingsError, load_settings
from server.app import serve
from storage.database import DatabaseUnavailable


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"stride: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (DatabaseUnavailable, RuntimeError) as exc:
        structlog.get_logger("server").error("cannot start", error=str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
