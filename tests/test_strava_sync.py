"""Strava sync end to end: the real server with in-process workers, the simulator over real
HTTP, on the embedded default and on PostgreSQL (+ Redis where the test says so)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    athlete_pb2,
    job_pb2,
    job_pb2_grpc,
    sync_pb2,
)

from storage.models import ActivityRow, ActivitySampleRow
from tests.strava_flow import (
    connect,
    connection_name,
    create_athlete,
    strava_overrides,
    sync_stub,
    watch,
)
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings

ACTIVITIES = 40


@pytest.fixture
def sim() -> Iterator[StravaSimulator]:
    config = SimConfig(seed=7, athletes=2, activities=ACTIVITIES, stream_step=30,
                       rate_limits_enabled=False)  # fmt: skip
    with StravaSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def strava_server(
    sim: StravaSimulator, database_url: str | None, tmp_path: Path
) -> Iterator[ServerThread]:
    settings = make_settings(
        tmp_path / "data", database_url, **strava_overrides(sim, strava_page_size=15)
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def admin(strava_server: ServerThread) -> Iterator[grpc.Channel]:
    with channel_as(strava_server.address, ADMIN_TOKEN) as channel:
        yield channel


def _stored(server: ServerThread, athlete: str) -> tuple[list[str], int]:
    """External ids of the athlete's stored Strava activities, and their sample count."""
    assert server.running is not None
    database = server.running.runtime.database
    athlete_id = athlete.split("/")[1]
    with database.read_primary() as session:
        ids = [
            row.external_id
            for row in session.query(ActivityRow).filter_by(athlete_id=athlete_id, source="strava")
        ]
        samples = (
            session.query(ActivitySampleRow)
            .join(ActivityRow, ActivityRow.id == ActivitySampleRow.activity_id)
            .filter(ActivityRow.athlete_id == athlete_id)
            .count()
        )
    return [str(i) for i in ids], samples


def _expected_samples(sim: StravaSimulator, strava_id: int) -> int:
    total = 0
    for activity in sim.activities(strava_id):
        streams = sim.streams(activity)
        if streams is not None:
            total += len({t for t in streams.time})
    return total


def test_connect_with_a_pasted_code_then_sync_everything_once(
    admin: grpc.Channel, strava_server: ServerThread, sim: StravaSimulator
) -> None:
    athlete = create_athlete(admin)
    strava_id = sim.athlete_ids[0]
    sync = sync_stub(admin)
    assert (
        sync.GetStravaConnection(
            sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
        ).state
        == 1  # NOT_CONNECTED
    )
    ended = connect(admin, athlete, sim, strava_id)
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, ended
    connection = sync.GetStravaConnection(
        sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
    )
    assert connection.strava_athlete_id == strava_id
    assert connection.state == 2  # CONNECTED

    job = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    events = watch(admin, job.name)
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(sequences) + 1))
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    result = job_pb2_grpc.JobServiceStub(admin).GetJob(job_pb2.GetJobRequest(name=job.name)).result
    expected = sim.activities(strava_id)
    assert result.created == len(expected)
    ids, samples = _stored(strava_server, athlete)
    assert sorted(ids) == sorted(str(a.id) for a in expected)  # each once
    assert samples == result.samples_written == _expected_samples(sim, strava_id)

    # An incremental sync right after finds everything unchanged and writes nothing.
    again = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    assert watch(admin, again.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    second = job_pb2_grpc.JobServiceStub(admin).GetJob(job_pb2.GetJobRequest(name=again.name))
    assert (second.result.created, second.result.updated) == (0, 0)
    assert _stored(strava_server, athlete) == (ids, samples)

    listed = activity_pb2_grpc.ActivityServiceStub(admin).ListActivities(
        activity_pb2.ListActivitiesRequest(parent=athlete, page_size=100)
    )
    assert len(listed.activities) == len(expected)
    assert all(a.source_job == job.name for a in listed.activities)


def test_an_edit_on_strava_updates_the_copy_and_a_deletion_arrives_by_webhook(
    admin: grpc.Channel, strava_server: ServerThread, sim: StravaSimulator
) -> None:
    athlete = create_athlete(admin)
    strava_id = sim.athlete_ids[1]
    assert connect(admin, athlete, sim, strava_id).state == job_pb2.JOB_STATE_SUCCEEDED
    sync = sync_stub(admin)
    full = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete), full=True))
    assert watch(admin, full.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    newest, oldest = sim.activities(strava_id)[0], sim.activities(strava_id)[-1]

    sim.rename_activity(oldest.id, "Renamed on Strava", notify=False)
    again = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete), full=True))
    assert watch(admin, again.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    result = (
        job_pb2_grpc.JobServiceStub(admin).GetJob(job_pb2.GetJobRequest(name=again.name)).result
    )
    assert (result.created, result.updated) == (0, 1)

    # Deleted on Strava, and the event pushed the way Strava does (to the server's callback).
    sim.delete_activity(newest.id, notify=False)
    _push(sync, "delete", newest.id, strava_id)
    _wait_until(lambda: str(newest.id) not in _stored(strava_server, athlete)[0])
    assert len(_stored(strava_server, athlete)[0]) == len(sim.activities(strava_id))


def test_a_forged_webhook_event_deletes_nothing(
    admin: grpc.Channel, strava_server: ServerThread, sim: StravaSimulator
) -> None:
    athlete = create_athlete(admin)
    strava_id = sim.athlete_ids[0]
    assert connect(admin, athlete, sim, strava_id).state == job_pb2.JOB_STATE_SUCCEEDED
    sync = sync_stub(admin)
    job = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    assert watch(admin, job.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    before = _stored(strava_server, athlete)
    target = sim.activities(strava_id)[0]
    # Anyone can post to the public callback: a delete for an activity Strava still has,
    # and an athlete "deauthorization" while the tokens still work.
    _push(sync, "delete", target.id, strava_id)
    sync.HandleStravaWebhookEvent(
        sync_pb2.HandleStravaWebhookEventRequest(
            event=sync_pb2.StravaWebhookEvent(
                object_type="athlete",
                object_id=strava_id,
                aspect_type="update",
                owner_id=strava_id,
                updates=struct_pb2.Struct(
                    fields={"authorized": struct_pb2.Value(string_value="false")}
                ),
            )
        )
    )
    jobs = job_pb2_grpc.JobServiceStub(admin)
    webhook_kind = job_pb2.JOB_KIND_STRAVA_WEBHOOK

    def webhook_jobs_ended() -> bool:
        listed = jobs.ListJobs(job_pb2.ListJobsRequest(parent=athlete, kinds=[webhook_kind]))
        return len(listed.jobs) == 2 and all(
            j.state == job_pb2.JOB_STATE_SUCCEEDED for j in listed.jobs
        )

    _wait_until(webhook_jobs_ended)
    assert _stored(strava_server, athlete) == before
    connection = sync.GetStravaConnection(
        sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
    )
    assert connection.state == athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTED


def _push(sync: Any, aspect: str, activity_id: int, strava_id: int) -> None:
    sync.HandleStravaWebhookEvent(
        sync_pb2.HandleStravaWebhookEventRequest(
            event=sync_pb2.StravaWebhookEvent(
                object_type="activity",
                object_id=activity_id,
                aspect_type=aspect,
                owner_id=strava_id,
                subscription_id=1,
                event_time=int(time.time()),
            )
        )
    )


def _wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
