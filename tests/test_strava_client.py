"""The Strava client against the simulator over real HTTP: OAuth, reads, retries, the shared
budget, the circuit breaker, and token encryption."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from core.settings import SettingsError, load_settings
from tasks.strava import (
    Budget,
    BudgetExhausted,
    CircuitBreaker,
    CircuitOpen,
    RateLimited,
    StravaClient,
    StravaError,
    TokenCipher,
    TokenDecryptionError,
    Unauthorized,
)
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import SharedRedis

SECRET = "sim-client-secret"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Iterator[StravaSimulator]:
    # Budget assertions count calls within one 15-minute window: do not start a test in the
    # last seconds of one (at most a 15 s wait, in about one run of sixty).
    left = 900 - time.time() % 900
    if left < 15:
        time.sleep(left + 0.5)
    config = SimConfig(seed=3, athletes=2, activities=12, stream_step=60, refresh_reuse_window=0)
    with StravaSimulator(config) as running:
        yield running


def make_client(sim: StravaSimulator, **options: Any) -> StravaClient:
    sleeps: list[float] = []
    options.setdefault("sleep", sleeps.append)
    options.setdefault("read_timeout", 2.0)
    return StravaClient(
        client_id=str(sim.config.client_id),
        client_secret=SECRET,
        api_url=sim.api_url,
        oauth_url=f"{sim.base_url}/oauth",
        **options,
    )


def token(sim: StravaSimulator, athlete: int = 0) -> str:
    return str(sim.tokens(sim.athlete_ids[athlete])["access_token"])


def test_pasted_code_refresh_and_reads_round_trip(sim: StravaSimulator) -> None:
    athlete_id = sim.athlete_ids[0]
    with make_client(sim) as client:
        tokens = client.exchange_code(sim.authorize(athlete_id))
        assert tokens.athlete_id == athlete_id
        assert tokens.raw["token_type"] == "Bearer"
        sim.expire_tokens(athlete_id)
        refreshed = client.refresh(tokens.refresh_token)
        assert refreshed.refresh_token != tokens.refresh_token  # rotated: keep the newest
        with pytest.raises(StravaError):  # the old refresh token died with the rotation
            client.refresh(tokens.refresh_token)
        access = refreshed.access_token
        assert client.get_athlete(access).id == athlete_id
        listed = client.list_activities(access, per_page=5)
        assert len(listed) == 5
        assert all("sport_type" in a.raw for a in listed)
        everything = [
            a for page in (1, 2, 3) for a in client.list_activities(access, page=page, per_page=5)
        ]
        assert len(everything) == len(sim.activities(athlete_id))
        detail = client.get_activity(access, listed[0].id)
        assert detail.id == listed[0].id
        assert "laps" in detail.raw
        recorded = next(a for a in everything if not a.raw["manual"])
        streams = client.get_streams(access, recorded.id, keys=["time", "heartrate"])
        assert streams.data("time")
        assert "time" in streams.by_type
        manual = [a for a in sim.activities(athlete_id) if a.manual]
        if manual:
            assert client.get_streams(access, manual[0].id).by_type == {}
        client.deauthorize(access)
        with pytest.raises(Unauthorized):
            client.get_athlete(access)


def test_5xx_burst_is_retried_with_jittered_backoff(sim: StravaSimulator) -> None:
    sleeps: list[float] = []
    with make_client(sim, sleep=sleeps.append, backoff_base=1.0) as client:
        access = token(sim)
        sim.fail_next(count=2, status=503)
        assert client.get_athlete(access).id == sim.athlete_ids[0]
    assert sim.count("athlete") == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0
    assert 0 <= sleeps[1] <= 2.0


def test_timeout_is_retried(sim: StravaSimulator) -> None:
    with make_client(sim, read_timeout=0.3) as client:
        access = token(sim)
        sim.hang(count=1, match="/athlete")
        assert client.get_athlete(access).id == sim.athlete_ids[0]
    assert sim.count("athlete") == 2


def test_retries_are_bounded(sim: StravaSimulator) -> None:
    with make_client(sim, max_attempts=3) as client:
        access = token(sim)
        sim.fail_next(count=10, status=500)
        with pytest.raises(StravaError, match="failed 3 times"):
            client.get_athlete(access)
    assert sim.count("athlete") == 3


def test_malformed_json_is_a_clear_error(sim: StravaSimulator) -> None:
    with make_client(sim, malformed_attempts=2) as client:
        access = token(sim)
        sim.malformed(count=5)
        with pytest.raises(StravaError, match="malformed JSON"):
            client.get_athlete(access)
        assert sim.count("athlete") == 2
        sim.clear_faults()
        sim.malformed(count=1)
        assert client.get_athlete(access).id == sim.athlete_ids[0]  # once: retried


def test_two_workers_share_one_redis_budget(
    sim: StravaSimulator, shared_redis: SharedRedis
) -> None:
    sim.limiter.configure(overall=(9, 1000), read=(9, 1000))
    connection = redis.Redis.from_url(shared_redis.url)
    access = token(sim)
    outcomes: list[str] = []
    exhausted: list[BudgetExhausted] = []
    lock = threading.Lock()

    def worker() -> None:
        budget = Budget(
            str(sim.config.client_id), redis_client=connection, key_prefix=shared_redis.prefix
        )
        with make_client(sim, budget=budget) as client:
            for _ in range(10):
                try:
                    client.get_athlete(access)
                except BudgetExhausted as error:
                    with lock:
                        exhausted.append(error)
                    return
                with lock:
                    outcomes.append("ok")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    statuses = [entry["status"] for entry in sim.requests("athlete")]
    assert 429 not in statuses
    assert len(outcomes) == len(statuses) == 9
    assert len(exhausted) == 2
    window_end = (sim.clock() // 900 + 1) * 900
    assert all(error.resume_at == window_end for error in exhausted)
    snapshot = Budget(
        str(sim.config.client_id), redis_client=connection, key_prefix=shared_redis.prefix
    ).snapshot()
    assert snapshot.shared
    assert snapshot.exhausted_until == window_end
    assert snapshot.counters[0].limit == 9
    assert snapshot.counters[0].usage == 9
    assert snapshot.reported_at is not None
    keys = connection.keys(f"{shared_redis.prefix}strava:budget:*")
    assert keys
    assert all(0 < connection.ttl(k) <= 86400 for k in keys if b"limits" not in k)
    connection.close()


def test_local_budget_without_redis(sim: StravaSimulator) -> None:
    sim.limiter.configure(overall=(200, 2000), read=(4, 1000))
    with make_client(sim, budget=Budget(str(sim.config.client_id))) as client:
        access = token(sim)
        for _ in range(4):
            client.get_athlete(access)
        with pytest.raises(BudgetExhausted) as caught:
            client.get_athlete(access)
    assert caught.value.resume_at > sim.clock()
    assert sim.count("athlete") == 4
    snapshot = client.budget.snapshot()
    assert not snapshot.shared
    assert snapshot.counters[2].usage == 4


def test_429_is_rate_limited_with_reset_time(sim: StravaSimulator) -> None:
    sim.limiter.configure(overall=(1, 1000), read=(1, 1000))
    with make_client(sim) as client:
        access = token(sim)
        client.get_athlete(access)
        client.budget = Budget("unaware")  # a budget that does not know the usage
        with pytest.raises(RateLimited) as caught:
            client.get_athlete(access)
    assert caught.value.resume_at == (sim.clock() // 900 + 1) * 900


@pytest.mark.parametrize("shared", [True, False])
def test_circuit_opens_refuses_half_opens_and_closes(
    sim: StravaSimulator, shared_redis: SharedRedis, shared: bool
) -> None:
    clock = FakeClock()
    connection = redis.Redis.from_url(shared_redis.url) if shared else None
    circuit = CircuitBreaker(
        "app",
        redis_client=connection,
        key_prefix=shared_redis.prefix,
        threshold=3,
        cooldown=30,
        clock=clock,
    )
    with make_client(sim, circuit=circuit, max_attempts=3) as client:
        access = token(sim)
        sim.fail_next(count=3, status=502)
        with pytest.raises(StravaError):
            client.get_athlete(access)
        assert circuit.snapshot().state == "open"
        calls = sim.count()
        with pytest.raises(CircuitOpen) as caught:
            client.get_athlete(access)
        assert caught.value.resume_at == clock.now + 30
        assert sim.count() == calls  # refused without calling Strava
        clock.now += 30
        circuit.before_call()  # this caller takes the one half-open trial...
        assert circuit.snapshot().state == "half_open"
        with pytest.raises(CircuitOpen):  # ...and everyone else waits for it
            client.get_athlete(access)
        assert sim.count() == calls
        circuit.failure()  # the trial failed: open for another cool-down
        assert circuit.snapshot().state == "open"
        clock.now += 30
        assert client.get_athlete(access).id == sim.athlete_ids[0]  # trial succeeds
        snapshot = circuit.snapshot()
        assert snapshot.state == "closed"
        assert snapshot.failures == 0
        assert snapshot.shared is shared
    if connection is not None:
        connection.close()


def test_token_encryption_round_trip_tamper_and_rotation() -> None:
    cipher = TokenCipher("correct horse battery staple")
    sealed = cipher.encrypt("access-token-123")
    assert b"access-token-123" not in sealed
    assert cipher.decrypt(sealed) == "access-token-123"
    assert cipher.encrypt("x") != cipher.encrypt("x")  # random IV
    tampered = bytearray(sealed)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(TokenDecryptionError):
        cipher.decrypt(bytes(tampered))
    with pytest.raises(TokenDecryptionError):
        TokenCipher("another key").decrypt(sealed)
    rotated = TokenCipher("new key, correct horse battery staple")
    assert rotated.decrypt(sealed) == "access-token-123"  # old key still decrypts
    assert TokenCipher("new key").decrypt(rotated.rotate(sealed)) == "access-token-123"


def test_strava_settings() -> None:
    assert not load_settings().strava_enabled
    with pytest.raises(SettingsError, match="STRAVA_CLIENT_SECRET"):
        load_settings(strava_client_id="1")
    with pytest.raises(SettingsError, match="TOKEN_ENCRYPTION_KEY"):
        load_settings(strava_client_id="1", strava_client_secret="s")
    settings = load_settings(
        strava_client_id="1", strava_client_secret="s", token_encryption_key="k"
    )
    assert settings.strava_enabled
    with StravaClient.from_settings(settings) as client:
        assert client.api_url == "https://www.strava.com/api/v3"
