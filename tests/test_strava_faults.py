"""Strava sync when things go wrong, through the real server (in-process workers) and the
simulator over real HTTP: rate-limit storms, 5xx bursts and an open circuit, cancellation,
a hanging Strava, other athletes' tokens, bad input, dead tokens, disconnecting, the
webhook check, reconciling, dead letters. The checks about sharing (one budget for every
worker) run on PostgreSQL + Redis with two servers."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from stride.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    sync_pb2,
)

from domain.jobs import JobKind
from storage.models import ActivityRow
from tasks.jobs import enqueue_job
from tests.strava_flow import connect, connection_name, create_athlete, strava_overrides, sync_stub
from tests.strava_sim import Fault, SimConfig, StravaSimulator
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    SharedRedis,
    channel_as,
    detail,
    make_settings,
    postgres_database,
    reason,
)

STATE = job_pb2
CONNECTED = athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTED
NOT_CONNECTED = athlete_pb2.STRAVA_CONNECTION_STATE_NOT_CONNECTED
REVOKED = athlete_pb2.STRAVA_CONNECTION_STATE_REVOKED
TERMINAL = (STATE.JOB_STATE_SUCCEEDED, STATE.JOB_STATE_FAILED, STATE.JOB_STATE_CANCELLED)
# No scheduled syncs or reconciles: every job here is one the test starts.

# Helpers ------------------------------------------------------------------------------------


def _sim(**overrides: Any) -> SimConfig:
    values: dict[str, Any] = {"seed": 11, "athletes": 2, "activities": 8, "stream_step": 60,
                              "rate_limits_enabled": False}  # fmt: skip
    values.update(overrides)
    return SimConfig(**values)


def _settings(sim: StravaSimulator, data_dir: Path, database_url: str | None, **extra: Any) -> Any:
    return make_settings(data_dir, database_url, **strava_overrides(sim, **extra))


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return cast(grpc.Call, error).code()


def _fails(call: Callable[[], Any], code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert _code(caught.value) == code, caught.value
    return caught.value


def _wait_until(condition: Callable[[], bool], seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def _jobs(channel: grpc.Channel) -> job_pb2_grpc.JobServiceStub:
    return job_pb2_grpc.JobServiceStub(channel)


def _get(channel: grpc.Channel, name: str) -> job_pb2.Job:
    return _jobs(channel).GetJob(job_pb2.GetJobRequest(name=name))


def _events(channel: grpc.Channel, name: str, timeout: float = 60) -> list[job_pb2.JobEvent]:
    """Every stored event of the job until it ends (heartbeats left out)."""
    request = job_pb2.WatchJobRequest(name=name)
    return [e for e in _jobs(channel).WatchJob(request, timeout=timeout) if not e.heartbeat]


def _ended(channel: grpc.Channel, name: str, timeout: float = 60) -> job_pb2.Job:
    events = _events(channel, name, timeout)
    assert events[-1].state in TERMINAL, events[-1]
    return _get(channel, name)


def _connection(channel: grpc.Channel, athlete: str) -> sync_pb2.StravaConnection:
    return sync_stub(channel).GetStravaConnection(
        sync_pb2.GetStravaConnectionRequest(name=connection_name(athlete))
    )


def _start_sync(channel: grpc.Channel, athlete: str, **fields: Any) -> job_pb2.Job:
    return sync_stub(channel).StartSync(
        sync_pb2.StartSyncRequest(name=connection_name(athlete), **fields)
    )


def _stored(server: ServerThread, athlete: str) -> list[str]:
    """External ids of the athlete's stored Strava activities (duplicates kept)."""
    assert server.running is not None
    with server.running.runtime.database.read_primary() as session:
        rows = session.query(ActivityRow).filter_by(
            athlete_id=athlete.split("/")[1], source="strava"
        )
        return sorted(str(row.external_id) for row in rows)


def _strava_ids(sim: StravaSimulator, strava_id: int) -> list[str]:
    return sorted(str(a.id) for a in sim.activities(strava_id))


