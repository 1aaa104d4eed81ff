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

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from domain.jobs import Job, JobKind, JobState
from services.jobs import RENEW_EVERY, JobStore, LeaseLost, LeaseStatus
from tasks import priority
from tasks.consumer import worker_identity
from tasks.declare import periodic, task
from tasks.queue import PermanentFailure, current_queue

log = structlog.get_logger(__name__)

SWEEP_EVERY = dt.timedelta(seconds=30)
PRUNE_EVERY = dt.timedelta(hours=1)
JOB_TASKS = frozenset({"run_job"})
"""Tasks whose first argument is a job id: their dead letters name the job."""


@dataclass
class JobRun:
    """What a runner gets: the job as claimed, and the lease it holds on it."""

    store: JobStore
    job: Job
    owner: str

    def heartbeat(self) -> LeaseStatus:
        """Renew the lease (at least every RENEW_EVERY); raises LeaseLost when another
        worker took the job over."""
        status = self.store.heartbeat(self.job.id, self.owner)
        if not status.owned:
            raise LeaseLost(f"job {self.job.id} is no longer leased by {self.owner}")
        return status


Runner = Callable[[JobRun], dict[str, Any] | None]
_RUNNERS: dict[JobKind, Runner] = {}


def register(kind: JobKind, runner: Runner) -> None:
    """Make `runner` the one that runs jobs of `kind` (a later registration replaces it)."""
    _RUNNERS[kind] = runner


def unregister(kind: JobKind) -> None:
    _RUNNERS.pop(kind, None)


class JobQueue(Protocol):
    def submit(self, ref: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def enqueue_job(huey: JobQueue, job: Job) -> None:
    """Enqueue the task that runs `job` (blocking)."""
    huey.submit(run_job, job.id)


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
    job = store.get(job_id)
    runner = _RUNNERS.get(job.kind)
    if runner is None:
        raise PermanentFailure(f"no runner is registered for {job.kind} jobs")
    owner = f"{worker_identity()}/{threading.get_ident()}"
    started = store.start(job_id, owner)
    if started is None:
        log.info("job not run: ended, cancelled or held by another worker", job_id=job_id)
        return
    try:
        result = runner(JobRun(store, started, owner))
    except LeaseLost:
        log.warning("job lease lost; another worker runs it now", job_id=job_id)
        return
    except BaseException:
        store.release(job_id, owner, requeue=True)
        raise
    try:
        store.transition(job_id, JobState.SUCCEEDED, owner=owner, result=result or {})
    except LeaseLost:
        log.warning("job lease lost before it could end", job_id=job_id)


def sweep_once(store: JobStore, huey: JobQueue) -> int:
    """Re-enqueue the jobs whose lease (or claim deadline) expired; returns how many."""
    jobs = store.requeue_expired()
    for job in jobs:
        enqueue_job(huey, job)
    if jobs:
        log.info("lease sweep re-enqueued jobs", count=len(jobs))
    return len(jobs)


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
    "JOB_TASKS",
    "RENEW_EVERY",
    "JobRun",
    "enqueue_job",
    "prune_job_events",
    "register",
    "run_job",
    "sweep_leases",
    "sweep_once",
    "unregister",
]
