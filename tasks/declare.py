"""Declaring tasks apart from any Huey instance.

The Huey instance is chosen by settings at startup (`tasks.queue.make_huey`), so task modules
cannot decorate it at import time. They declare tasks with `@task(...)` or `@periodic(...)`,
which return a `TaskRef`; `tasks.catalog.ALL` lists them, and `make_huey` installs that list
on the instance it builds. Callers enqueue through the instance: `huey.submit(ref, *args)`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, ParamSpec, TypeVar

from tasks import priority as priorities
from tasks.retry import DEFAULT_BACKOFF, Backoff

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskRef(Generic[P, R]):
    """A declared task: its body and defaults. `options()` makes a copy for one enqueue."""

    fn: Callable[P, R]
    name: str
    priority: int
    retries: int
    backoff: Backoff | None
    # Periodic tasks: run once per `every` seconds across all consumers (see tasks.queue).
    every: float | None = None
    # Per enqueue: start no earlier than this many seconds from now.
    delay: float | None = None

    @property
    def key(self) -> str:
        """The identity Huey's registry uses: the body's module and the task's name."""
        return f"{self.fn.__module__}.{self.name}"

    def options(self, *, priority: int | None = None, delay: float | None = None) -> TaskRef[P, R]:
        return dataclasses.replace(
            self,
            priority=self.priority if priority is None else priority,
            delay=self.delay if delay is None else delay,
        )

    def call_local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the body here and now, without a queue."""
        return self.fn(*args, **kwargs)


def _check_body(fn: Callable[..., object]) -> None:
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"{fn.__name__}: Huey runs plain functions; wrap coroutines in asyncio.run")


def task(
    *,
    priority: int = priorities.USER,
    retries: int = 0,
    backoff: Backoff | None = DEFAULT_BACKOFF,
    name: str | None = None,
) -> Callable[[Callable[P, R]], TaskRef[P, R]]:
    """Declare a task. A failed attempt is retried up to `retries` times, each after a
    full-jitter exponential delay (`backoff`; None retries at once)."""
    if retries < 0:
        raise ValueError("retries must be >= 0")

    def declare(fn: Callable[P, R]) -> TaskRef[P, R]:
        _check_body(fn)
        return TaskRef(fn, name or fn.__name__, priority, retries, backoff)

    return declare


def periodic(
    every: dt.timedelta,
    *,
    priority: int = priorities.SCHEDULED,
    retries: int = 0,
    backoff: Backoff | None = DEFAULT_BACKOFF,
    name: str | None = None,
) -> Callable[[Callable[[], R]], TaskRef[[], R]]:
    """Declare a task that runs once per `every` (whole seconds, at least 1) across every
    consumer of the queue, in slots aligned to the Unix epoch (every hour: on the hour, UTC).
    A slot nobody was running for (all workers down) is skipped, not caught up."""
    seconds = every.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError("periodic tasks run every whole number of seconds, at least 1")

    def declare(fn: Callable[[], R]) -> TaskRef[[], R]:
        _check_body(fn)
        return TaskRef(fn, name or fn.__name__, priority, retries, backoff, every=seconds)

    return declare