def _job_reason(job: job_pb2.Job) -> str:
    """The reason in a failed job's error (ErrorInfo, as a failed call carries it)."""
    for packed in job.error.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info):
            return str(info.reason)
    return ""


def _athlete_token(channel: grpc.Channel, athlete: str) -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    created = stub.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=athlete, access_token=athlete_pb2.AccessToken())
    )
    return str(created.token)


def _rate_state(channel: grpc.Channel) -> admin_pb2.RateLimitState:
    return admin_pb2_grpc.AdminServiceStub(channel).GetRateLimitState(
        admin_pb2.GetRateLimitStateRequest()
    )


def _connected(channel: grpc.Channel, sim: StravaSimulator, index: int = 0) -> tuple[str, int]:
    """A new athlete connected to the simulator's `index`-th Strava athlete."""
    athlete = create_athlete(channel)
    strava_id = sim.athlete_ids[index]
    assert connect(channel, athlete, sim, strava_id).state == STATE.JOB_STATE_SUCCEEDED
    return athlete, strava_id


def _synced(channel: grpc.Channel, athlete: str) -> job_pb2.Job:
    job = _ended(channel, _start_sync(channel, athlete).name)
    assert job.state == STATE.JOB_STATE_SUCCEEDED, job
    return job


def _status_429(sim: StravaSimulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["status"] == 429]


class Servers:
    """Servers on a simulator, stopped (then the simulator) when the test ends."""

    def __init__(self, stack: ExitStack, tmp_path: Path) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.count = 0

    def sim(self, config: SimConfig) -> StravaSimulator:
        return self.stack.enter_context(StravaSimulator(config))

    def server(
        self, sim: StravaSimulator, database_url: str | None = None, **extra: Any
    ) -> ServerThread:
        self.count += 1
        data_dir = self.tmp_path / f"data{self.count}"
        return self.stack.enter_context(
            ServerThread(_settings(sim, data_dir, database_url, **extra))
        )

    def admin(self, server: ServerThread) -> grpc.Channel:
        return self.stack.enter_context(channel_as(server.address, ADMIN_TOKEN))


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    with ExitStack() as stack:
        yield Servers(stack, tmp_path)


# 1. Rate limits -----------------------------------------------------------------------------

WINDOW = 4.0


def test_a_sync_larger_than_a_window_waits_for_the_reset_then_stores_everything_once(
    servers: Servers,
) -> None:
    read_limit = 30
    sim = servers.sim(
        _sim(
            athletes=1,
            activities=36,
            rate_limits_enabled=True,
            short_window=WINDOW,
            read_limits=(read_limit, 100000),
        )
    )
    server = servers.server(sim, strava_page_size=10)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)

    job = _start_sync(admin, athlete)
    seen_waiting: list[job_pb2.Job] = []

    def ended() -> bool:
        current = _get(admin, job.name)
        if current.state == STATE.JOB_STATE_WAITING:
            seen_waiting.append(current)
        return current.state in TERMINAL

    _wait_until(ended, 60, "the sync to end")
    events = _events(admin, job.name)
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED, events[-1]
    waits = [e for e in events if e.state == STATE.JOB_STATE_WAITING]
    # More calls than two windows allow: at least two waits, each until a window resets.
    assert len(waits) >= 2, [e.state for e in events]
    for wait in waits:  # until the spent window resets
        assert wait.HasField("resume_time")
        ahead = (wait.resume_time.ToNanoseconds() - wait.time.ToNanoseconds()) / 1e9
        assert -0.5 < ahead <= WINDOW + 0.5, ahead
    assert seen_waiting, "GetJob never showed the job WAITING"
    assert all(j.HasField("resume_time") for j in seen_waiting)
    assert not _get(admin, job.name).HasField("resume_time")  # only while waiting

    stored = _stored(server, athlete)
    assert stored == _strava_ids(sim, strava_id)  # all of them, each once
    result = _get(admin, job.name).result
    # Counted once too: a wait in the middle of a page resumes where it stopped.
    assert (result.created, result.updated, result.unchanged) == (len(stored), 0, 0)
    # The budget kept the job under the limit: Strava never had to refuse it.
    assert _status_429(sim) == []
    per_window: dict[int, int] = {}
    for request in sim.requests():
        if request["path"].startswith("/api/v3"):
            window = math.floor(request["time"] / WINDOW)
            per_window[window] = per_window.get(window, 0) + 1
    assert max(per_window.values()) <= read_limit, per_window


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    with postgres_database(template=postgres_template) as url:
        yield url


