"""Strava under contention and abuse: concurrent token refreshes, a public webhook flooded
or replayed, scopes not granted, revoked access, disconnect racing a sync, a connect whose
first attempt failed after the code exchange, request ids reused across kinds. The real
server with in-process workers and the simulator over real HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from stride.v1 import athlete_pb2, job_pb2, job_pb2_grpc, sync_pb2

from domain.connections import ConnectionState
from domain.jobs import JobKind
from runtime import Runtime
from storage.models import ActivityRow
from storage.repositories.strava import StravaConnectionRepository
from tests.strava_flow import (
    connect,
    connection_name,
    create_athlete,
    strava_overrides,
    sync_stub,
    watch,
)
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    SharedRedis,
    channel_as,
    make_settings,
    reason,
)


@pytest.fixture
def sim() -> Iterator[StravaSimulator]:
    config = SimConfig(seed=5, athletes=2, activities=8, stream_step=120,
                       rate_limits_enabled=False)  # fmt: skip
    with StravaSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def server(
    sim: StravaSimulator, database_url: str | None, tmp_path: Path
) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "data", database_url, **strava_overrides(sim))
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def admin(server: ServerThread) -> Iterator[grpc.Channel]:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        yield channel


def _runtime(server: ServerThread) -> Runtime:
    assert server.running is not None
    return server.running.runtime


def _connected(admin: grpc.Channel, sim: StravaSimulator, index: int = 0) -> tuple[str, int]:
    athlete, strava_id = create_athlete(admin), sim.athlete_ids[index]
    assert connect(admin, athlete, sim, strava_id).state == job_pb2.JOB_STATE_SUCCEEDED
    return athlete, strava_id


def _wait(condition: Callable[[], bool], seconds: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stored(server: ServerThread, athlete: str) -> int:
    with _runtime(server).database.read_primary() as session:
        query = session.query(ActivityRow).filter_by(athlete_id=athlete.split("/")[1])
        return query.filter_by(source="strava").count()


def _fails(call: Callable[[], object], code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value
    return caught.value


def _event(strava_id: int, object_id: int, aspect: str = "create", **fields: Any) -> Any:
    values: dict[str, Any] = {
        "object_type": "activity",
        "object_id": object_id,
        "aspect_type": aspect,
        "owner_id": strava_id,
        "subscription_id": 1,
        "event_time": int(time.time()),
    }
    values.update(fields)
    return sync_pb2.HandleStravaWebhookEventRequest(event=sync_pb2.StravaWebhookEvent(**values))


def _webhook_jobs(admin: grpc.Channel, athlete: str) -> list[job_pb2.Job]:
    listed = job_pb2_grpc.JobServiceStub(admin).ListJobs(
        job_pb2.ListJobsRequest(parent=athlete, kinds=[job_pb2.JOB_KIND_STRAVA_WEBHOOK])
    )
    return list(listed.jobs)


def test_concurrent_refreshes_of_one_athlete_make_one_strava_call_and_keep_it_connected(
    sim: StravaSimulator, database_url: str | None, tmp_path: Path, shared_redis: SharedRedis
) -> None:
    # Strava's rule: a refresh in the token's last hour rotates it and retires the old one
    # at once; a second refresh with the retired token would be refused.
    overrides = strava_overrides(sim, redis_url=shared_redis.url,
                                 redis_key_prefix=shared_redis.prefix)  # fmt: skip
    settings = make_settings(tmp_path / "data", database_url, inprocess_workers=True, **overrides)
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as admin:
        athlete, strava_id = _connected(admin, sim)
        runtime = _runtime(server)
        tokens = runtime.strava_tokens
        assert tokens is not None
        athlete_id = athlete.split("/")[1]
        with runtime.database.transaction() as session:
            repo = StravaConnectionRepository(session)
            stored = repo.get(athlete_id)
            assert stored is not None
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
            repo.save(dataclasses.replace(stored, access_token_expire_time=soon))
        sim.expire_tokens(strava_id)  # Strava too sees it in its last hour
        refreshes = sim.count("oauth.token")
        barrier = threading.Barrier(6)
        got: list[int] = []
        client = runtime.strava
        assert client is not None

        def use() -> None:
            barrier.wait()
            got.append(tokens.call(athlete_id, lambda token: client.get_athlete(token).id))

        threads = [threading.Thread(target=use) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert got == [strava_id] * 6
        assert sim.count("oauth.token") == refreshes + 1
        assert tokens.load(athlete_id).state == ConnectionState.CONNECTED


def test_a_replayed_stale_or_irrelevant_webhook_event_makes_no_new_job(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, strava_id = _connected(admin, sim)
    sync = sync_stub(admin)
    activity = sim.activities(strava_id)[0]
    event = _event(strava_id, activity.id)
    for _ in range(3):  # Strava retries a delivery it thinks failed
        sync.HandleStravaWebhookEvent(event)
    sync.HandleStravaWebhookEvent(_event(strava_id, activity.id, event_time=1_000_000))
    sync.HandleStravaWebhookEvent(
        _event(strava_id, strava_id, object_type="athlete", aspect_type="update")
    )  # an athlete event that is no deauthorization
    sync.HandleStravaWebhookEvent(_event(strava_id, activity.id, aspect_type="nonsense"))
    sync.HandleStravaWebhookEvent(_event(999_999_999, activity.id))  # nobody Stride knows
    assert len(_webhook_jobs(admin, athlete)) == 1


def test_a_webhook_flood_is_capped_per_athlete(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, strava_id = _connected(admin, sim)
    sim.hang(None, match="/activities/")  # the jobs it makes pile up
    sync = sync_stub(admin)
    for object_id in range(1, 41):
        sync.HandleStravaWebhookEvent(_event(strava_id, object_id))
    jobs = _webhook_jobs(admin, athlete)
    assert 1 <= len(jobs) <= 20
    sim.clear_faults()


def test_a_sync_without_activity_scope_is_refused_and_the_connection_stays(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, strava_id = create_athlete(admin), sim.athlete_ids[0]
    code = sim.authorize(strava_id, "read")  # the athlete unticked activity access
    sync = sync_stub(admin)
    job = sync.ConnectStrava(
        sync_pb2.ConnectStravaRequest(name=connection_name(athlete), code=code)
    )
    assert watch(admin, job.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    error = _fails(
        lambda: sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete))),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "STRAVA_SCOPE_MISSING"
    connection = sync.GetStravaConnection(
        sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
    )
    assert connection.state == athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTED
    assert list(connection.granted_scopes) == ["read"]


def test_revoked_access_deletes_what_came_from_strava(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, strava_id = _connected(admin, sim)
    sync = sync_stub(admin)
    first = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    assert watch(admin, first.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    assert _stored(server, athlete) == len(sim.activities(strava_id))
    sim.revoke(strava_id)
    again = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete), full=True))
    assert watch(admin, again.name)[-1].state == job_pb2.JOB_STATE_FAILED
    assert _stored(server, athlete) == 0
    connection = sync.GetStravaConnection(
        sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
    )
    assert connection.state == athlete_pb2.STRAVA_CONNECTION_STATE_REVOKED


def test_disconnect_waits_for_a_running_sync_and_leaves_nothing_behind(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, _ = _connected(admin, sim)
    sync = sync_stub(admin)
    sim.slow(0.3, match="/streams")
    running = sync.StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    _wait(lambda: _stored(server, athlete) >= 1, 30, "a first stored activity")
    gone = sync.DisconnectStrava(sync_pb2.DisconnectStravaRequest(name=connection_name(athlete)))
    # Connecting again while the disconnect runs would have its new tokens revoked.
    error = _fails(
        lambda: sync.ConnectStrava(
            sync_pb2.ConnectStravaRequest(name=connection_name(athlete), code="abc123")
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "STRAVA_DISCONNECTING"
    assert watch(admin, gone.name)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    ended = job_pb2_grpc.JobServiceStub(admin).GetJob(job_pb2.GetJobRequest(name=running.name))
    assert ended.state in (job_pb2.JOB_STATE_CANCELLED, job_pb2.JOB_STATE_FAILED)
    time.sleep(0.5)  # anything still in flight would land now
    assert _stored(server, athlete) == 0
    sim.clear_faults()


def test_a_connect_retried_after_the_code_exchange_reuses_its_tokens(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, strava_id = create_athlete(admin), sim.athlete_ids[0]
    # A pasted code says nothing of its scopes: the job probes with a list call, which
    # fails more often than the client retries, so the task's first attempt fails after
    # the code (single-use) was exchanged.
    sim.fail_next(4, status=500, match="/athlete/activities")
    job = sync_stub(admin).ConnectStrava(
        sync_pb2.ConnectStravaRequest(name=connection_name(athlete), code=sim.authorize(strava_id))
    )
    assert watch(admin, job.name, timeout=60)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    assert sim.count("oauth.token") == 1  # exchanged once


def test_a_request_id_reused_for_another_kind_of_job_is_refused(
    admin: grpc.Channel, server: ServerThread, sim: StravaSimulator
) -> None:
    athlete, _ = _connected(admin, sim)
    sync = sync_stub(admin)
    name = connection_name(athlete)
    first = sync.StartSync(sync_pb2.StartSyncRequest(name=name, request_id="same-key"))
    assert sync.StartSync(sync_pb2.StartSyncRequest(name=name, request_id="same-key")).name == (
        first.name
    )
    _fails(
        lambda: sync.DisconnectStrava(
            sync_pb2.DisconnectStravaRequest(name=name, request_id="same-key")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert (
        _runtime(server).job_store.list_jobs(
            athlete.split("/")[1], kinds=[JobKind.STRAVA_DISCONNECT]
        )
        == []
    )
