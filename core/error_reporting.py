"""Sentry, when a DSN is configured: unhandled errors with request, trace and principal tags."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration


def configure_sentry(dsn: str | None, environment: str) -> None:
    if not dsn:
        return
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        # Frame locals would carry bearer headers and tokens into the report.
        include_local_variables=False,
        # Errors are reported explicitly with their tags; log lines are not events.
        integrations=[LoggingIntegration(level=None, event_level=None)],
        default_integrations=False,
        # Integrations Sentry enables on its own (Huey's adds an argument to every task and
        # reports each failed attempt): Stride reports what it means to, itself.
        auto_enabling_integrations=False,
    )


def report(error: BaseException, **tags: str) -> None:
    """Send one unhandled error (a no-op without a DSN). Tags must never hold secrets."""
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_exception(error)


def flush(timeout: float = 2.0) -> Any:
    return sentry_sdk.flush(timeout=timeout)
