"""JobService through a real server, on PostgreSQL and SQLite: get, list, cancel, watch."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from stride.v1 import athlete_pb2, athlete_pb2_grpc, job_pb2, job_pb2_grpc

from domain.jobs import JobKind, JobState, Progress
from services.jobs import JobStore
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    detail,
    make_settings,
    reason,
    violations,
)

Stub = job_pb2_grpc.JobServiceStub
HEARTBEAT = 0.2


@pytest.fixture
def job_server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "data", database_url, watch_heartbeat_seconds=HEARTBEAT)
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def admin_channel(job_server: ServerThread) -> Iterator[grpc.Channel]:
    with channel_as(job_server.address, ADMIN_TOKEN) as channel:
        yield channel


@pytest.fixture
def jobs(admin_channel: grpc.Channel) -> Stub:
    return Stub(admin_channel)


@pytest.fixture
def store(job_server: ServerThread) -> JobStore:
    assert job_server.running is not None
    return job_server.running.runtime.job_store


def _athlete(channel: grpc.Channel, name: str = "Runner") -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name=name, time_zone="UTC")
        )
    ).name


def _token(channel: grpc.Channel, athlete: str) -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    created = stub.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=athlete, access_token=athlete_pb2.AccessToken())
    )
    return created.token


def _id(athlete: str) -> str:
    return athlete.split("/")[1]


def _job(store: JobStore, athlete: str, kind: JobKind = JobKind.STRAVA_SYNC) -> str:
    job, created = store.create(_id(athlete), kind, {})
    assert created
    return f"{athlete}/jobs/{job.id}"


def _job_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return cast(grpc.Call, error).code()


def _fails(call: Any, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert _code(caught.value) == code, caught.value
    return caught.value


def _run_job(store: JobStore, job_id: str, steps: int = 2) -> None:
    """RUNNING, `steps` progress events, SUCCEEDED (3 + steps events after QUEUED)."""
    assert store.start(job_id, "worker") is not None
    for done in range(1, steps + 1):
        store.record_progress(job_id, "worker", Progress(completed=done, total=steps))
    store.transition(
        job_id, JobState.SUCCEEDED, owner="worker", result={"created": steps, "updated": 0}
    )


# Get, list, cancel --------------------------------------------------------------------------


def test_get_job(jobs: Stub, admin_channel: grpc.Channel, store: JobStore) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job = jobs.GetJob(job_pb2.GetJobRequest(name=name))
    assert job.name == name
    assert job.kind == job_pb2.JOB_KIND_STRAVA_SYNC
    assert job.state == job_pb2.JOB_STATE_QUEUED
    assert job.last_event_sequence == 1
    assert job.HasField("create_time")
    assert not job.HasField("end_time")
    assert not job.progress.HasField("total")

    _run_job(store, _job_id(name))
    done = jobs.GetJob(job_pb2.GetJobRequest(name=name))
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED
    assert done.progress.total == 2
    assert done.progress.done == 2
    assert done.result.created == 2
    assert done.HasField("end_time")
    assert done.HasField("expire_time")
    assert done.last_event_sequence == 5


def test_get_job_under_another_athlete_or_missing_is_not_found(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    first, second = _athlete(admin_channel, "A"), _athlete(admin_channel, "B")
    name = _job(store, first)
    _fails(
        lambda: jobs.GetJob(job_pb2.GetJobRequest(name=f"{second}/jobs/{_job_id(name)}")),
        grpc.StatusCode.NOT_FOUND,
    )
    _fails(
        lambda: jobs.GetJob(job_pb2.GetJobRequest(name=f"{first}/jobs/nothing")),
        grpc.StatusCode.NOT_FOUND,
    )
    error = _fails(
        lambda: jobs.GetJob(job_pb2.GetJobRequest(name="jobs/x")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "name" in violations(error)


def test_list_jobs_filters_and_pages(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete, other = _athlete(admin_channel, "A"), _athlete(admin_channel, "B")
    names = [_job(store, athlete) for _ in range(5)]
    imported = _job(store, athlete, JobKind.FILE_IMPORT)
    theirs = _job(store, other)
    _run_job(store, _job_id(names[0]))

    listed = jobs.ListJobs(job_pb2.ListJobsRequest(parent=athlete))
    assert [j.name for j in listed.jobs] == [imported, *reversed(names)]  # newest first
    assert listed.next_page_token == ""

    seen: list[str] = []
    token = ""
    while True:
        page = jobs.ListJobs(job_pb2.ListJobsRequest(parent=athlete, page_size=2, page_token=token))
        assert len(page.jobs) <= 2
        seen += [j.name for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [j.name for j in listed.jobs]

    kinds = jobs.ListJobs(
        job_pb2.ListJobsRequest(parent=athlete, kinds=[job_pb2.JOB_KIND_FILE_IMPORT])
    )
    assert [j.name for j in kinds.jobs] == [imported]
    ended = jobs.ListJobs(
        job_pb2.ListJobsRequest(parent=athlete, states=[job_pb2.JOB_STATE_SUCCEEDED])
    )
    assert [j.name for j in ended.jobs] == [names[0]]
    active = jobs.ListJobs(
        job_pb2.ListJobsRequest(
            parent=athlete,
            states=[job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING],
            kinds=[job_pb2.JOB_KIND_STRAVA_SYNC],
        )
    )
    assert [j.name for j in active.jobs] == list(reversed(names[1:]))

    everyone = jobs.ListJobs(job_pb2.ListJobsRequest(parent="athletes/-"))
    assert {j.name for j in everyone.jobs} == {*names, imported, theirs}

    # A token binds its filters.
    first = jobs.ListJobs(job_pb2.ListJobsRequest(parent=athlete, page_size=1))
    _fails(
        lambda: jobs.ListJobs(
            job_pb2.ListJobsRequest(
                parent=athlete,
                page_token=first.next_page_token,
                kinds=[job_pb2.JOB_KIND_FILE_IMPORT],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    error = _fails(
        lambda: jobs.ListJobs(
            job_pb2.ListJobsRequest(parent=athlete, states=[0, 99], kinds=[42])  # type: ignore[list-item]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(violations(error)) == {"states[0]", "states[1]", "kinds[0]"}


def test_athlete_token_sees_only_its_own_jobs(
    job_server: ServerThread, admin_channel: grpc.Channel, store: JobStore
) -> None:
    mine, theirs = _athlete(admin_channel, "A"), _athlete(admin_channel, "B")
    my_job, their_job = _job(store, mine), _job(store, theirs)
    with channel_as(job_server.address, _token(admin_channel, mine)) as channel:
        stub = Stub(channel)
        assert stub.GetJob(job_pb2.GetJobRequest(name=my_job)).name == my_job
        listed = stub.ListJobs(job_pb2.ListJobsRequest(parent=mine))
        assert [j.name for j in listed.jobs] == [my_job]
        denied = grpc.StatusCode.PERMISSION_DENIED
        _fails(lambda: stub.GetJob(job_pb2.GetJobRequest(name=their_job)), denied)
        _fails(lambda: stub.CancelJob(job_pb2.CancelJobRequest(name=their_job)), denied)
        _fails(lambda: list(stub.WatchJob(job_pb2.WatchJobRequest(name=their_job))), denied)
        _fails(lambda: stub.ListJobs(job_pb2.ListJobsRequest(parent=theirs)), denied)
        error = _fails(lambda: stub.ListJobs(job_pb2.ListJobsRequest(parent="athletes/-")), denied)
        assert reason(error) == "ADMIN_ONLY"
        # Another athlete's job name that does not exist is denied just the same.
        _fails(lambda: stub.GetJob(job_pb2.GetJobRequest(name=f"{theirs}/jobs/nope")), denied)
    assert store.get(_job_id(their_job)).state == JobState.QUEUED


def test_cancel(jobs: Stub, admin_channel: grpc.Channel, store: JobStore) -> None:
    athlete = _athlete(admin_channel)
    queued = _job(store, athlete)
    cancelled = jobs.CancelJob(job_pb2.CancelJobRequest(name=queued))
    assert cancelled.state == job_pb2.JOB_STATE_CANCELLED
    assert cancelled.cancel_requested
    assert cancelled.HasField("end_time")
    again = jobs.CancelJob(job_pb2.CancelJobRequest(name=queued))  # retries are safe
    assert again.state == job_pb2.JOB_STATE_CANCELLED
    assert again.last_event_sequence == cancelled.last_event_sequence == 2

    running = _job(store, athlete)
    store.start(_job_id(running), "worker")
    flagged = jobs.CancelJob(job_pb2.CancelJobRequest(name=running))
    assert flagged.state == job_pb2.JOB_STATE_RUNNING
    assert flagged.cancel_requested
    assert store.heartbeat(_job_id(running), "worker").cancel_requested

    succeeded = _job(store, athlete)
    _run_job(store, _job_id(succeeded))
    error = _fails(
        lambda: jobs.CancelJob(job_pb2.CancelJobRequest(name=succeeded)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "JOB_ENDED"


# Watching -----------------------------------------------------------------------------------


def _watch(stub: Stub, name: str, after: int = 0, **kwargs: Any) -> Any:
    return stub.WatchJob(job_pb2.WatchJobRequest(name=name, after_sequence=after), **kwargs)


def _steps(events: list[job_pb2.JobEvent]) -> list[int]:
    return [e.sequence for e in events if not e.heartbeat]


def test_watch_replays_then_streams_live_until_the_job_ends(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    store.start(job_id, "worker")  # events 1 (QUEUED), 2 (RUNNING)

    def work() -> None:
        time.sleep(0.3)
        for done in range(1, 4):
            store.record_progress(job_id, "worker", Progress(completed=done, total=3))
            time.sleep(0.05)
        store.transition(job_id, JobState.SUCCEEDED, owner="worker", result={"created": 3})

    worker = threading.Thread(target=work)
    worker.start()
    events = list(_watch(jobs, name, after=1, timeout=10))
    worker.join()
    assert _steps(events) == [2, 3, 4, 5, 6]
    assert events[0].state == job_pb2.JOB_STATE_RUNNING
    assert not events[0].heartbeat
    last = events[-1]
    assert last.state == job_pb2.JOB_STATE_SUCCEEDED
    assert last.result.created == 3
    assert last.progress.done == 3
    assert last.progress.total == 3
    # Heartbeats, if any came while the worker slept, repeat the last sequence sent.
    for previous, event in itertools.pairwise(events):
        if event.heartbeat:
            assert event.sequence == previous.sequence


def test_reconnecting_with_the_last_sequence_misses_and_repeats_nothing(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    store.start(job_id, "worker")

    def work() -> None:
        done = 0
        while done < 40:
            done += 1
            store.record_progress(job_id, "worker", Progress(completed=done))
            time.sleep(0.02)
        store.transition(job_id, JobState.SUCCEEDED, owner="worker")

    worker = threading.Thread(target=work)
    worker.start()
    received: list[int] = []
    last = 0
    for attempt in range(3):  # drop the stream twice midway, then follow it to the end
        call = _watch(jobs, name, after=last, timeout=20)
        steps = 0
        for event in call:
            if not event.heartbeat:
                received.append(event.sequence)
                steps += 1
            last = event.sequence
            if attempt < 2 and steps == 7:
                call.cancel()
                break
    worker.join()
    assert received == list(range(1, store.get(job_id).last_event_sequence + 1))


def test_two_watchers_see_the_same_events(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    results: list[list[int]] = [[], []]

    def follow(index: int) -> None:
        results[index] = _steps(list(_watch(jobs, name, timeout=10)))

    watchers = [threading.Thread(target=follow, args=(i,)) for i in range(2)]
    for watcher in watchers:
        watcher.start()
    time.sleep(0.3)
    _run_job(store, job_id, steps=5)
    for watcher in watchers:
        watcher.join()
    assert results[0] == results[1] == list(range(1, 9))


def test_heartbeats_while_idle(jobs: Stub, admin_channel: grpc.Channel, store: JobStore) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    store.start(job_id, "worker")  # last sequence 2
    call = _watch(jobs, name, after=2, timeout=10)
    first = next(call)  # at once: nothing to replay, so a heartbeat with the current state
    assert first.heartbeat
    assert first.sequence == 2
    assert first.state == job_pb2.JOB_STATE_RUNNING
    started = time.monotonic()
    beats = [next(call) for _ in range(3)]
    assert all(b.heartbeat and b.sequence == 2 for b in beats)
    assert time.monotonic() - started < 3 * HEARTBEAT + 2
    store.record_progress(job_id, "worker", Progress(completed=1))
    event = next(e for e in call if not e.heartbeat)
    assert event.sequence == 3
    store.transition(job_id, JobState.SUCCEEDED, owner="worker")
    rest = list(call)
    assert _steps(rest) == [4]
    assert all(b.sequence == 3 for b in rest if b.heartbeat)


def test_watching_an_ended_job_from_its_end_sends_one_heartbeat(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    cancelled = jobs.CancelJob(job_pb2.CancelJobRequest(name=name))
    events = list(_watch(jobs, name, after=cancelled.last_event_sequence, timeout=5))
    assert len(events) == 1
    assert events[0].heartbeat
    assert events[0].state == job_pb2.JOB_STATE_CANCELLED
    assert events[0].sequence == 2
    replay = list(_watch(jobs, name, timeout=5))
    assert _steps(replay) == [1, 2]
    assert replay[-1].cancel_requested


def test_client_cancelling_a_watch_leaves_the_server_healthy(
    job_server: ServerThread, jobs: Stub, admin_channel: grpc.Channel, store: JobStore
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    assert job_server.running is not None
    bus = job_server.running.runtime.job_bus
    for _ in range(10):  # more than the streams one principal may hold open at once
        call = _watch(jobs, name, timeout=10)
        assert next(call).sequence == 1
        call.cancel()
    deadline = time.monotonic() + 5
    count = getattr(bus, "subscriber_count", None)
    while count is not None and count(job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    if count is not None:
        assert count(job_id) == 0  # every watch unsubscribed
    assert jobs.GetJob(job_pb2.GetJobRequest(name=name)).state == job_pb2.JOB_STATE_QUEUED
    _run_job(store, job_id)
    assert _steps(list(_watch(jobs, name, timeout=10))) == [1, 2, 3, 4, 5]


def test_watch_arguments_and_expired_events(
    jobs: Stub, admin_channel: grpc.Channel, store: JobStore, job_server: ServerThread
) -> None:
    athlete = _athlete(admin_channel)
    name = _job(store, athlete)
    job_id = _job_id(name)
    error = _fails(lambda: list(_watch(jobs, name, after=-1)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "after_sequence" in violations(error)
    error = _fails(lambda: list(_watch(jobs, name, after=2)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "after_sequence" in violations(error)
    _fails(lambda: list(_watch(jobs, f"{athlete}/jobs/nothing")), grpc.StatusCode.NOT_FOUND)

    _run_job(store, job_id)  # events 1..5
    assert job_server.running is not None
    pruning = JobStore(
        job_server.running.database, clock=lambda: store.clock() + store.retention * 2
    )
    assert pruning.prune_events() == 4  # all but the last event
    error = _fails(lambda: list(_watch(jobs, name, after=1)), grpc.StatusCode.FAILED_PRECONDITION)
    info = detail(error, error_details_pb2.ErrorInfo)
    assert info.reason == "JOB_EVENTS_EXPIRED"
    assert dict(info.metadata) == {"first_retained_sequence": "5", "last_event_sequence": "5"}
    # As the contract says: watch again after the last event (or just before it).
    assert _steps(list(_watch(jobs, name, after=4, timeout=5))) == [5]
    only = list(_watch(jobs, name, after=5, timeout=5))
    assert len(only) == 1
    assert only[0].heartbeat
