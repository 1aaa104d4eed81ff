"""Running jobs: one task, `run_job(job_id)`, dispatching by the job's kind to the runner
registered for it, and the periodic housekeeping that keeps jobs alive.

Every job kind registers its runner here (`register(kind, runner)`); the RPCs that start
jobs, the lease sweeper and RetryDeadLetter all enqueue through `enqueue_job`, so a job's
task is found in one place.

`run_job` claims the job's lease (`JobStore.start`), runs the runner, and ends the job
SUCCEEDED with the runner's result. A failed attempt gives the lease up (Huey retries it with
backoff); a final failure is dead-lettered and the job ends FAILED (`services.dead_letters`).
A worker killed mid-run stops renewing its lease; `sweep_leases` re-enqueues the job once the
lease expires, and the runner resumes from the job's checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from core import metrics
from domain.errors import NotFound
from domain.jobs import Job, JobFailure, JobKind, JobState, Progress, ResumeLater
from services.jobs import RENEW_EVERY, JobStore, LeaseLost, LeaseStatus
from tasks import priority
from tasks.consumer import checked_by, stopping, worker_identity
from tasks.declare import periodic, task
from tasks.queue import PermanentFailure, current_queue

log = structlog.get_logger(__name__)

SWEEP_EVERY = dt.timedelta(seconds=30)
PRUNE_EVERY = dt.timedelta(hours=1)
JOB_TASKS = frozenset({"run_job"})
"""Tasks whose first argument is a job id: their dead letters name the job."""


class JobCancelled(Exception):
    """Raised by `JobRun.check` once cancellation was requested: `run_job` ends the job
    CANCELLED with `result`, what the job stored so far (kept)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("cancellation requested")
        self.result = result


class WorkerStopping(Exception):
    """Raised by `JobRun.check` when the worker is shutting down: the job goes back on the
    queue and resumes from its checkpoint on another worker."""


# How often `check` looks for a cancellation: a running job stops within about this (the
# contract promises 2 s).
CANCEL_CHECK_EVERY = 0.5


@dataclass
class JobRun:
    """What a runner gets: the job as claimed, and the lease it holds on it."""

    store: JobStore
    job: Job
    owner: str
    _last_check: float = field(default_factory=time.monotonic)
    _last_renew: float = field(default_factory=time.monotonic)
    _result: dict[str, Any] | None = None

    def heartbeat(self) -> LeaseStatus:
        """Renew the lease (at least every RENEW_EVERY); raises LeaseLost when another
        worker took the job over."""
        status = self.store.heartbeat(self.job.id, self.owner)
        if not status.owned:
            raise LeaseLost(f"job {self.job.id} is no longer leased by {self.owner}")
        return status

    def check(self, result: dict[str, Any] | None = None) -> None:
        """Call often (between items, between API calls): renews the lease when due and
        raises JobCancelled once cancellation was requested, WorkerStopping when the worker
        shuts down. JobCancelled carries `result` (what was stored so far), or without one
        the latest result this run was given (by `check` or `progress`): a check from deep
        inside a call (`between_steps`) keeps the counts. Cheap when called in a loop: it
        reads the database at most every CANCEL_CHECK_EVERY."""
        if result is not None:
            self._result = result
        now = time.monotonic()
        cancel = False
        if now - self._last_renew >= RENEW_EVERY.total_seconds():
            cancel = self.heartbeat().cancel_requested
            self._last_renew = self._last_check = now
        elif now - self._last_check >= CANCEL_CHECK_EVERY:
            cancel = self.store.cancel_requested(self.job.id)
            self._last_check = now
        if cancel:
            raise JobCancelled(dict(self._result or {}))
        if stopping():
            raise WorkerStopping()

    def progress(
        self,
        progress: Progress,
        *,
        checkpoint: Any = None,
        result: dict[str, Any] | None = None,
        item: str = "",
        item_error: str = "",
        item_reason: str = "",
    ) -> None:
        """An event with the job's progress; with `checkpoint`, where a re-run resumes; with
        `result`, what the job has produced so far (stored on the job with the event, so
        GetJob and WatchJob show it while the job runs, and a job that fails keeps it)."""
        changes: dict[str, Any] = {}
        if checkpoint is not None:
            changes["checkpoint"] = checkpoint
        if result is not None:
            changes["result"] = result
            self._result = result
        self.store.record_progress(
            self.job.id,
            self.owner,
            progress,
            item=item,
            item_error=item_error,
            item_reason=item_reason,
            **changes,
        )


