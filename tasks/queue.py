"""The one Huey instance: SQLite-backed in the data directory, or Redis when configured."""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer

from core.settings import Settings

NAME = "stride"


def make_huey(settings: Settings) -> Huey:
    if settings.redis_url is not None:
        return RedisHuey(NAME, url=settings.redis_url.get_secret_value())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(NAME, filename=str(settings.data_dir / "huey.db"))


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
