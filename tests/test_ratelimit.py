"""Rate limits: one combined limit across server processes, local fallback without Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
)

from core.settings import SettingsError, load_settings
from server.clientaddress import TrustedProxies
from server.ratelimit import Limit, RateLimiter
from tests.netfaults import private_redis
from tests.support import (
    ADMIN_TOKEN,
    ROOT,
    LogCapture,
    ServerThread,
    SharedRedis,
    channel_as,
    detail,
    make_settings,
    postgres_database,
    reason,
    server_env,
    wait_for_port,
)

GET = athlete_pb2.GetAthleteRequest(name="athletes/nobody")


def _outcome(
    stub: athlete_pb2_grpc.AthleteServiceStub, request: athlete_pb2.GetAthleteRequest = GET
) -> grpc.StatusCode:
    try:
        stub.GetAthlete(request)
    except grpc.RpcError as error:
        return cast(grpc.Call, error).code()
    return grpc.StatusCode.OK


def _limits(burst: int) -> dict[str, str]:
    return {
        "STRIDE_RATE_LIMIT_ENABLED": "true",
        "STRIDE_RATE_LIMIT_PRINCIPAL_BURST": str(burst),
        "STRIDE_RATE_LIMIT_PRINCIPAL_PER_SECOND": "0.001",
        "STRIDE_RATE_LIMIT_IP_BURST": "10000",
    }


@pytest.fixture
def two_servers(
    postgres_template: str, shared_redis: SharedRedis, tmp_path: Path
) -> Iterator[list[str]]:
    """Two server processes on one PostgreSQL database and one Redis."""
    with postgres_database(template=postgres_template) as url:
        processes = []
        try:
            for i in range(2):
                env = server_env(
                    tmp_path / f"p{i}",
                    STRIDE_DATABASE_URL=url,
                    STRIDE_REDIS_URL=shared_redis.url,
                    STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
                    STRIDE_ADMIN_TOKEN=ADMIN_TOKEN,
                    **_limits(burst=10),
                )
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "server"],
                        cwd=ROOT,
                        env=env,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            yield [f"127.0.0.1:{wait_for_port(p)}" for p in processes]
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)


def test_two_processes_share_one_limit_per_principal(two_servers: list[str]) -> None:
    first, second = two_servers
    with channel_as(first, ADMIN_TOKEN) as a, channel_as(second, ADMIN_TOKEN) as b:
        stubs = [athlete_pb2_grpc.AthleteServiceStub(a), athlete_pb2_grpc.AthleteServiceStub(b)]
        outcomes = [_outcome(stubs[i % 2]) for i in range(30)]
    allowed = [code for code in outcomes if code != grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert allowed == [grpc.StatusCode.NOT_FOUND] * 10, outcomes


def test_rejection_carries_retry_info_and_retry_after(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_principal_burst=2,
        rate_limit_principal_per_second=0.1,
    )  # fmt: skip
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        assert [_outcome(stub), _outcome(stub)] == [grpc.StatusCode.NOT_FOUND] * 2
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetAthlete(GET)
    error = caught.value
    assert cast(grpc.Call, error).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(error) == "RATE_LIMITED"
    retry = detail(error, error_details_pb2.RetryInfo).retry_delay
    assert 9 <= retry.seconds + retry.nanos / 1e9 <= 10  # one token at 0.1/s
    trailers = dict(cast(Any, error).trailing_metadata())
    assert trailers["retry-after"] == "10"


def test_method_costs_apply(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_principal_burst=10,
        rate_limit_principal_per_second=0.001,
    )  # fmt: skip
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        activities = activity_pb2_grpc.ActivityServiceStub(channel)
        header = activity_pb2.UploadHeader(parent="athletes/nobody", file_name="a.gpx")
        with pytest.raises(grpc.RpcError) as caught:
            activities.UploadActivityFile(
                iter([activity_pb2.UploadActivityFileRequest(header=header)])
            )
        # An upload costs 20 tokens, more than the burst of 10; a read still fits.
        assert cast(grpc.Call, caught.value).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _outcome(athlete_pb2_grpc.AthleteServiceStub(channel)) == grpc.StatusCode.NOT_FOUND


def _wait_for(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.mark.usefixtures("redis_server_binary")
def test_redis_loss_falls_back_to_local_limits_and_reports_degraded(tmp_path: Path) -> None:
    with ExitStack() as stack, private_redis() as private:
        settings = make_settings(
            tmp_path, None, redis_url=private.url, rate_limit_enabled=True,
            rate_limit_principal_burst=5, rate_limit_principal_per_second=0.001,
        )  # fmt: skip
        with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as ch:
            # The athlete's calls are limited; the operator's bucket is separate.
            as_admin = athlete_pb2_grpc.AthleteServiceStub(ch)
            ada = as_admin.CreateAthlete(
                athlete_pb2.CreateAthleteRequest(
                    athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="UTC")
                )
            ).name
            token = as_admin.CreateAccessToken(
                athlete_pb2.CreateAccessTokenRequest(
                    parent=ada, access_token=athlete_pb2.AccessToken()
                )
            ).token
            own = athlete_pb2.GetAthleteRequest(name=ada)
            health = cast(Any, health_pb2_grpc.HealthStub(ch))
            admin = admin_pb2_grpc.AdminServiceStub(ch)
            athlete_channel = stack.enter_context(channel_as(server.address, token))
            stub = athlete_pb2_grpc.AthleteServiceStub(athlete_channel)

            def status(service: str) -> int:
                request = health_pb2.HealthCheckRequest(service=service)
                return int(health.Check(request).status)

            assert [_outcome(stub, own) for _ in range(2)] == [grpc.StatusCode.OK] * 2
            assert status("dependency.redis") == health_pb2.HealthCheckResponse.SERVING
            private.stop()

            # Calls keep working under the local limiter, which enforces its own bucket.
            outcomes = [_outcome(stub, own) for _ in range(8)]
            assert outcomes[:5] == [grpc.StatusCode.OK] * 5
            assert set(outcomes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}

            _wait_for(lambda: status("dependency.redis") == 2, seconds=5)  # NOT_SERVING
            assert status("") == health_pb2.HealthCheckResponse.SERVING
            assert status("readiness") == health_pb2.HealthCheckResponse.SERVING
            report = admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest())
            assert report.overall == "DEGRADED"
            checks = {c.dependency: c for c in report.checks}
            assert not checks["redis"].healthy
            assert checks["redis"].error
            assert checks["database"].healthy

            private.start()
            _wait_for(lambda: status("dependency.redis") == 1, seconds=5)  # SERVING
            report = admin.GetDependencyHealth(admin_pb2.GetDependencyHealthRequest())
            assert report.overall == "SERVING"


async def test_leases_never_let_processes_exceed_the_shared_bucket(
    shared_redis: SharedRedis,
) -> None:
    """Two limiters (as two processes) lease tokens from one Redis bucket of 100."""
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        limiters = [RateLimiter(client, shared_redis.prefix) for _ in range(2)]
        limit = [Limit("principal:athletes/lease-test", rate=0.001, burst=100)]
        allowed = 0
        for i in range(200):
            decision = await limiters[i % 2].take(limit, 1.0)
            allowed += decision.allowed
        # Never above the bucket; at most one lease (5 tokens) stranded per process.
        assert 90 <= allowed <= 100
        key = f"{shared_redis.prefix}rl:principal:athletes/lease-test"
        stored = await client.hget(key, "tokens")
        assert stored is not None
        assert float(stored) < 1
    finally:
        await client.aclose()


def _flood(address: str, token: str, request: athlete_pb2.GetAthleteRequest) -> list[str]:
    with channel_as(address, token) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        return [_outcome(stub, request).name for _ in range(20)]


def test_invalid_tokens_are_limited_by_address_before_any_lookup(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_ip_burst=5,
        rate_limit_ip_per_second=0.001,
    )  # fmt: skip
    with ServerThread(settings) as server:
        before = _auth_failures("INVALID_TOKEN")
        outcomes = _flood(server.address, "stride_at_not-a-token", GET)
        assert outcomes == ["UNAUTHENTICATED"] * 5 + ["RESOURCE_EXHAUSTED"] * 15
        # Only the first five reached the token lookup.
        assert _auth_failures("INVALID_TOKEN") == before + 5


def test_calls_on_other_athletes_spend_the_callers_tokens(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_principal_burst=5,
        rate_limit_principal_per_second=0.001,
    )  # fmt: skip
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as admin:
        athletes = athlete_pb2_grpc.AthleteServiceStub(admin)
        me = athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Me", time_zone="UTC")
            )
        )
        token = athletes.CreateAccessToken(
            athlete_pb2.CreateAccessTokenRequest(parent=me.name)
        ).token
        someone_else = athlete_pb2.GetAthleteRequest(name="athletes/someone-else")
        outcomes = _flood(server.address, token, someone_else)
        assert outcomes == ["PERMISSION_DENIED"] * 5 + ["RESOURCE_EXHAUSTED"] * 15


def _auth_failures(reason: str) -> float:
    value = REGISTRY.get_sample_value("stride_auth_failures_total", {"reason": reason})
    return value or 0.0


def _flood_from(address: str, forwarded_for: list[str]) -> list[str]:
    """One call with an invalid token per x-forwarded-for value (limited by address)."""
    outcomes = []
    for value in forwarded_for:
        extra = {"x-forwarded-for": value}
        with channel_as(address, "stride_at_not-a-token", **extra) as channel:
            outcomes.append(_outcome(athlete_pb2_grpc.AthleteServiceStub(channel)).name)
    return outcomes


def test_a_forwarded_for_from_an_untrusted_peer_changes_nothing(
    tmp_path: Path, logs: LogCapture
) -> None:
    """By default no proxy is trusted: a spoofed header per call still spends the peer's
    bucket, and the log names the peer."""
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_ip_burst=5,
        rate_limit_ip_per_second=0.001,
    )  # fmt: skip
    with ServerThread(settings) as server:
        spoofs = [f"203.0.113.{n}" for n in range(10)]
        assert (
            _flood_from(server.address, spoofs)
            == ["UNAUTHENTICATED"] * 5 + ["RESOURCE_EXHAUSTED"] * 5
        )
    assert {line["client"] for line in logs.events("rpc")} == {"127.0.0.1"}


def test_a_trusted_proxy_forwards_the_client_address(tmp_path: Path, logs: LogCapture) -> None:
    """From a trusted proxy the last x-forwarded-for address (the one the proxy appended) is
    the client: each client has its own bucket; earlier entries, which the client sent, do
    not count; a proxy outside the list is not believed."""
    settings = make_settings(
        tmp_path, None, rate_limit_enabled=True, rate_limit_ip_burst=5,
        rate_limit_ip_per_second=0.001, trusted_proxies=["10.0.0.0/8", "127.0.0.1"],
    )  # fmt: skip
    with ServerThread(settings) as server:
        clients = [f"198.51.100.{n}" for n in range(10)]
        assert _flood_from(server.address, clients) == ["UNAUTHENTICATED"] * 10
        # One client, whatever it prepends itself: one bucket.
        spoofed = [f"203.0.113.{n}, 192.0.2.77" for n in range(7)]
        assert (
            _flood_from(server.address, spoofed)
            == ["UNAUTHENTICATED"] * 5 + ["RESOURCE_EXHAUSTED"] * 2
        )
        # Not an address: the peer is the client.
        assert _flood_from(server.address, ["not-an-ip"]) == ["UNAUTHENTICATED"]
    logged = [line["client"] for line in logs.events("rpc")]
    assert logged == [*clients, *["192.0.2.77"] * 7, "127.0.0.1"]


def test_trusted_proxies_are_ip_addresses_or_networks() -> None:
    with pytest.raises(SettingsError, match="STRIDE_TRUSTED_PROXIES"):
        load_settings(trusted_proxies=["proxy.example"], _env_file=None)
    proxies = TrustedProxies(
        load_settings(trusted_proxies=["10.0.0.0/8", "::1"], _env_file=None).trusted_proxies
    )
    assert proxies.client_ip("ipv4:10.1.2.3:5000", "1.1.1.1, 2.2.2.2") == "2.2.2.2"
    assert proxies.client_ip("ipv6:[::1]:5000", "2001:db8::5") == "2001:db8::5"
    assert proxies.client_ip("ipv6:[::ffff:10.0.0.9]:5000", "2.2.2.2") == "2.2.2.2"
    assert proxies.client_ip("ipv4:11.0.0.1:5000", "2.2.2.2") == "11.0.0.1"
    assert proxies.client_ip("ipv4:10.0.0.1:5000", None) == "10.0.0.1"