Runner = Callable[[JobRun], dict[str, Any] | None]
_RUNNERS: dict[JobKind, Runner] = {}


def register(kind: JobKind, runner: Runner) -> None:
    """Make `runner` the one that runs jobs of `kind` (a later registration replaces it)."""
    _RUNNERS[kind] = runner


@contextlib.contextmanager
def runner_replaced(kind: JobKind, runner: Runner) -> Iterator[None]:
    """Run `kind`'s jobs with `runner` for a while, then with the one registered before
    (tests that need a runner of their own)."""
    previous = _RUNNERS.get(kind)
    _RUNNERS[kind] = runner
    try:
        yield
    finally:
        if previous is None:
            _RUNNERS.pop(kind, None)
        else:
            _RUNNERS[kind] = previous


class JobQueue(Protocol):
    def submit_with(
        self,
        ref: Any,
        args: tuple[Any, ...],
        *,
        priority: int | None = None,
        eta: dt.datetime | None = None,
    ) -> Any: ...


def enqueue_job(
    huey: JobQueue, job: Job, *, eta: dt.datetime | None = None, urgent: bool = False
) -> None:
    """Enqueue the task that runs `job` (blocking), no earlier than `eta` when given: at
    SCHEDULED priority when nobody waits for it (`params["scheduled"]`), else USER;
    `urgent`: USER whatever it was created as (a person now waits for it)."""
    scheduled = bool(job.params.get("scheduled")) and not urgent
    huey.submit_with(
        run_job, (job.id,), priority=priority.SCHEDULED if scheduled else priority.USER, eta=eta
    )


def _store() -> JobStore | None:
    """The runtime's job store (None on a queue built without a runtime, as in tests)."""
    resources = current_queue().resources
    store: JobStore | None = None if resources is None else resources.job_store
    return store


@task(retries=3)
def run_job(job_id: str) -> None:
    store = _store()
    if store is None:
        raise PermanentFailure("this queue has no job store")
    try:
        job = store.get(job_id)
    except NotFound:
        log.info("job not run: it no longer exists (its athlete was deleted)", job_id=job_id)
        return
    runner = _RUNNERS.get(job.kind)
    if runner is None:
        raise PermanentFailure(f"no runner is registered for {job.kind} jobs")
    # The task's id (bound by the queue to the task's context) ends the owner: a retry of
    # this task may take over a lease an earlier, failed attempt could not release.
    task_id = structlog.contextvars.get_contextvars().get("task_id")
    owner = f"{worker_identity()}/{threading.get_ident()}"
    if task_id:
        owner = f"{owner}/{task_id}"
    started = store.start(job_id, owner, task_id=str(task_id) if task_id else None)
    if started is None:
        log.info("job not run: ended, cancelled or held by another worker", job_id=job_id)
        return
    run = JobRun(store, started, owner)
    try:
        with checked_by(run.check), _measured(job.kind):
            result = runner(run)
    except LeaseLost:
        log.warning("job lease lost; another worker runs it now", job_id=job_id)
        return
    except JobCancelled as cancelled:
        _end(store, job_id, owner, JobState.CANCELLED, result=cancelled.result)
        return
    except JobFailure as failure:
        _end(store, job_id, owner, JobState.FAILED, error=failure.to_error(), message=str(failure))
        return
    except ResumeLater as wait:
        _wait(store, started, owner, wait)
        return
    except WorkerStopping:
        store.release(job_id, owner, requeue=True)
        enqueue_job(current_queue(), started)
        log.info("job put back on the queue: the worker is stopping", job_id=job_id)
        return
    except Exception:
        if _vanished(store, job_id):
            log.info("job stopped: it no longer exists (its athlete was deleted)", job_id=job_id)
            return
        store.release(job_id, owner, requeue=True)
        raise
    except BaseException:
        store.release(job_id, owner, requeue=True)
        raise
    _end(store, job_id, owner, JobState.SUCCEEDED, result=result or {})


