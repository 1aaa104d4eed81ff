"""Entry point: `python -m server` or the `stride-server` console script."""

from __future__ import annotations

import asyncio
import sys

import structlog

from core.error_reporting import configure_sentry
from core.logging import configure_logging
from core.settings import SettingsError, load_settings
from core.telemetry import configure_tracing
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
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings.otlp_endpoint)
    configure_sentry(
        settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None,
        settings.sentry_environment,
    )
    try:
        asyncio.run(serve(settings))
    except (DatabaseUnavailable, RuntimeError, OSError) as exc:
        structlog.get_logger("server").error("cannot start", error=str(exc))
        sys.exit(1)


if __name__ == "__main__":
    main()