def test_two_servers_share_one_budget_through_redis(
    servers: Servers, postgres_url: str, shared_redis: SharedRedis
) -> None:
    """Four syncs at once on two servers (two worker threads each): a budget per server
    would let each spend what the other already has in flight."""
    read_limit, athletes = 20, 4
    sim = servers.sim(
        _sim(
            athletes=athletes,
            activities=8,
            rate_limits_enabled=True,
            short_window=WINDOW,
            read_limits=(read_limit, 100000),
        )
    )
    shared = {
        "redis_url": shared_redis.url,
        "redis_key_prefix": shared_redis.prefix,
        "inprocess_workers": True,
        "huey_workers": 2,
        "strava_page_size": 4,
    }
    first = servers.server(sim, postgres_url, **shared)
    servers.server(sim, postgres_url, **shared)
    admin = servers.admin(first)
    connected = [_connected(admin, sim, index) for index in range(athletes)]

    jobs = [_start_sync(admin, athlete).name for athlete, _ in connected]
    ended = [_ended(admin, name, timeout=90) for name in jobs]
    assert [j.state for j in ended] == [STATE.JOB_STATE_SUCCEEDED] * athletes, ended
    for athlete, strava_id in connected:
        assert _stored(first, athlete) == _strava_ids(sim, strava_id)
    api = [r for r in sim.requests() if r["path"].startswith("/api/v3")]
    assert len(api) > 2 * read_limit  # more than two windows allow
    # Strava never had to refuse a call: no 429 (one at most, should a request reserved
    # just before a window ends arrive just after it, into a window already spent).
    assert len(_status_429(sim)) <= 1, _status_429(sim)
    state = _rate_state(admin)
    assert not state.local_fallback
    assert state.strava.read_15_minutes.limit == read_limit


# 2. 5xx and the circuit ---------------------------------------------------------------------


def test_a_burst_of_server_errors_is_retried_and_the_sync_completes(servers: Servers) -> None:
    sim = servers.sim(_sim())
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)

    sim.reset_log()
    sim.fail_next(2, 503)
    job = _start_sync(admin, athlete)
    assert _ended(admin, job.name).state == STATE.JOB_STATE_SUCCEEDED
    statuses = [r["status"] for r in sim.requests()]
    assert statuses[:3] == [503, 503, 200], statuses  # the client's own retries
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)

    # More failures in a row than the client tries (strava_max_attempts=3): the task is
    # retried, and the job still completes without failing.
    sim.add_activity(strava_id, notify=False)
    sim.reset_log()
    sim.fail_next(4, 500)
    again = _start_sync(admin, athlete, full=True)
    events = _events(admin, again.name)
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED, events[-1]
    assert STATE.JOB_STATE_FAILED not in [e.state for e in events]
    assert [r["status"] for r in sim.requests()].count(500) == 4
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)
    state = _rate_state(admin)
    assert state.strava_circuit.state == admin_pb2.CircuitState.STATE_CLOSED
    dead = admin_pb2_grpc.AdminServiceStub(admin).ListDeadLetters(
        admin_pb2.ListDeadLettersRequest()
    )
    assert list(dead.dead_letters) == []