@contextlib.contextmanager
def _measured(kind: JobKind) -> Iterator[None]:
    """A run in the job metrics: counted, timed, and a failure when it ends the job FAILED
    or raises (to be retried); a cancel, a wait or a stopping worker is no failure."""
    label = kind.value.lower()
    metrics.JOB_RUNS.labels(label).inc()
    began = time.monotonic()
    try:
        yield
    except (JobCancelled, ResumeLater, WorkerStopping, LeaseLost):
        raise
    except BaseException:
        metrics.JOB_FAILURES.labels(label).inc()
        raise
    finally:
        metrics.JOB_DURATION.labels(label).observe(time.monotonic() - began)


def sweep_once(store: JobStore, huey: JobQueue) -> int:
    """Re-enqueue the jobs whose lease (or claim deadline) expired; returns how many."""
    jobs = store.requeue_expired()
    for job in jobs:
        enqueue_job(huey, job)
    if jobs:
        log.info("lease sweep re-enqueued jobs", count=len(jobs))
    return len(jobs)


def _end(
    store: JobStore,
    job_id: str,
    owner: str,
    state: JobState,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    message: str = "",
) -> None:
    try:
        store.transition(job_id, state, owner=owner, result=result, error=error, message=message)
    except LeaseLost:
        log.warning("job lease lost before it could end", job_id=job_id)
    except NotFound:
        log.info("job could not end: it no longer exists", job_id=job_id)


def _vanished(store: JobStore, job_id: str) -> bool:
    """The job was deleted while it ran (with its athlete): nothing to retry or report."""
    try:
        store.get(job_id)
    except NotFound:
        return True
    except Exception:  # the database is down, say: not known to be gone
        return False
    return False


def _wait(store: JobStore, job: Job, owner: str, wait: ResumeLater) -> None:
    """WAITING until `wait.resume_at`, with the job's task scheduled for then."""
    resume = dt.datetime.fromtimestamp(wait.resume_at, dt.UTC)
    try:
        store.transition(job.id, JobState.WAITING, owner=owner, resume_time=resume,
                         message=str(wait))  # fmt: skip
    except LeaseLost:
        log.warning("job lease lost before it could wait", job_id=job.id)
        return
    enqueue_job(current_queue(), job, eta=resume)
    log.info("job waiting", job_id=job.id, resume_time=resume.isoformat(), reason=str(wait))


@periodic(SWEEP_EVERY, priority=priority.MAINTENANCE)
def sweep_leases() -> int:
    """Once per SWEEP_EVERY across all workers: jobs whose worker died run again."""
    store = _store()
    return 0 if store is None else sweep_once(store, current_queue())


@periodic(PRUNE_EVERY, priority=priority.MAINTENANCE)
def prune_job_events() -> int:
    """Once an hour: drop the events of jobs that ended more than the retention ago (each
    job keeps its last event)."""
    store = _store()
    deleted = 0 if store is None else store.prune_events()
    if deleted:
        log.info("job events pruned", count=deleted)
    return deleted


__all__ = [
    "CANCEL_CHECK_EVERY",
    "JOB_TASKS",
    "RENEW_EVERY",
    "JobCancelled",
    "JobRun",
    "WorkerStopping",
    "enqueue_job",
    "prune_job_events",
    "register",
    "run_job",
    "runner_replaced",
    "sweep_leases",
    "sweep_once",
]
