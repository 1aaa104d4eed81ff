"""Strava sync end to end: the real server with in-process workers, the simulator over real
HTTP, on the embedded default and on PostgreSQL (+ Redis where the test says so)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
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
from tasks.strava import sync as strava_sync
from tasks.strava.client import Activity, Streams
from tests.strava_flow import (
    connect,
    connection_name,
    create_athlete,
    strava_overrides,
    sync_stub,
    watch,
)
from tests.strava_sim import SimConfig, StravaSimulator, payloads
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
    # Strava's own averages are kept; what it never gives (elevation loss) comes from the
    # streams, for exactly the activities whose streams carry altitude.
    by_id = {str(a.id): a for a in expected}
    for stored in listed.activities:
        source = by_id[stored.external_id]
        if source.average_speed:
            assert stored.average_speed_meters_per_second == pytest.approx(source.average_speed)
        streams = sim.streams(source)
        with_altitude = streams is not None and streams.altitude is not None
        assert stored.HasField("total_elevation_loss_meters") == with_altitude, source
    assert any(a.HasField("total_elevation_loss_meters") for a in listed.activities)


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
                event_time=int(time.time()),
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


def test_an_activity_deleted_on_strava_between_pages_hides_no_other(
    admin: grpc.Channel, strava_server: ServerThread, sim: StravaSimulator
) -> None:
    athlete = create_athlete(admin)
    strava_id = sim.athlete_ids[0]
    assert connect(admin, athlete, sim, strava_id).state == job_pb2.JOB_STATE_SUCCEEDED
    jobs = job_pb2_grpc.JobServiceStub(admin)
    oldest = sim.activities(strava_id)[-1]  # on the first page (oldest first)
    sim.reset_log()
    sim.slow(0.05, match="/streams")  # the first page takes long enough to arm the hang
    job = sync_stub(admin).StartSync(
        sync_pb2.StartSyncRequest(name=connection_name(athlete), full=True)
    )
    _wait_until(lambda: sim.count("athlete.activities") >= 1)
    # The next listing hangs until released: the sync is held between two pages.
    sim.hang(None, match="/athlete/activities")
    _wait_until(lambda: jobs.GetJob(job_pb2.GetJobRequest(name=job.name)).progress.done >= 15)
    running = jobs.GetJob(job_pb2.GetJobRequest(name=job.name))
    assert running.state == job_pb2.JOB_STATE_RUNNING
    assert running.result.created == 15  # what it stored so far, while it runs
    sim.delete_activity(oldest.id, notify=False)
    sim.clear_faults()

    events = watch(admin, job.name)
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
    done = [e.progress.done for e in events]
    assert done == sorted(done), done
    remaining = sorted(str(a.id) for a in sim.activities(strava_id))
    ids, _ = _stored(strava_server, athlete)
    assert len(ids) == len(set(ids))  # each once
    assert sorted(set(ids) - {str(oldest.id)}) == remaining  # none hidden by the deletion
    ended = jobs.GetJob(job_pb2.GetJobRequest(name=job.name))
    assert ended.result.created == len(remaining) + 1


# The jobs' own decisions, with a fake Strava and store ---------------------------------------


class _FakeActivities:
    def __init__(self, stored: set[str]) -> None:
        self.stored = set(stored)
        self.deleted: list[str] = []
        self.written: list[str] = []

    def stored_ids(self, athlete_id: str) -> set[str]:
        return set(self.stored)

    def stored_raw(self, athlete_id: str, ids: list[str]) -> dict[str, Any]:
        return {i: {} for i in ids if i in self.stored}

    def delete(self, athlete_id: str, ids: list[str] | None = None) -> int:
        self.deleted.extend(ids or [])
        self.stored -= set(ids or [])
        return len(ids or [])

    def write(self, athlete_id: str, external_id: str, *args: Any) -> tuple[str, bool, int]:
        self.written.append(external_id)
        self.stored.add(external_id)
        return external_id, True, 0


def _fake_work(client: Any, activities: _FakeActivities, strava_athlete_id: int = 1) -> Any:
    tokens = SimpleNamespace(
        call=lambda athlete_id, request: request("token"),
        load=lambda athlete_id: SimpleNamespace(strava_athlete_id=strava_athlete_id),
    )
    return SimpleNamespace(client=client, tokens=tokens, activities=activities, page_size=2)


def _fake_run(**params: Any) -> Any:
    job = SimpleNamespace(id="job-1", athlete_id="athlete-1", params=params, checkpoint=None)
    return SimpleNamespace(job=job, check=lambda result=None: None, progress=lambda *a, **k: None)


def test_reconcile_never_deletes_an_activity_stored_while_it_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    activities = _FakeActivities({"1", "2"})
    starts = {1: 1_767_225_600, 2: 1_767_312_000}  # 2026-01-01 and 02, UTC
    strava = [Activity(i, {"id": i, "start_date": f"2026-01-0{i}T00:00:00Z"}) for i in (1, 2)]

    def list_activities(token: str, *, after: int, page: int, per_page: int) -> list[Activity]:
        # A sync (or a webhook job) stores a new upload while Strava is being listed.
        activities.stored.add("3")
        later = [a for a in strava if starts[a.id] > after]
        return later[(page - 1) * per_page : page * per_page]

    client = SimpleNamespace(list_activities=list_activities)
    monkeypatch.setattr(strava_sync, "strava_work", lambda: _fake_work(client, activities))
    result = strava_sync.run_reconcile(_fake_run())
    assert activities.deleted == []  # "3", stored meanwhile, is no deletion
    assert (result["deleted"], result["unchanged"]) == (0, 2)
    assert activities.stored == {"1", "2", "3"}


def test_a_webhook_event_naming_another_athletes_activity_stores_nothing(
    monkeypatch: pytest.MonkeyPatch, sim: StravaSimulator
) -> None:
    mine, other = sim.athlete_ids
    theirs = sim.activities(other)[0]
    requested: list[int] = []

    def get_activity(token: str, activity_id: int) -> Activity:
        # Strava answers with another athlete's public activity to any token.
        requested.append(activity_id)
        activity = sim.activity(activity_id)
        return Activity(activity.id, payloads.detailed(activity, sim.athlete(other), None))

    client = SimpleNamespace(
        get_activity=get_activity, get_streams=lambda token, activity_id: Streams({})
    )
    activities = _FakeActivities(set())
    monkeypatch.setattr(strava_sync, "strava_work", lambda: _fake_work(client, activities, mine))
    event = {"object_type": "activity", "object_id": theirs.id, "aspect_type": "create",
             "owner_id": mine}  # fmt: skip
    result = strava_sync.run_webhook(_fake_run(event=event))
    assert requested == [theirs.id]
    assert activities.written == []
    assert (result["skipped"], result["created"]) == (1, 0)

    # The connected athlete's own activity is stored.
    own = sim.activities(mine)[0]
    own_detail = payloads.detailed(own, sim.athlete(mine), None)
    client.get_activity = lambda token, activity_id: Activity(own.id, own_detail)
    event["object_id"] = own.id
    assert strava_sync.run_webhook(_fake_run(event=event))["created"] == 1
    assert activities.written == [str(own.id)]

    # An answer about another activity than the event's is not stored either.
    event["object_id"] = own.id + 1_000_000
    assert strava_sync.run_webhook(_fake_run(event=event))["skipped"] == 1
    assert activities.written == [str(own.id)]


def test_paging_by_time_lists_each_activity_once_even_when_many_share_a_second() -> None:
    # Seven activities, five of them starting in the same second, two a page: each page
    # either moves the start or (a full page in one second) asks for the next page.
    starts = {1: 100, 2: 200, 3: 200, 4: 200, 5: 200, 6: 200, 7: 300}
    strava = [Activity(i, {"id": i, "start_date": _iso(s)}) for i, s in starts.items()]
    window = strava_sync._Window(0)
    seen: list[int] = []
    for _ in range(20):
        listing = [a for a in strava if starts[a.id] > window.after]
        listing = listing[(window.page - 1) * 2 : window.page * 2]
        seen.extend(a.id for a in listing if str(a.id) not in window.done)
        window.done.update(str(a.id) for a in listing)
        if len(listing) < 2:
            break
        window.advance(listing)
        assert len(window.done) <= 2  # bounded: only ids that can be listed again
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