def test_an_outage_opens_the_circuit_the_job_waits_and_completes_after(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim())
    server = servers.server(sim, strava_circuit_threshold=2, strava_circuit_cooldown_seconds=2)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)
    assert _rate_state(admin).strava_circuit.state == admin_pb2.CircuitState.STATE_CLOSED

    sim.inject(Fault("error", None, status=500))  # until cleared
    job = _start_sync(admin, athlete)

    def open_and_waiting() -> bool:
        circuit = _rate_state(admin).strava_circuit
        current = _get(admin, job.name)
        return (
            circuit.state == admin_pb2.CircuitState.STATE_OPEN
            and current.state == STATE.JOB_STATE_WAITING
        )

    _wait_until(open_and_waiting, 30, "an open circuit and a waiting job")
    waiting = _get(admin, job.name)
    assert waiting.HasField("resume_time")
    circuit = _rate_state(admin).strava_circuit
    assert circuit.consecutive_failures >= 2
    assert circuit.HasField("open_until")

    sim.clear_faults()
    events = _events(admin, job.name)
    assert events[-1].state == STATE.JOB_STATE_SUCCEEDED, events[-1]
    assert any(e.state == STATE.JOB_STATE_WAITING and e.HasField("resume_time") for e in events)
    assert _rate_state(admin).strava_circuit.state == admin_pb2.CircuitState.STATE_CLOSED
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)


# 3. Cancel ----------------------------------------------------------------------------------


def test_cancelling_a_running_sync_stops_it_within_two_seconds_and_keeps_what_it_stored(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(athletes=1, activities=20))
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)
    sim.slow(0.2)
    job = _start_sync(admin, athlete)
    _wait_until(lambda: len(_stored(server, athlete)) >= 2, 60, "two stored activities")

    arrivals: list[tuple[float, job_pb2.JobEvent]] = []

    def watch() -> None:
        request = job_pb2.WatchJobRequest(name=job.name)
        for event in _jobs(admin).WatchJob(request, timeout=30):
            arrivals.append((time.monotonic(), event))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    asked = time.monotonic()
    flagged = _jobs(admin).CancelJob(job_pb2.CancelJobRequest(name=job.name))
    assert flagged.cancel_requested
    watcher.join(timeout=30)
    assert not watcher.is_alive()
    arrived, last = arrivals[-1]
    assert last.state == STATE.JOB_STATE_CANCELLED, last
    assert arrived - asked < 2.0, f"cancelled {arrived - asked:.2f} s after the request"

    kept = _stored(server, athlete)
    cancelled = _get(admin, job.name)
    assert cancelled.state == STATE.JOB_STATE_CANCELLED
    assert 2 <= len(kept) < len(sim.activities(strava_id))
    assert cancelled.result.created == len(kept)  # the result says what was kept
    calls = sim.count()
    deadline = time.monotonic() + 1.0  # nothing more happens once it ended
    while time.monotonic() < deadline:
        assert _stored(server, athlete) == kept
        assert sim.count() == calls
        time.sleep(0.1)


def test_cancelling_a_sync_stuck_on_a_hanging_strava_stops_at_the_next_timeout(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(athletes=1, activities=5))
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, _ = _connected(admin, sim)
    sim.hang(None, match="/athlete/activities")
    job = _start_sync(admin, athlete)
    running = STATE.JOB_STATE_RUNNING
    _wait_until(lambda: _get(admin, job.name).state == running, 30, "the sync running")
    time.sleep(0.3)  # into its first call, which hangs (the simulator logs it only once over)
    asked = time.monotonic()
    _jobs(admin).CancelJob(job_pb2.CancelJobRequest(name=job.name))
    assert _ended(admin, job.name).state == STATE.JOB_STATE_CANCELLED
    # The hung call ends at the read timeout; the job then stops instead of trying again.
    read_timeout = server.settings.strava_read_timeout_seconds
    elapsed = time.monotonic() - asked
    assert elapsed < read_timeout + 2.0, f"cancelled {elapsed:.1f} s after the request"
    sim.clear_faults()


# 4. Strava hanging --------------------------------------------------------------------------


