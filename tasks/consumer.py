"""Huey consumers: the server's in-process workers (embedded default) and `stride-worker`.

Both are `StrideConsumer`: thread workers, a scheduler that looks at periodic tasks every
second (each periodic task decides its own slots, see `tasks.queue`), and a graceful stop
bounded by a grace period. Tasks still running when the grace period ends are put back on
the queue (tasks are idempotent) and abandoned with the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import structlog
from huey import Huey
from huey.consumer import Consumer, Scheduler, Worker

_STOP_FLAG: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "stride_worker_stop_flag", default=None
)


def stopping() -> bool:
    """True once the consumer running the current task has been asked to stop: a long task
    should checkpoint and return (or raise to be retried) rather than run past the grace
    period."""
    flag = _STOP_FLAG.get()
    return flag is not None and flag.is_set()


_BETWEEN_STEPS: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "stride_between_steps", default=None
)


def between_steps() -> None:
    """Called by code that waits on others (the Strava client between attempts): runs the
    current task's check, which raises to stop it (its job was cancelled, the worker is
    stopping). Does nothing outside such a task."""
    check = _BETWEEN_STEPS.get()
    if check is not None:
        check()


@contextlib.contextmanager
def checked_by(check: Callable[[], None]) -> Iterator[None]:
    """Make `check` what `between_steps` runs in this task."""
    token = _BETWEEN_STEPS.set(check)
    try:
        yield
    finally:
        _BETWEEN_STEPS.reset(token)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Worker(Worker):  # type: ignore[misc]
    def initialize(self) -> None:
        # Runs in the worker's own thread, whose context every task it runs inherits.
        _STOP_FLAG.set(self.stop_flag)
        structlog.contextvars.bind_contextvars(
            worker=f"{worker_identity()}/{threading.current_thread().name}"
        )
        super().initialize()


class _Scheduler(Scheduler):  # type: ignore[misc]
    # Huey looks at periodic tasks once a minute; Stride's own slots may be shorter, and
    # `read_periodic` remembers which slots it has seen, so looking every second is cheap.
    periodic_task_seconds = 1


class StrideConsumer(Consumer):  # type: ignore[misc]
    worker_class = _Worker
    scheduler_class = _Scheduler

    def __init__(self, huey: Huey, *, workers: int, grace: float, handle_signals: bool) -> None:
        blocking = bool(huey.storage.blocking)
        super().__init__(
            huey,
            workers=workers,
            periodic=True,
            worker_type="thread",
            scheduler_interval=1,
            # Redis blocks in BZPOPMIN, so polling delays only pace retries after errors;
            # the SQLite queue is polled, at least once a second when idle.
            max_delay=10.0 if blocking else 1.0,
            shutdown_timeout=grace,
            check_worker_health=True,
        )
        self._handles_signals = handle_signals
        # SIGTERM and SIGINT both stop gracefully (a second one stops at once). SIGHUP would
        # re-exec `sys.argv`, which does not survive `python -m tasks`: left to its default.
        self._signal_actions = {signal.SIGTERM: (False, True), signal.SIGINT: (False, True)}

    def _set_signal_handlers(self) -> None:
        if self._handles_signals:
            super()._set_signal_handlers()

    def stop_gracefully(self) -> None:
        """Stop taking tasks, wait up to the grace period for running ones, and put back on
        the queue those that are still running."""
        self.stop(graceful=True)
        self.huey.notify_interrupted_tasks()


class InProcessWorkers:
    """Huey workers as threads of the server process (the embedded default)."""

    def __init__(self, huey: Huey, workers: int, grace: float = 10.0) -> None:
        self._consumer = StrideConsumer(huey, workers=workers, grace=grace, handle_signals=False)

    def start(self) -> None:
        self._consumer.start()

    def stop(self) -> None:
        self._consumer.stop_gracefully()


class _HueyTaskLines(logging.Filter):
    """Stride logs each task's failure itself, inside the task's context (request id, trace
    id, attempt); Huey's own traceback line for it would be a context-free duplicate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unhandled exception in task")


def quiet_huey_logging(level: str) -> None:
    """Huey logs a line per task at INFO ("Executing", "executed in"); Stride's task lines
    replace them. Huey's warnings and errors (queue unreachable, worker died) stay."""
    huey_logger = logging.getLogger("huey")
    if level != "DEBUG":
        huey_logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _HueyTaskLines) for f in huey_logger.filters):
        huey_logger.addFilter(_HueyTaskLines())
