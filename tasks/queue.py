"""The one Huey instance: `PriorityRedisHuey` when Redis is configured, otherwise SQLite in
the data directory; Stride's tasks installed on it by `make_huey`.

What Stride adds to Huey (`StrideHuey`):

* every enqueue carries the caller's request id and trace context (`tasks.context`), so no
  caller can forget them; the task runs inside them, and every log line it writes has the
  request id, trace id, task name, task id and attempt;
* failed attempts are retried after a full-jitter exponential delay (`tasks.retry`), the
  attempt number travelling with the task; final failures go to Sentry;
* periodic tasks run once per slot across every consumer: the first scheduler to claim
  `(task, slot)` enqueues it (a Redis `SET NX EX`, or a row in the SQLite queue file);
* tasks a stopping consumer could not finish within its grace period go back on the queue;
* a task that fails for good (retries exhausted, or `PermanentFailure`) is handed to
  `on_final_failure` (the runtime stores it as a dead letter, see services/dead_letters.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

import structlog
from huey import Huey, PriorityRedisHuey, SqliteHuey, signals
from huey.api import Task, TaskWrapper
from huey.exceptions import CancelExecution, HueyException, RetryTask
from huey.utils import normalize_time

from core.error_reporting import report
from core.settings import Settings
from tasks.consumer import InProcessWorkers, worker_identity
from tasks.context import ATTEMPT_KEY, CONTEXT_KWARG, attempt_of, capture, task_scope, untraced
from tasks.declare import TaskRef
from tasks.retry import Backoff

__all__ = [
    "NAME",
    "FinalFailure",
    "InProcessWorkers",
    "PermanentFailure",
    "StrideHuey",
    "current_queue",
    "make_huey",
    "sqlite_queue_path",
]

NAME = "stride"
P = ParamSpec("P")
log = structlog.get_logger(__name__)
_SENTRY_KWARG = "sentry_headers"
# Exceptions that steer Huey (retry now, cancel, locked, rate limited) rather than fail.
_CONTROL = (HueyException, CancelExecution, RetryTask)
_CURRENT: contextvars.ContextVar[StrideHuey | None] = contextvars.ContextVar(
    "stride_current_queue", default=None
)


class PermanentFailure(Exception):
    """Raised by a task body for a failure no retry fixes: it fails for good at once."""


@dataclass(frozen=True)
class FinalFailure:
    """A task that failed for good, as `StrideHuey.on_final_failure` receives it."""

    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    error_type: str
    error_message: str
    attempts: int
    request_id: str
    trace_id: str


def current_queue() -> StrideHuey:
    """The queue running the current task (inside a task body only)."""
    huey = _CURRENT.get()
    if huey is None:
        raise RuntimeError("current_queue() outside a task run by a StrideHuey")
    return huey


def sqlite_queue_path(settings: Settings) -> Path:
    return settings.data_dir / "huey.db"


def make_huey(settings: Settings, catalog: Iterable[TaskRef[..., Any]] | None = None) -> StrideHuey:
    """The queue the settings choose, with `catalog` (default: every Stride task) installed."""
    if catalog is None:
        from tasks.catalog import ALL

        catalog = ALL
    huey: StrideHuey
    prefix = settings.redis_key_prefix
    if settings.redis_url is not None:
        # Huey keeps its keys under `huey.<kind>.<name>`; the name carries the key prefix
        # (punctuation dropped by Huey) so deployments sharing a Redis stay apart.
        huey = StrideRedisHuey(
            f"{prefix}{NAME}", key_prefix=prefix, url=settings.redis_url.get_secret_value()
        )
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = StrideSqliteHuey(NAME, key_prefix=prefix, filename=str(sqlite_queue_path(settings)))
    huey.install(catalog)
    return huey


class StrideHuey(Huey):  # type: ignore[misc]
    def __init__(self, name: str, *, key_prefix: str, **options: Any) -> None:
        # A failed attempt that will be retried is not a result: whoever waits for the
        # result sees the final outcome only.
        options.setdefault("store_intermediate_errors", False)
        super().__init__(name, **options)
        self.key_prefix = key_prefix
        self._installed: dict[str, Any] = {}
        self._by_name: dict[str, Any] = {}
        self._seen_slots: dict[str, int] = {}
        # Set by the composition root: what task bodies reach through `current_queue()`
        # (the runtime), and where tasks that failed for good go (dead letters).
        self.resources: Any = None
        self.on_final_failure: Callable[[FinalFailure], object] | None = None
        self.signal(signals.SIGNAL_INTERRUPTED)(self._requeue_interrupted)

    def get_task_wrapper_class(self) -> type[TaskWrapper]:
        return _StrideTaskWrapper

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # Declared tasks ---------------------------------------------------------------------

    def install(self, refs: Iterable[TaskRef[..., Any]]) -> None:
        for ref in refs:
            options: dict[str, Any] = {
                "name": ref.name,
                "priority": ref.priority,
                "retries": ref.retries,
                "backoff": ref.backoff,
            }
            if ref.every is None:
                wrapper = self.task(**options)(ref.fn)
            else:
                wrapper = self.periodic_task(_every_slot, stride_every=ref.every, **options)(ref.fn)
            self._installed[ref.key] = wrapper
            self._by_name[ref.name] = wrapper

    def submit(self, ref: TaskRef[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Enqueue a declared task with the caller's request id and trace context; returns
        Huey's result handle. Blocking (a Redis or SQLite write): from the event loop, use
        `submit_async`."""
        try:
            wrapper = self._installed[ref.key]
        except KeyError:
            raise LookupError(f"task {ref.key} is not installed on this queue") from None
        eta = normalize_time(None, ref.delay, self.utc) if ref.delay else None
        return self.enqueue(wrapper.task_class(args, kwargs, priority=ref.priority, eta=eta))

    def submit_with(
        self,
        ref: TaskRef[..., Any],
        args: tuple[Any, ...],
        *,
        priority: int | None = None,
        eta: dt.datetime | None = None,
    ) -> Any:
        """`submit` with another priority than the task's own (scheduled work) or to run no
        earlier than `eta` (aware; a job waiting for Strava's budget)."""
        try:
            wrapper = self._installed[ref.key]
        except KeyError:
            raise LookupError(f"task {ref.key} is not installed on this queue") from None
        if eta is not None:
            eta = eta.astimezone(dt.UTC)
            eta = eta.replace(tzinfo=None) if self.utc else eta.astimezone().replace(tzinfo=None)
        elif ref.delay:
            eta = normalize_time(None, ref.delay, self.utc)
        chosen = ref.priority if priority is None else priority
        return self.enqueue(wrapper.task_class(args, {}, priority=chosen, eta=eta))

    def submit_named(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Enqueue an installed task by its name (a dead letter's retry), with its declared
        priority and a fresh set of retries."""
        try:
            wrapper = self._by_name[name]
        except KeyError:
            raise LookupError(f"task {name} is not installed on this queue") from None
        return self.enqueue(wrapper.task_class(tuple(args), dict(kwargs)))

    async def submit_async(self, ref: TaskRef[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        # to_thread copies the context variables, so capture() sees the caller's request.
        return await asyncio.to_thread(self.submit, ref, *args, **kwargs)

    def enqueue(self, task: Any) -> Any:
        if isinstance(task, Task):
            _carry_context(task)
        return super().enqueue(task)

    def _requeue_interrupted(self, _signal: str, task: Any) -> None:
        log.warning("task interrupted by shutdown, put back on the queue", task=task.name,
                    task_id=task.id)  # fmt: skip
        self.enqueue(task)

    # Periodic tasks: once per slot across consumers ---------------------------------------

    def read_periodic(self, timestamp: dt.datetime | None) -> list[Any]:
        """The periodic tasks this scheduler should enqueue now: those whose slot changed
        since it last looked and which it claimed before any other scheduler did. Each gets
        the id `periodic:<task>:<slot>`."""
        if timestamp is None:
            timestamp = self._get_timestamp()
        epoch = (timestamp.replace(tzinfo=dt.UTC) if self.utc else timestamp).timestamp()
        due = []
        for task in self._registry.periodic_tasks:
            key = self._registry.task_to_string(type(task))
            # Huey's own crontab tasks have minute slots; Stride's carry their interval.
            every = int(getattr(task, "stride_every", 60))
            slot = int(epoch // every)
            if self._seen_slots.get(key) == slot:
                continue
            try:
                wanted = task.validate_datetime(timestamp)
                claimed = wanted and self.claim_slot(key, slot, ttl=every + 60)
            except Exception as exc:  # the store is down: try again next second
                log.warning("periodic claim failed", task=key, error=str(exc))
                continue
            self._seen_slots[key] = slot
            if claimed:
                task.id = f"periodic:{key}:{slot}"
                task.revoke_id = f"r:{task.id}"
                due.append(task)
        return due

    def claim_slot(self, task: str, slot: int, ttl: int) -> bool:
        """True for exactly one caller per (task, slot) across every consumer of the queue."""
        raise NotImplementedError


def _every_slot(_: dt.datetime) -> bool:
    """Stride's periodic tasks are due in every slot; `read_periodic` makes it once."""
    return True


def _carry_context(task: Any) -> None:
    """Add the caller's context to a task (and the tasks chained to it) that has none yet;
    a retry, a scheduled task coming due or a requeued one keeps the context it had."""
    carried: dict[str, str] | None = None
    pending = [task]
    while pending:
        node = pending.pop()
        if node is None:
            continue
        if CONTEXT_KWARG not in node.kwargs:
            carried = capture() if carried is None else carried
            node.kwargs[CONTEXT_KWARG] = dict(carried)
        pending += [node.on_complete, node.on_error]


class StrideRedisHuey(StrideHuey, PriorityRedisHuey):  # type: ignore[misc]
    def describe(self) -> str:
        return f"redis {self.storage.name}"

    def claim_slot(self, task: str, slot: int, ttl: int) -> bool:
        key = f"{self.key_prefix}periodic:{task}:{slot}"
        return bool(self.storage.conn.set(key, worker_identity(), nx=True, ex=ttl))

    def close(self) -> None:
        self.storage.pool.disconnect()


class StrideSqliteHuey(StrideHuey, SqliteHuey):  # type: ignore[misc]
    _CLAIMS = (
        "create table if not exists stride_periodic (queue text not null, task text not null,"
        " slot integer not null, primary key (queue, task))"
    )

    def __init__(self, name: str, *, key_prefix: str, **options: Any) -> None:
        super().__init__(name, key_prefix=key_prefix, **options)
        self.storage.sql(self._CLAIMS, commit=True)

    def describe(self) -> str:
        return f"sqlite {self.storage.filename}"

    def claim_slot(self, task: str, slot: int, ttl: int) -> bool:
        # One row per task holding the last slot claimed; only a later slot replaces it.
        with self.storage.db(commit=True) as cursor:
            cursor.execute(
                "insert into stride_periodic (queue, task, slot) values (?, ?, ?)"
                " on conflict (queue, task) do update set slot = excluded.slot"
                " where excluded.slot > stride_periodic.slot",
                (self.storage.name, task, slot),
            )
            return bool(cursor.rowcount == 1)

    def close(self) -> None:
        self.storage.close()


class _StrideTaskWrapper(TaskWrapper):  # type: ignore[misc]
    """Builds every task class of a `StrideHuey`: the body runs in the enqueuing request's
    context, its failures are logged, retried with backoff and finally reported."""

    def create_task(
        self, func: Callable[..., Any], context: bool = False, name: str | None = None,
        **settings: Any,
    ) -> Any:  # fmt: skip
        body = untraced(func)
        label = name or body.__name__
        backoff: Backoff | None = settings.pop("backoff", None)
        wants_task = context
        huey: StrideHuey = self.huey

        @functools.wraps(body)
        def run(*args: Any, task: Any, **kwargs: Any) -> Any:
            carried: dict[str, str] = kwargs.pop(CONTEXT_KWARG, None) or {}
            # Sentry's Huey integration (auto-enabled wherever Sentry is initialised) adds
            # this at enqueue and removes it only in processes where it is enabled too.
            kwargs.pop(_SENTRY_KWARG, None)
            if wants_task:
                kwargs["task"] = task
            attempt = attempt_of(carried)
            with task_scope(label, carried, task_id=task.id, attempt=attempt):
                log.info("task started", priority=task.priority)
                started = time.perf_counter()
                token = _CURRENT.set(huey)
                try:
                    result = body(*args, **kwargs)
                except _CONTROL:
                    raise
                except Exception as exc:
                    _failed(huey, task, exc, carried, attempt, backoff)
                    raise
                finally:
                    _CURRENT.reset(token)
                log.info("task finished", duration_ms=_ms_since(started))
                return result

        return super().create_task(run, context=True, name=label, **settings)


def _failed(
    huey: StrideHuey,
    task: Any,
    exc: Exception,
    carried: dict[str, str],
    attempt: int,
    backoff: Backoff | None,
) -> None:
    """Log the failure in the task's context; when retries remain, choose the delay and
    advance the attempt carried with the task (Huey re-serializes it for the retry). A final
    failure is reported and handed to `huey.on_final_failure` (a dead letter)."""
    if isinstance(exc, PermanentFailure):
        task.retries = 0  # Huey reads it after the body raised: no retry
    if task.retries > 0:
        if backoff is not None:
            task.retry_delay = backoff.delay(attempt)
        task.kwargs[CONTEXT_KWARG] = {**carried, ATTEMPT_KEY: str(attempt + 1)}
        log.warning("task failed, will retry", error=repr(exc), retries_left=task.retries,
                    retry_in_seconds=round(task.retry_delay or 0.0, 3), exc_info=exc)  # fmt: skip
        return
    log.error("task failed", error=repr(exc), exc_info=exc)
    context = structlog.contextvars.get_contextvars()
    report(exc, task=str(task.name), task_id=str(task.id), attempt=str(attempt),
           request_id=str(context.get("request_id", "")),
           trace_id=str(context.get("trace_id", "")))  # fmt: skip
    if huey.on_final_failure is None or getattr(task, "stride_every", None) is not None:
        return  # a periodic task runs again in its next slot: nothing to retry by hand
    failure = FinalFailure(
        task_name=str(task.name),
        args=list(task.args),
        kwargs={k: v for k, v in task.kwargs.items() if k not in (CONTEXT_KWARG, _SENTRY_KWARG)},
        error_type=type(exc).__name__,
        error_message=str(exc),
        attempts=attempt,
        request_id=str(context.get("request_id", "")),
        trace_id=str(context.get("trace_id", "")),
    )
    try:
        huey.on_final_failure(failure)
    except Exception as sink_error:  # the database is down: the log line above remains
        log.error("dead letter not stored", error=repr(sink_error), exc_info=sink_error)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