def test_start_sync_and_connect_answer_at_once_while_strava_hangs(servers: Servers) -> None:
    sim = servers.sim(_sim(activities=3))
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, _ = _connected(admin, sim, 0)
    other = create_athlete(admin)
    sim.hang(None)  # every request, until cleared
    sync = sync_stub(admin)

    started = time.monotonic()
    job = _start_sync(admin, athlete)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    connecting = sync.ConnectStrava(
        sync_pb2.ConnectStravaRequest(
            name=connection_name(other), code=sim.authorize(sim.athlete_ids[1])
        )
    )
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert _connection(admin, other).state == athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTING
    assert _get(admin, job.name).state not in TERMINAL
    assert time.monotonic() - started < 1.0

    sim.clear_faults()
    assert _ended(admin, job.name).state == STATE.JOB_STATE_SUCCEEDED
    assert _ended(admin, connecting.name).state == STATE.JOB_STATE_SUCCEEDED
    assert _connection(admin, other).state == CONNECTED


# 5. Another athlete's token -----------------------------------------------------------------


def test_another_athletes_token_reaches_neither_the_jobs_nor_the_connection(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(activities=3))
    server = servers.server(sim)
    admin = servers.admin(server)
    mine, _ = _connected(admin, sim, 0)
    theirs = create_athlete(admin, "Other")
    sim.hang(None, match="/athlete/activities")  # keeps the sync running
    job = _start_sync(admin, mine)
    denied = grpc.StatusCode.PERMISSION_DENIED
    name = connection_name(mine)
    with channel_as(server.address, _athlete_token(admin, theirs)) as channel:
        jobs, sync = _jobs(channel), sync_stub(channel)
        _fails(lambda: jobs.GetJob(job_pb2.GetJobRequest(name=job.name)), denied)
        _fails(lambda: jobs.CancelJob(job_pb2.CancelJobRequest(name=job.name)), denied)
        _fails(lambda: list(jobs.WatchJob(job_pb2.WatchJobRequest(name=job.name))), denied)
        _fails(lambda: sync.StartSync(sync_pb2.StartSyncRequest(name=name)), denied)
        _fails(lambda: sync.StartSync(sync_pb2.StartSyncRequest(name=name, full=True)), denied)
        _fails(
            lambda: sync.GetStravaConnection(sync_pb2.GetStravaConnectionRequest(name=name)),
            denied,
        )
        _fails(lambda: sync.DisconnectStrava(sync_pb2.DisconnectStravaRequest(name=name)), denied)
        _fails(
            lambda: sync.ConnectStrava(sync_pb2.ConnectStravaRequest(name=name, code="abc")),
            denied,
        )
        # Their own connection is theirs to read.
        assert _connection(channel, theirs).state == NOT_CONNECTED
    with channel_as(server.address, _athlete_token(admin, mine)) as channel:
        assert _get(channel, job.name).name == job.name  # the owner's token does reach it
    current = _get(admin, job.name)
    assert not current.cancel_requested
    assert current.state not in TERMINAL
    assert _connection(admin, mine).state == CONNECTED
    sim.clear_faults()
    assert _ended(admin, job.name).state == STATE.JOB_STATE_SUCCEEDED


# 6. Bad codes, states and sync requests ------------------------------------------------------


