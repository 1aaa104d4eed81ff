"""AdminService.GetRateLimitState and the `strava` health check, through the real server:
the Strava budget and circuit breaker as every worker sees them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stride.v1 import admin_pb2, admin_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from tasks.strava import Budget, StravaClient
from tests.support import ADMIN_TOKEN, ServerThread, SharedRedis, channel_as, make_settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STRAVA = {
    "strava_client_id": "123",
    "strava_client_secret": "s",
    "token_encryption_key": "k",
    # Nothing listens there: no test may reach Strava.
    "strava_api_url": "http://127.0.0.1:9/api/v3",
}
HEADERS = {
    "X-RateLimit-Limit": "100,1000",
    "X-RateLimit-Usage": "100,200",
    "X-ReadRateLimit-Limit": "50,500",
    "X-ReadRateLimit-Usage": "10,20",
}


def _eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s")
        time.sleep(0.05)


def _strava(server: ServerThread) -> StravaClient:
    assert server.running is not None
    client = server.running.runtime.strava
    assert client is not None
    return client


def _state(server: ServerThread) -> admin_pb2.RateLimitState:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        return admin_pb2_grpc.AdminServiceStub(channel).GetRateLimitState(
            admin_pb2.GetRateLimitStateRequest(), timeout=10
        )


@pytest.fixture
def strava_server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", None, **STRAVA)) as running:
        yield running


def test_without_strava_the_budget_and_circuit_are_unset(server: ServerThread) -> None:
    state = _state(server)
    assert not state.HasField("strava")
    assert not state.HasField("strava_circuit")
    assert not state.local_fallback  # no Redis configured: local state is no fallback
    assert list(state.buckets) == []
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        checks = admin_pb2_grpc.AdminServiceStub(channel).GetDependencyHealth(
            admin_pb2.GetDependencyHealthRequest()
        )
    assert "strava" not in {check.dependency for check in checks.checks}


def test_recorded_usage_is_reported_with_the_resume_time(strava_server: ServerThread) -> None:
    fresh = _state(strava_server)
    assert fresh.strava_circuit.state == admin_pb2.CircuitState.STATE_CLOSED
    assert fresh.strava.overall_15_minutes.limit == 200  # Strava's defaults until told
    assert not fresh.strava.HasField("update_time")
    assert not fresh.strava.HasField("resume_time")

    before = time.time()
    _strava(strava_server).budget.record(HEADERS)
    state = _state(strava_server).strava
    windows = {
        "overall_15_minutes": (100, 100),
        "overall_daily": (200, 1000),
        "read_15_minutes": (10, 50),
        "read_daily": (20, 500),
    }
    for name, (usage, limit) in windows.items():
        window = getattr(state, name)
        assert (window.usage, window.limit) == (usage, limit), name
        assert window.reset_time.seconds > before, name
    assert state.update_time.seconds >= int(before)
    # The 15-minute overall window is spent: calls resume when it resets.
    assert state.HasField("resume_time")
    assert state.resume_time == state.overall_15_minutes.reset_time
    assert state.resume_time.seconds <= before + 900


def test_open_circuit_and_spent_budget_degrade_health_but_never_readiness(
    strava_server: ServerThread,
) -> None:
    client = _strava(strava_server)
    for _ in range(client.circuit.threshold):
        client.circuit.failure()
    circuit = _state(strava_server).strava_circuit
    assert circuit.state == admin_pb2.CircuitState.STATE_OPEN
    assert circuit.consecutive_failures == client.circuit.threshold
    assert circuit.open_until.seconds >= int(time.time())

    client.budget.record(HEADERS)
    with channel_as(strava_server.address, ADMIN_TOKEN) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        health = cast(Any, health_pb2_grpc.HealthStub(channel))

        def strava_check() -> admin_pb2.DependencyCheck | None:
            checks = admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest()).checks
            return next((c for c in checks if c.dependency == "strava"), None)

        def spent_and_open() -> bool:
            check = strava_check()
            return check is not None and "budget exhausted" in check.error

        _eventually(spent_and_open)
        check = strava_check()
        assert check is not None
        assert not check.healthy
        assert not check.critical
        assert "circuit open until " in check.error
        assert "budget exhausted (overall_short 100/100) until " in check.error
        overall = admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest()).overall
        assert overall == "DEGRADED"
        for service in ("", "readiness", "stride.v1.SyncService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == SERVING, service
        dependency = health.Check(health_pb2.HealthCheckRequest(service="dependency.strava"))
        assert dependency.status == NOT_SERVING

        # A successful call closes the circuit; the budget stays spent until its window resets.
        client.circuit.success()

        def only_budget() -> bool:
            found = strava_check()
            return found is not None and "circuit" not in found.error and not found.healthy

        _eventually(only_budget)


def test_the_budget_is_shared_through_redis(tmp_path: Path, shared_redis: SharedRedis) -> None:
    settings = make_settings(
        tmp_path / "data",
        None,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
        **STRAVA,
    )
    other_client = redis.Redis.from_url(shared_redis.url)
    try:
        with ServerThread(settings) as server:
            # Another process's view: its own Budget on the same Redis and prefix.
            other = Budget("123", redis_client=other_client, key_prefix=shared_redis.prefix)
            other.record(HEADERS)
            state = _state(server)
            assert not state.local_fallback
            assert state.strava.overall_15_minutes.usage == 100
            assert state.strava.read_daily.usage == 20
            assert state.HasField("strava_circuit")

            # And the other way round: what the server records, the other process sees.
            _strava(server).budget.record({**HEADERS, "X-RateLimit-Usage": "100,300"})
            seen = other.snapshot()
            assert seen.shared
            assert {c.name: c.usage for c in seen.counters}["overall_long"] == 300
    finally:
        other_client.close()


def test_an_athlete_may_not_read_the_rate_limit_state(server: ServerThread) -> None:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
        ada = athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="UTC")
            )
        ).name
        token = athletes.CreateAccessToken(
            athlete_pb2.CreateAccessTokenRequest(parent=ada, access_token=athlete_pb2.AccessToken())
        ).token
    with channel_as(server.address, token) as channel, pytest.raises(grpc.RpcError) as caught:
        admin_pb2_grpc.AdminServiceStub(channel).GetRateLimitState(
            admin_pb2.GetRateLimitStateRequest()
        )
    assert cast(grpc.Call, caught.value).code() == grpc.StatusCode.PERMISSION_DENIED
