"""Dependency-aware health: losing PostgreSQL turns the server NOT_SERVING, and back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stride.v1 import admin_pb2, admin_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from tests.netfaults import TcpProxy
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings, postgres_database

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTERVAL = 0.5


def _eventually(predicate: Callable[[], bool], within: float) -> float:
    """Seconds until `predicate` held; fails after `within`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not reached within {within}s")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def proxied(postgres_template: str, tmp_path: Path) -> Iterator[tuple[ServerThread, TcpProxy]]:
    """A server whose PostgreSQL connection runs through a proxy the test can cut."""
    with postgres_database(template=postgres_template) as url:
        proxy = TcpProxy(target_port=5432)
        proxy.restore()
        proxied_url = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        settings = make_settings(
            tmp_path, proxied_url, health_check_interval_seconds=INTERVAL, db_pool_timeout_seconds=2
        )
        try:
            with ServerThread(settings) as server:
                yield server, proxy
        finally:
            proxy.cut()


def test_database_loss_turns_health_not_serving_and_back(
    proxied: tuple[ServerThread, TcpProxy],
) -> None:
    server, proxy = proxied
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        health = cast(Any, health_pb2_grpc.HealthStub(channel))
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        athletes = athlete_pb2_grpc.AthleteServiceStub(channel)

        def status(service: str = "") -> int:
            return int(health.Check(health_pb2.HealthCheckRequest(service=service)).status)

        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == SERVING
        assert status("stride.v1.AthleteService") == SERVING

        proxy.cut()
        took = _eventually(lambda: status() == NOT_SERVING, within=INTERVAL * 4 + 2)
        assert took <= INTERVAL * 4 + 2
        assert next(watch).status == NOT_SERVING
        assert status("readiness") == NOT_SERVING
        assert status("stride.v1.ActivityService") == NOT_SERVING
        assert status("liveness") == SERVING
        report = admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest())
        assert report.overall == "NOT_SERVING"
        database = next(c for c in report.checks if c.dependency == "database")
        assert not database.healthy
        assert database.critical
        assert database.error
        assert database.HasField("last_check_time")
        # Calls that need the database fail as retryable UNAVAILABLE, never INTERNAL.
        with pytest.raises(grpc.RpcError) as caught:
            athletes.ListAthletes(athlete_pb2.ListAthletesRequest())
        assert cast(grpc.Call, caught.value).code() == grpc.StatusCode.UNAVAILABLE

        proxy.restore()
        _eventually(lambda: status() == SERVING, within=INTERVAL * 4 + 2)
        assert next(watch).status == SERVING
        assert status("readiness") == SERVING
        assert athletes.ListAthletes(athlete_pb2.ListAthletesRequest()).athletes == []
        watch.cancel()