def test_a_rejected_code_fails_the_connect_job_and_garbage_is_refused_at_once(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(activities=2))
    server = servers.server(sim)
    admin = servers.admin(server)
    sync = sync_stub(admin)
    athlete = create_athlete(admin)
    name = connection_name(athlete)

    def connect_job(code: str, **fields: Any) -> job_pb2.Job:
        job = sync.ConnectStrava(sync_pb2.ConnectStravaRequest(name=name, code=code, **fields))
        return _ended(admin, job.name)

    made_up = connect_job("abcdef0123456789")
    assert made_up.state == STATE.JOB_STATE_FAILED
    assert made_up.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert _job_reason(made_up) == "STRAVA_CODE_REJECTED"
    assert _connection(admin, athlete).state == NOT_CONNECTED

    code = sim.authorize(sim.athlete_ids[0])
    assert connect_job(code).state == STATE.JOB_STATE_SUCCEEDED
    reused = connect_job(code)
    assert reused.state == STATE.JOB_STATE_FAILED
    assert reused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert _job_reason(reused) == "STRAVA_CODE_REJECTED"
    assert _connection(admin, athlete).state == CONNECTED  # back to where it was

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    jobs_before = len(
        _jobs(admin).ListJobs(job_pb2.ListJobsRequest(parent=athlete, page_size=100)).jobs
    )
    for garbage in ("   ", "abc def", "a" * 5000, "é" * 10, ""):
        error = _fails(
            lambda g=garbage: sync.ConnectStrava(  # type: ignore[misc]
                sync_pb2.ConnectStravaRequest(name=name, code=g)
            ),
            invalid,
        )
        assert detail(error, error_details_pb2.BadRequest).field_violations[0].field == "code"

    # A state issued for another athlete, or never issued, is refused.
    other = create_athlete(admin, "Other")
    theirs = sync.GetStravaAuthorizationUrl(
        sync_pb2.GetStravaAuthorizationUrlRequest(name=connection_name(other))
    ).state
    for state in (theirs, "forged.state", theirs[:-2] + "xx"):
        _fails(
            lambda s=state: sync.ConnectStrava(  # type: ignore[misc]
                sync_pb2.ConnectStravaRequest(name=name, code="abc123", state=s)
            ),
            invalid,
        )
    jobs_after = _jobs(admin).ListJobs(job_pb2.ListJobsRequest(parent=athlete, page_size=100))
    assert len(jobs_after.jobs) == jobs_before  # nothing was enqueued for any of them

    # The whole address the browser was sent to works, with an empty state or a real one.
    strava_id = sim.athlete_ids[0]
    pasted = (
        "http://localhost/exchange_token?state=&code="
        f"{sim.authorize(strava_id)}&scope=read,activity:read_all"
    )
    assert connect_job(pasted).state == STATE.JOB_STATE_SUCCEEDED
    mine = sync.GetStravaAuthorizationUrl(sync_pb2.GetStravaAuthorizationUrlRequest(name=name))
    pasted = (
        f"http://localhost/exchange_token?state={mine.state}&code="
        f"{sim.authorize(strava_id)}&scope=read,activity:read_all"
    )
    assert connect_job(pasted).state == STATE.JOB_STATE_SUCCEEDED
    connection = _connection(admin, athlete)
    assert connection.state == CONNECTED
    assert "activity:read_all" in connection.granted_scopes


