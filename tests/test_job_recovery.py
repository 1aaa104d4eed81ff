"""Jobs that survive a dead worker: the lease sweeper re-enqueues a job whose worker stopped
renewing its lease, and the job completes once; old events are pruned (each job keeps its
last). A real server with in-process workers, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from domain.jobs import JobKind, JobState
from runtime import Runtime
from services.jobs import JobStore, LeaseLost
from tasks import jobs as job_tasks
from tasks.jobs import JobRun, prune_job_events, sweep_leases, sweep_once
from tests.support import ServerThread, make_settings

KIND = JobKind.RECOMPUTE  # its runner is replaced by the tests' own while they run


@pytest.fixture
def runtime(database_url: str | None, tmp_path: Path) -> Iterator[Runtime]:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as running:
        assert running.running is not None
        yield running.running.runtime


@pytest.fixture
def runs() -> Iterator[list[str]]:
    ran: list[str] = []
    lock = threading.Lock()

    def runner(run: JobRun) -> dict[str, object]:
        run.heartbeat()
        with lock:
            ran.append(run.job.id)
        return {"created": 1}

    with job_tasks.runner_replaced(KIND, runner):
        yield ran


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _ended(store: JobStore, job_id: str) -> Callable[[], bool]:
    return lambda: store.get(job_id).state.terminal


def _clock(at: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: at


def test_a_job_whose_worker_died_is_requeued_and_completes_once(
    runtime: Runtime, runs: list[str]
) -> None:
    store = runtime.job_store
    job, _ = store.create(None, KIND, {})
    # A worker claimed it five minutes ago and died: its lease expired long since.
    dead = JobStore(
        runtime.database, clock=_clock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    )
    assert dead.start(job.id, "dead-worker") is not None
    assert store.get(job.id).state == JobState.RUNNING

    # The server's own periodic sweeper (every 30 s) may get there first: either way the
    # job is re-enqueued exactly once.
    assert sweep_once(store, runtime.huey) <= 1
    _wait(_ended(store, job.id))

    ended = store.get(job.id)
    assert ended.state == JobState.SUCCEEDED
    assert ended.result == {"created": 1}
    assert runs == [job.id]  # once, not twice
    assert sweep_once(store, runtime.huey) == 0  # nothing left to sweep
    with pytest.raises(LeaseLost):  # the dead worker, were it to wake up, owns nothing
        store.record_progress(job.id, "dead-worker", ended.progress)
    states = [(e.state, e.message) for e in store.events_after(job.id, 0)]
    assert states == [
        (JobState.QUEUED, ""),
        (JobState.RUNNING, ""),
        (JobState.QUEUED, "worker lost; re-enqueued"),
        (JobState.RUNNING, ""),
        (JobState.SUCCEEDED, ""),
    ]
    time.sleep(0.3)  # no second run turns up late
    assert runs == [job.id]


def test_the_periodic_sweeper_runs_on_the_queue(runtime: Runtime, runs: list[str]) -> None:
    store = runtime.job_store
    job, _ = store.create(None, KIND, {})
    dead = JobStore(runtime.database, clock=_clock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    assert dead.start(job.id, "dead-worker") is not None
    # The task body as a worker runs it (the scheduler enqueues it once per slot; Huey
    # stores no results for periodic tasks).
    runtime.huey.submit(sweep_leases)
    _wait(_ended(store, job.id))
    assert store.get(job.id).state == JobState.SUCCEEDED
    assert runs == [job.id]


def test_a_retry_of_the_same_task_takes_over_the_lease_its_failed_attempt_kept(
    runtime: Runtime,
) -> None:
    # An attempt failed while the database was down, so it could not release its lease;
    # the queue retries the task (same task id) on another worker right after.
    store = runtime.job_store
    job, _ = store.create(None, KIND, {})
    assert store.start(job.id, "host:1/11/task-a", task_id="task-a") is not None
    # Another task (a duplicate enqueue) still may not take a live lease, nor a task id
    # that would match as a LIKE pattern.
    assert store.start(job.id, "host:2/22/task-b", task_id="task-b") is None
    assert store.start(job.id, "host:2/22/%", task_id="%") is None
    retried = store.start(job.id, "host:2/23/task-a", task_id="task-a")
    assert retried is not None
    assert retried.lease_owner == "host:2/23/task-a"
    assert retried.attempts == 2
    with pytest.raises(LeaseLost):  # the failed attempt, were it to write, owns nothing
        store.record_progress(job.id, "host:1/11/task-a", retried.progress)
    assert not store.heartbeat(job.id, "host:1/11/task-a").owned
    store.transition(job.id, JobState.SUCCEEDED, owner="host:2/23/task-a", result={})


def test_an_unclaimed_queued_job_is_enqueued_again_after_its_claim_deadline(
    runtime: Runtime, runs: list[str]
) -> None:
    # Its enqueue was lost (the RPC's process died between commit and enqueue).
    old = JobStore(runtime.database, clock=_clock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    job, _ = old.create(None, KIND, {})
    assert runtime.job_store.get(job.id).state == JobState.QUEUED
    assert sweep_once(runtime.job_store, runtime.huey) <= 1  # or the periodic sweeper did
    _wait(_ended(runtime.job_store, job.id))
    assert runs == [job.id]
    assert runtime.job_store.get(job.id).state == JobState.SUCCEEDED


def test_pruning_removes_old_events_but_keeps_the_last(runtime: Runtime) -> None:
    store = runtime.job_store
    long_ago = JobStore(
        runtime.database,
        clock=_clock(dt.datetime.now(dt.UTC) - store.retention - dt.timedelta(days=1)),
    )
    # Created and leased now (so the server's own lease sweeper leaves it alone), ended
    # long ago.
    old, _ = store.create(None, KIND, {})
    assert store.start(old.id, "w") is not None
    long_ago.transition(old.id, JobState.SUCCEEDED, owner="w", result={})
    recent, _ = store.create(None, KIND, {})
    assert store.start(recent.id, "w") is not None
    store.transition(recent.id, JobState.SUCCEEDED, owner="w", result={})

    runtime.huey.submit(prune_job_events)
    _wait(lambda: len(store.events_after(old.id, 0)) == 1)
    kept = store.events_after(old.id, 0)
    assert [(e.sequence, e.state) for e in kept] == [(3, JobState.SUCCEEDED)]
    assert len(store.events_after(recent.id, 0)) == 3
    assert store.prune_events() == 0
