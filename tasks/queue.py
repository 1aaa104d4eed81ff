"""The one Huey instance: SQLite-backed in the data directory, or Redis when configured."""

from __future__ import annotations

from typing import Any

import structlog
from huey import Huey, RedisHuey, SqliteHuey, signals
from huey.consumer import Consumer

from core.error_reporting import report
from core.settings import Settings

NAME = "stride"


def make_huey(settings: Settings) -> Huey:
    huey: Huey
    if settings.redis_url is not None:
        # Huey keeps its keys under `huey.<kind>.<name>`; the name carries the key prefix
        # (punctuation dropped by Huey) so deployments sharing a Redis stay apart.
        huey = RedisHuey(
            f"{settings.redis_key_prefix}{NAME}", url=settings.redis_url.get_secret_value()
        )
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(NAME, filename=str(settings.data_dir / "huey.db"))

    huey.signal(signals.SIGNAL_ERROR)(_report_task_error)
    return huey


def _report_task_error(signal: str, task: Any, exc: BaseException | None = None) -> None:
    if exc is not None:
        request_id = structlog.contextvars.get_contextvars().get("request_id", "")
        report(exc, task=task.name, task_id=task.id, request_id=str(request_id))


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    def _set_signal_handlers(self) -> None:
        """The host process owns SIGTERM/SIGINT and stops the consumer itself."""


class InProcessWorkers:
    """Huey workers as threads of the server process (the embedded default)."""

    def __init__(self, huey: Huey, workers: int) -> None:
        self._consumer = _EmbeddedConsumer(
            huey, workers=workers, worker_type="thread", periodic=True
        )

    def start(self) -> None:
        self._consumer.start()

    def stop(self) -> None:
        self._consumer.stop(graceful=True)