def test_start_sync_refuses_bad_requests_and_keeps_one_sync_per_athlete(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(activities=3))
    server = servers.server(sim)
    admin = servers.admin(server)
    lonely = create_athlete(admin, "Not connected")
    error = _fails(lambda: _start_sync(admin, lonely), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(error) == "STRAVA_NOT_CONNECTED"

    athlete, _ = _connected(admin, sim)
    after = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    error = _fails(
        lambda: _start_sync(admin, athlete, full=True, after=after),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "after" in {
        v.field for v in detail(error, error_details_pb2.BadRequest).field_violations
    }

    # Two incremental requests at once get one job.
    sim.hang(None, match="/athlete/activities")  # the sync stays active meanwhile
    barrier = threading.Barrier(4)

    def start(_: int) -> str:
        barrier.wait()
        return str(_start_sync(admin, athlete).name)

    with ThreadPoolExecutor(4) as pool:
        names = set(pool.map(start, range(4)))
    assert len(names) == 1, names
    (active,) = names
    error = _fails(
        lambda: _start_sync(admin, athlete, full=True), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "SYNC_ALREADY_ACTIVE"
    assert detail(error, error_details_pb2.ErrorInfo).metadata["job"] == active
    error = _fails(
        lambda: _start_sync(admin, athlete, after=after), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "SYNC_ALREADY_ACTIVE"
    assert _start_sync(admin, athlete).name == active  # an incremental one joins it
    listed = _jobs(admin).ListJobs(
        job_pb2.ListJobsRequest(parent=athlete, kinds=[job_pb2.JOB_KIND_STRAVA_SYNC])
    )
    assert [j.name for j in listed.jobs] == [active]

    sim.clear_faults()
    assert _ended(admin, active).state == STATE.JOB_STATE_SUCCEEDED
    sim.hang(None, match="/athlete/activities")

    # The same while a full sync is active: another full one is refused too (unless it is
    # a retry of the same request), an incremental one joins it.
    full = _start_sync(admin, athlete, full=True, request_id="full-1")
    assert full.name != active
    error = _fails(
        lambda: _start_sync(admin, athlete, full=True), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "SYNC_ALREADY_ACTIVE"
    assert detail(error, error_details_pb2.ErrorInfo).metadata["job"] == full.name
    assert _start_sync(admin, athlete, full=True, request_id="full-1").name == full.name
    assert _start_sync(admin, athlete).name == full.name
    sim.clear_faults()
    assert _ended(admin, full.name).state == STATE.JOB_STATE_SUCCEEDED


# 7. Tokens ----------------------------------------------------------------------------------


def test_expired_tokens_are_refreshed_and_revoked_access_fails_the_sync(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(activities=3))
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)

    sim.expire_tokens(strava_id)
    sim.reset_log()
    job = _synced(admin, athlete)
    assert job.result.created == len(sim.activities(strava_id))
    statuses = [(r["endpoint"], r["status"]) for r in sim.requests()]
    assert statuses[0][1] == 401  # the stored token was dead...
    assert ("oauth.token", 200) in statuses  # ...so it was refreshed
    assert _connection(admin, athlete).state == CONNECTED
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)

    sim.revoke(strava_id)
    revoked = _ended(admin, _start_sync(admin, athlete, full=True).name)
    assert revoked.state == STATE.JOB_STATE_FAILED
    assert revoked.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert _job_reason(revoked) == "STRAVA_ACCESS_REVOKED"
    assert _connection(admin, athlete).state == REVOKED
    error = _fails(lambda: _start_sync(admin, athlete), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(error) == "STRAVA_NOT_CONNECTED"


# 8. Disconnect ------------------------------------------------------------------------------


def test_disconnect_deauthorizes_and_deletes_every_strava_activity(servers: Servers) -> None:
    sim = servers.sim(_sim(activities=4))
    server = servers.server(sim)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim, 0)
    bystander, other_id = _connected(admin, sim, 1)
    _synced(admin, athlete)
    _synced(admin, bystander)
    assert len(_stored(server, athlete)) == len(sim.activities(strava_id)) > 0

    job = sync_stub(admin).DisconnectStrava(
        sync_pb2.DisconnectStravaRequest(name=connection_name(athlete))
    )
    ended = _ended(admin, job.name)
    assert ended.state == STATE.JOB_STATE_SUCCEEDED, ended
    assert len(sim.requests("oauth.deauthorize")) == 1
    assert _stored(server, athlete) == []
    assert _connection(admin, athlete).state == NOT_CONNECTED
    # Strava no longer accepts the tokens; the other athlete is untouched.
    assert not any(g.athlete_id == strava_id and not g.revoked for g in sim.auth.grants)
    assert _stored(server, bystander) == _strava_ids(sim, other_id)
    assert _connection(admin, bystander).state == CONNECTED
    error = _fails(
        lambda: sync_stub(admin).DisconnectStrava(
            sync_pb2.DisconnectStravaRequest(name=connection_name(athlete))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "STRAVA_NOT_CONNECTED"


# 9. Webhook verification --------------------------------------------------------------------


def test_the_webhook_check_echoes_the_challenge_only_for_the_verify_token(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(athletes=1, activities=1))
    server = servers.server(sim)
    with channel_as(server.address, None) as anonymous:
        sync = sync_stub(anonymous)
        body = sync.VerifyStravaWebhook(
            sync_pb2.VerifyStravaWebhookRequest(
                hub=sync_pb2.WebhookHub(
                    mode="subscribe", challenge="15f7d1a91c1f40f8", verify_token="verify-me"
                )
            )
        )
        assert body.content_type == "application/json"
        assert json.loads(body.data) == {"hub.challenge": "15f7d1a91c1f40f8"}
        for mode, token in (
            ("subscribe", "wrong"),
            ("subscribe", ""),
            ("unsubscribe", "verify-me"),
        ):
            _fails(
                lambda m=mode, t=token: sync.VerifyStravaWebhook(  # type: ignore[misc]
                    sync_pb2.VerifyStravaWebhookRequest(
                        hub=sync_pb2.WebhookHub(mode=m, challenge="x", verify_token=t)
                    )
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            )


# 10. Reconcile ------------------------------------------------------------------------------


def _reconcile(server: ServerThread, channel: grpc.Channel, athlete: str) -> job_pb2.Job:
    assert server.running is not None
    runtime = server.running.runtime
    job, created = runtime.job_store.create(athlete.split("/")[1], JobKind.STRAVA_RECONCILE, {})
    assert created
    enqueue_job(runtime.huey, job)
    return _ended(channel, f"{athlete}/jobs/{job.id}")


def test_reconcile_deletes_what_strava_deleted_but_not_a_vanished_history(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(athletes=1, activities=6))
    server = servers.server(sim, strava_page_size=4)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)
    _synced(admin, athlete)
    gone = sim.activities(strava_id)[2]
    sim.delete_activity(gone.id, notify=False)
    assert str(gone.id) in _stored(server, athlete)

    job = _reconcile(server, admin, athlete)
    assert job.state == STATE.JOB_STATE_SUCCEEDED, job
    assert job.result.deleted == 1
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)

    sim.vanish(strava_id)
    before = _stored(server, athlete)
    refused = _reconcile(server, admin, athlete)
    assert refused.state == STATE.JOB_STATE_FAILED
    assert refused.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert _job_reason(refused) == "STRAVA_HISTORY_MISSING"
    assert _stored(server, athlete) == before != []


# 11. Dead letters ---------------------------------------------------------------------------


def test_a_task_failing_for_good_is_dead_lettered_and_retried_from_admin(
    servers: Servers,
) -> None:
    sim = servers.sim(_sim(athletes=1, activities=3))
    # A circuit that never opens, so the failures use the retries up instead of waiting.
    server = servers.server(sim, strava_circuit_threshold=1000)
    admin = servers.admin(server)
    athlete, strava_id = _connected(admin, sim)
    dead_letters = admin_pb2_grpc.AdminServiceStub(admin)

    sim.inject(Fault("error", None, status=500))
    job = _start_sync(admin, athlete)
    failed = _ended(admin, job.name, timeout=90)
    assert failed.state == STATE.JOB_STATE_FAILED, failed
    # run_job's retries (3) plus the first attempt, each making strava_max_attempts (3) calls.
    assert [r["status"] for r in sim.requests()].count(500) == 4 * 3
    letters = [
        d
        for d in dead_letters.ListDeadLetters(admin_pb2.ListDeadLettersRequest()).dead_letters
        if d.job == job.name
    ]
    assert len(letters) == 1, letters
    assert letters[0].attempts == 4
    assert _stored(server, athlete) == []

    sim.clear_faults()
    dead_letters.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name=letters[0].name))
    _wait_until(lambda: _get(admin, job.name).state in TERMINAL, 30, "the retried job to end")
    assert _get(admin, job.name).state == STATE.JOB_STATE_SUCCEEDED
    assert _stored(server, athlete) == _strava_ids(sim, strava_id)
    remaining = dead_letters.ListDeadLetters(admin_pb2.ListDeadLettersRequest()).dead_letters
    assert [d for d in remaining if d.job == job.name] == []
