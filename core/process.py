"""What every Stride process (server, worker) sets up before its first log line."""

from __future__ import annotations

from core.error_reporting import configure_sentry
from core.logging import configure_logging
from core.settings import Settings
from core.telemetry import configure_tracing


def configure_observability(settings: Settings) -> None:
    """Structured logs, tracing and error reporting, from settings."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings.otlp_endpoint)
    configure_sentry(
        settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None,
        settings.sentry_environment,
    )
