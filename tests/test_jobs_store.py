"""Jobs: the state machine (no database), and the repository and job store on both
databases: idempotent creation, leases, events without gaps under racing writers, listing,
cancellation, the sweeper, retention and dead letters."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.athletes import AthleteProfile
from domain.errors import FailedPrecondition, NotFound
from domain.jobs import (
    IllegalTransition,
    JobEvent,
    JobKind,
    JobState,
    Progress,
    can_move,
)
from services.jobs import JobStore, LeaseLost
from storage import migrate
from storage.database import Database, PoolOptions
from storage.repositories.athletes import AthleteRepository
from storage.repositories.jobs import JobRepository

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# The state machine ---------------------------------------------------------------------------


def test_terminal_states_go_nowhere() -> None:
    for ended in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert ended.terminal
        assert not any(can_move(ended, target) for target in JobState)


def test_allowed_moves() -> None:
    assert can_move(JobState.QUEUED, JobState.RUNNING)
    assert can_move(JobState.RUNNING, JobState.RUNNING)  # progress
    assert can_move(JobState.RUNNING, JobState.WAITING)
    assert can_move(JobState.WAITING, JobState.RUNNING)
    assert can_move(JobState.RUNNING, JobState.QUEUED)  # the sweeper, after a lost worker
    assert not can_move(JobState.QUEUED, JobState.SUCCEEDED)
    assert not can_move(JobState.QUEUED, JobState.WAITING)


def test_progress_tells_unknown_total_from_zero() -> None:
    assert Progress.from_json(Progress().to_json()).total is None
    assert Progress.from_json(Progress(total=0).to_json()).total == 0


def test_event_round_trips_through_json() -> None:
    event = JobEvent(
        job_id="j",
        sequence=3,
        time=T0,
        state=JobState.WAITING,
        progress=Progress(completed=2, failed=1, total=10),
        item="activity 7",
        item_error="bad stream",
        resume_time=T0 + dt.timedelta(minutes=15),
    )
    assert JobEvent.from_json(event.to_json()) == event
    assert not event.ends_job
    assert JobEvent(job_id="j", sequence=4, time=T0, state=JobState.FAILED).ends_job


# The store, on both databases ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def database(database_url: str | None, tmp_path: Path) -> Iterator[Database]:
    if database_url is None:
        database = Database(f"sqlite:///{tmp_path / 'jobs.db'}", [], PoolOptions())
        migrate.upgrade(database.primary)
    else:
        database = Database(database_url, [], PoolOptions())
    yield database
    database.dispose()


@pytest.fixture
def athlete_id(database: Database) -> str:
    with database.transaction() as session:
        return (
            AthleteRepository(session)
            .add(AthleteProfile(display_name="Runner", time_zone="UTC"), None)
            .id
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> JobStore:
    return JobStore(database, clock=clock)


def test_create_is_idempotent_by_request_id(store: JobStore, athlete_id: str) -> None:
    first, created = store.create(athlete_id, JobKind.STRAVA_SYNC, {"full": True}, "req-1")
    again, created_again = store.create(athlete_id, JobKind.STRAVA_SYNC, {"full": True}, "req-1")
    assert created
    assert not created_again
    assert again.id == first.id
    assert first.state == JobState.QUEUED
    assert first.last_event_sequence == 1
    assert [e.state for e in store.events_after(first.id, 0)] == [JobState.QUEUED]
    other, created_other = store.create(athlete_id, JobKind.STRAVA_SYNC, {}, "req-2")
    assert created_other
    assert other.id != first.id
    with pytest.raises(NotFound):
        store.get("missing")


def test_a_job_runs_with_events_checkpoint_and_lease(
    store: JobStore, athlete_id: str, clock: Clock
) -> None:
    job, _ = store.create(athlete_id, JobKind.FILE_IMPORT, {})
    started = store.start(job.id, "worker-a")
    assert started is not None
    assert started.state == JobState.RUNNING
    assert started.attempts == 1
    assert store.start(job.id, "worker-b") is None  # worker-a holds the lease
    store.record_progress(
        job.id, "worker-a", Progress(completed=1, total=3), checkpoint={"file": 1}, item="a.fit"
    )
    assert store.heartbeat(job.id, "worker-a").owned
    store.transition(
        job.id,
        JobState.SUCCEEDED,
        owner="worker-a",
        progress=Progress(completed=3, total=3),
        result={"activities": 3},
    )
    ended = store.get(job.id)
    assert ended.state == JobState.SUCCEEDED
    assert ended.result == {"activities": 3}
    assert ended.checkpoint == {"file": 1}
    assert ended.lease_owner is None
    assert ended.end_time is not None
    assert ended.start_time is not None
    events = store.events_after(job.id, 0)
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert [e.state for e in events] == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert events[2].item == "a.fit"
    assert events[2].progress.total == 3
    assert store.events_after(job.id, 2, limit=1) == [events[2]]
    with pytest.raises(IllegalTransition):
        store.transition(job.id, JobState.RUNNING)
    assert not store.heartbeat(job.id, "worker-a").owned


def test_a_job_asked_to_cancel_that_finishes_anyway_ends_cancelled_with_its_result(
    store: JobStore, athlete_id: str
) -> None:
    # CancelJob told the caller `cancel_requested`; the task finished before it noticed.
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    assert store.start(job.id, "worker-a") is not None
    assert store.request_cancel(job.id).cancel_requested
    store.transition(job.id, JobState.SUCCEEDED, owner="worker-a", result={"created": 2})
    ended = store.get(job.id)
    assert ended.state == JobState.CANCELLED
    assert ended.result == {"created": 2}  # what it stored is kept and reported


def test_an_expired_lease_is_swept_and_taken_over(
    store: JobStore, athlete_id: str, clock: Clock
) -> None:
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    assert store.start(job.id, "dead-worker") is not None
    store.record_progress(job.id, "dead-worker", Progress(completed=5), checkpoint={"page": 2})
    clock.now += store.lease / 2
    assert store.requeue_expired() == []  # not yet
    clock.now += store.lease
    requeued = store.requeue_expired()
    assert [j.id for j in requeued] == [job.id]
    assert requeued[0].state == JobState.QUEUED
    assert requeued[0].lease_owner is None
    resumed = store.start(job.id, "worker-b")
    assert resumed is not None
    assert resumed.checkpoint == {"page": 2}
    assert resumed.attempts == 2
    # The dead worker wakes up: it no longer owns the job and may not write.
    assert not store.heartbeat(job.id, "dead-worker").owned
    with pytest.raises(LeaseLost):
        store.record_progress(job.id, "dead-worker", Progress(completed=6))
    assert store.requeue_expired() == []


def test_an_unclaimed_queued_job_is_re_enqueued_without_an_event(
    store: JobStore, athlete_id: str, clock: Clock
) -> None:
    job, _ = store.create(athlete_id, JobKind.RECOMPUTE, {})
    clock.now += store.claim_deadline + dt.timedelta(seconds=1)
    assert [j.id for j in store.requeue_expired()] == [job.id]
    assert store.get(job.id).last_event_sequence == 1


def test_claim_is_exclusive(database: Database, store: JobStore, athlete_id: str) -> None:
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    with database.transaction() as session:
        repo = JobRepository(session)
        assert repo.claim(job.id, "a", T0, dt.timedelta(seconds=30))
        assert not repo.claim(job.id, "b", T0 + dt.timedelta(seconds=29), dt.timedelta(seconds=30))
        assert repo.claim(job.id, "b", T0 + dt.timedelta(seconds=31), dt.timedelta(seconds=30))
        assert not repo.renew(job.id, "a", T0 + dt.timedelta(minutes=5))
        assert repo.release(job.id, "b")


def test_cancel(store: JobStore, athlete_id: str) -> None:
    queued, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    cancelled = store.request_cancel(queued.id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.cancel_requested
    assert store.start(queued.id, "w") is None

    running, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    store.start(running.id, "w")
    assert store.request_cancel(running.id).state == JobState.RUNNING
    assert store.cancel_requested(running.id)
    assert store.heartbeat(running.id, "w").cancel_requested
    store.transition(running.id, JobState.CANCELLED, owner="w")
    assert store.request_cancel(running.id).state == JobState.CANCELLED  # unchanged
    done, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    store.start(done.id, "w")
    store.transition(done.id, JobState.SUCCEEDED, owner="w")
    with pytest.raises(FailedPrecondition):
        store.request_cancel(done.id)
    with pytest.raises(NotFound):
        store.request_cancel("missing")


def test_waiting_keeps_the_lease_until_after_the_resume_time(
    store: JobStore, athlete_id: str, clock: Clock
) -> None:
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    store.start(job.id, "w")
    resume = clock.now + dt.timedelta(minutes=15)
    event = store.transition(job.id, JobState.WAITING, owner="w", resume_time=resume)
    assert event.resume_time == resume
    clock.now = resume
    assert store.requeue_expired() == []
    clock.now = resume + store.lease + dt.timedelta(seconds=1)
    assert [j.id for j in store.requeue_expired()] == [job.id]


def test_two_writers_racing_make_no_gaps_or_duplicates(store: JobStore, athlete_id: str) -> None:
    job, _ = store.create(athlete_id, JobKind.FILE_IMPORT, {})
    store.start(job.id, "w")
    per_thread = 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(name: str) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                store.record_progress(job.id, None, Progress(completed=i), item=f"{name}{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = store.events_after(job.id, 0, limit=1000)
    assert [e.sequence for e in events] == list(range(1, 2 * per_thread + 3))
    assert store.get(job.id).last_event_sequence == 2 * per_thread + 2
    assert sorted(e.item for e in events[2:]) == sorted(
        f"{n}{i}" for n in "ab" for i in range(per_thread)
    )


def test_list_filters_and_pages(store: JobStore, athlete_id: str, clock: Clock) -> None:
    ids = []
    for i in range(5):
        clock.now = T0 + dt.timedelta(seconds=i)
        kind = JobKind.STRAVA_SYNC if i % 2 else JobKind.FILE_IMPORT
        ids.append(store.create(athlete_id, kind, {})[0].id)
    store.request_cancel(ids[0])
    page = store.list_jobs(athlete_id, limit=2)
    assert [j.id for j in page] == [ids[4], ids[3]]
    rest = store.list_jobs(athlete_id, after=(page[-1].create_time, page[-1].id))
    assert [j.id for j in rest] == [ids[2], ids[1], ids[0]]
    syncs = store.list_jobs(None, kinds=[JobKind.STRAVA_SYNC])
    assert [j.id for j in syncs] == [ids[3], ids[1]]
    cancelled = store.list_jobs(athlete_id, states=[JobState.CANCELLED])
    assert [j.id for j in cancelled] == [ids[0]]
    assert store.list_jobs("someone-else") == []


def test_events_of_long_ended_jobs_are_pruned_but_the_last(
    store: JobStore, athlete_id: str, clock: Clock
) -> None:
    old, _ = store.create(athlete_id, JobKind.RECOMPUTE, {})
    store.start(old.id, "w")
    store.transition(old.id, JobState.SUCCEEDED, owner="w")
    recent, _ = store.create(athlete_id, JobKind.RECOMPUTE, {})
    clock.now += store.retention + dt.timedelta(minutes=1)
    store.start(recent.id, "w")
    store.transition(recent.id, JobState.FAILED, owner="w", error={"message": "boom"})
    assert store.prune_events() == 2
    assert store.oldest_sequence(old.id) == 3
    assert [e.state for e in store.events_after(old.id, 0)] == [JobState.SUCCEEDED]
    assert store.oldest_sequence(recent.id) == 1
    assert store.get(recent.id).error == {"message": "boom"}


def test_dead_letters(store: JobStore, athlete_id: str) -> None:
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    first = store.add_dead_letter("sync", job.id, {"job_id": job.id}, {"type": "X"}, 5)
    second = store.add_dead_letter("refresh", None, {}, {"type": "Y"}, 3)
    listed = store.list_dead_letters()
    assert {d.id for d in listed} == {first.id, second.id}
    page = store.list_dead_letters(limit=1)
    rest = store.list_dead_letters(after=(page[0].create_time, page[0].id))
    assert [d.id for d in page + rest] == [d.id for d in listed]
    assert store.get_dead_letter(first.id) == first
    store.delete_dead_letter(first.id)
    with pytest.raises(NotFound):
        store.get_dead_letter(first.id)
    with pytest.raises(NotFound):
        store.delete_dead_letter(first.id)


def test_progress_carries_the_result_so_far_and_a_failed_job_keeps_it(
    store: JobStore, athlete_id: str
) -> None:
    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    assert store.start(job.id, "worker-a") is not None
    store.record_progress(
        job.id, "worker-a", Progress(completed=2), checkpoint={"after": 0}, result={"created": 2}
    )
    running = store.get(job.id)
    assert running.state == JobState.RUNNING
    assert running.result == {"created": 2}  # GetJob shows it while the job runs
    assert running.checkpoint == {"after": 0}
    store.record_progress(job.id, "worker-a", Progress(completed=3))  # no result: kept
    assert store.get(job.id).result == {"created": 2}
    store.transition(job.id, JobState.FAILED, owner="worker-a", error={"message": "boom"})
    assert store.get(job.id).result == {"created": 2}


def test_a_cancel_noticed_inside_a_call_keeps_the_latest_result(
    store: JobStore, athlete_id: str
) -> None:
    # The Strava client checks the job between retry attempts (`between_steps`), with no
    # result of its own: the job's counts so far must survive the cancellation.
    from tasks.consumer import between_steps, checked_by
    from tasks.jobs import JobCancelled, JobRun

    job, _ = store.create(athlete_id, JobKind.STRAVA_SYNC, {})
    started = store.start(job.id, "worker-a")
    assert started is not None
    run = JobRun(store, started, "worker-a")
    run.progress(Progress(completed=2), checkpoint={"after": 0}, result={"created": 2})
    run.check({"created": 3})  # the runner's own check, with what it stored since
    assert store.request_cancel(job.id).cancel_requested
    run._last_check = 0.0  # due for a look at the database
    with pytest.raises(JobCancelled) as cancelled, checked_by(run.check):
        between_steps()
    assert cancelled.value.result == {"created": 3}
    store.transition(job.id, JobState.CANCELLED, owner="worker-a", result=cancelled.value.result)
    ended = store.get(job.id)
    assert ended.state == JobState.CANCELLED
    assert ended.result == {"created": 3}
