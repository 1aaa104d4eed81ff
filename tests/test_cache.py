"""The read cache: answers from memory and Redis, never stale after a write, in any process;
Redis lost under load means reading from the database, never an error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from prometheus_client import REGISTRY
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    common_pb2,
)

from core.settings import Settings
from domain import names
from runtime import open_runtime
from server.cache import LocalCopies, _key
from tests.netfaults import private_redis
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    SharedRedis,
    channel_as,
    make_settings,
    reason,
)

START = "2025-05-01T07:00:00Z"


def cache_count(result: str) -> float:
    value = REGISTRY.get_sample_value("stride_cache_requests_total", {"result": result})
    return value or 0.0


def _new_activity(channel: grpc.Channel, title: str = "Morning run") -> tuple[str, str]:
    athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
    activities = activity_pb2_grpc.ActivityServiceStub(channel)
    athlete = athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="Europe/Oslo")
        )
    )
    activity = activity_pb2.Activity(
        title=title,
        sport_type=common_pb2.SPORT_TYPE_RUN,
        elapsed_time=duration_pb2.Duration(seconds=1800),
    )
    activity.start_time.FromJsonString(START)
    created = activities.CreateActivity(
        activity_pb2.CreateActivityRequest(parent=athlete.name, activity=activity)
    )
    return athlete.name, created.name


def _retitle(channel: grpc.Channel, name: str, title: str) -> None:
    activity_pb2_grpc.ActivityServiceStub(channel).UpdateActivity(
        activity_pb2.UpdateActivityRequest(
            activity=activity_pb2.Activity(name=name, title=title),
            update_mask=field_mask_pb2.FieldMask(paths=["title"]),
        )
    )


def _titles(channel: grpc.Channel, athlete: str, activity: str) -> tuple[str, list[str]]:
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    got = stub.GetActivity(activity_pb2.GetActivityRequest(name=activity)).title
    page = stub.ListActivities(activity_pb2.ListActivitiesRequest(parent=athlete, page_size=100))
    return got, [a.title for a in page.activities]


@pytest.fixture
def settings(database_url: str | None, tmp_path: Path, shared_redis: SharedRedis) -> Settings:
    """A server on the test's database and its own slice of the shared Redis."""
    return make_settings(
        tmp_path / "data",
        database_url,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
        inprocess_workers=True,
    )


@pytest.fixture
def cached(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(settings) as server:
        yield server


def test_repeated_reads_come_from_the_cache_and_writes_are_seen_at_once(
    cached: ServerThread,
) -> None:
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        athlete, activity = _new_activity(channel)
        assert _titles(channel, athlete, activity) == ("Morning run", ["Morning run"])
        hits = cache_count("hit_local")
        for _ in range(5):
            assert _titles(channel, athlete, activity) == ("Morning run", ["Morning run"])
        assert cache_count("hit_local") - hits == 10

        _retitle(channel, activity, "Evening run")
        assert _titles(channel, athlete, activity) == ("Evening run", ["Evening run"])

        athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
        got = athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=athlete))
        assert got.display_name == "Ada"
        athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(
                athlete=athlete_pb2.Athlete(name=athlete, display_name="Ada L."),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            )
        )
        got = athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=athlete))
        assert got.display_name == "Ada L."

        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        stub.DeleteActivity(activity_pb2.DeleteActivityRequest(name=activity))
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetActivity(activity_pb2.GetActivityRequest(name=activity))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        page = stub.ListActivities(activity_pb2.ListActivitiesRequest(parent=athlete))
        assert list(page.activities) == []


def test_a_write_through_one_process_is_read_at_once_through_another(
    settings: Settings,
) -> None:
    """Two servers (and a worker-like runtime) on one database and one Redis, each with
    its own in-process layer: what one writes, the other reads next, never its old copy."""
    with ExitStack() as stack:
        first = stack.enter_context(ServerThread(settings))
        second = stack.enter_context(ServerThread(settings))
        a = stack.enter_context(channel_as(first.address, ADMIN_TOKEN))
        b = stack.enter_context(channel_as(second.address, ADMIN_TOKEN))
        athlete, activity = _new_activity(a)
        for round_ in range(5):
            title = f"Run {round_}"
            _retitle(a if round_ % 2 else b, activity, title)
            # Both warm (an old copy in each process), then one write, then reads on both.
            assert _titles(a, athlete, activity) == (title, [title])
            assert _titles(b, athlete, activity) == (title, [title])

        # A write by another process that serves nothing (a worker) is seen too.
        runtime = open_runtime(settings)
        try:
            athlete_id, activity_id = names.parse_activity(activity, "name")
            runtime.activities.update(athlete_id, activity_id, {"title": "By a worker"})
        finally:
            runtime.close()
        assert _titles(a, athlete, activity) == ("By a worker", ["By a worker"])
        assert _titles(b, athlete, activity) == ("By a worker", ["By a worker"])


def test_concurrent_writers_and_readers_end_on_the_last_write(
    cached: ServerThread,
) -> None:
    """Readers hammer the cache while writers retitle: once the writes are done, every
    read returns the last title."""
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        athlete, activity = _new_activity(channel)
        stop = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            try:
                while not stop.is_set():
                    _titles(channel, athlete, activity)
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        for i in range(20):
            _retitle(channel, activity, f"Lap {i}")
        stop.set()
        for reader in readers:
            reader.join()
        assert errors == []
        assert _titles(channel, athlete, activity) == ("Lap 19", ["Lap 19"])


@pytest.mark.usefixtures("redis_server_binary")
def test_redis_stopped_mid_load_gives_no_errors_and_no_stale_reads(tmp_path: Path) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(private_redis())
        settings = make_settings(
            tmp_path / "data", None, redis_url=redis.url, inprocess_workers=True
        )
        server = stack.enter_context(ServerThread(settings))
        channel = stack.enter_context(channel_as(server.address, ADMIN_TOKEN))
        athlete, activity = _new_activity(channel)
        _titles(channel, athlete, activity)

        calls = [0]
        errors: list[BaseException] = []
        stop = threading.Event()

        def load() -> None:
            try:
                while not stop.is_set():
                    _titles(channel, athlete, activity)
                    calls[0] += 1
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=load) for _ in range(4)]
        for reader in readers:
            reader.start()
        try:
            _wait_for_calls(calls, 50)
            bypassed = cache_count("bypass")
            redis.stop()
            _wait_for_calls(calls, calls[0] + 20)
            # A write while Redis is gone: its version bump cannot be made...
            _retitle(channel, activity, "Written without Redis")
            assert _titles(channel, athlete, activity)[0] == "Written without Redis"
            assert cache_count("bypass") > bypassed
            # ... and when Redis is back (empty, as after a restart), nothing stale is read.
            redis.start()
            _wait_for_calls(calls, calls[0] + 50)
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        assert errors == []
        # The writer renews the epoch once Redis answers; from then on reads are cached
        # again, and none of them ever returned the title from before the write.
        hits = cache_count("hit_local") + cache_count("hit_redis")
        for _ in range(1000):
            assert _titles(channel, athlete, activity) == (
                "Written without Redis",
                ["Written without Redis"],
            )
            if cache_count("hit_local") + cache_count("hit_redis") > hits:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the cache was not used again after Redis came back")


def _wait_for_calls(calls: list[int], at_least: int) -> None:
    for _ in range(3000):
        if calls[0] >= at_least:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"only {calls[0]} calls made")


def test_flush_cache_deletes_a_prefix_and_makes_every_copy_unreachable(
    cached: ServerThread,
) -> None:
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        first, activity = _new_activity(channel)
        second, other_activity = _new_activity(channel)
        _titles(channel, first, activity)
        _titles(channel, second, other_activity)
        flushed = admin.FlushCache(admin_pb2.FlushCacheRequest(prefix=first))
        assert flushed.deleted_keys == 2  # the activity and the page
        misses = cache_count("miss")
        _titles(channel, first, activity)
        _titles(channel, second, other_activity)  # not deleted, but unreachable too
        assert cache_count("miss") - misses == 4

        everything = admin.FlushCache(admin_pb2.FlushCacheRequest())
        assert everything.deleted_keys == 6  # the first's 2, and the second's 2 + 2
        misses = cache_count("miss")
        _titles(channel, first, activity)
        assert cache_count("miss") - misses == 2

        token = (
            athlete_pb2_grpc.AthleteServiceStub(channel)
            .CreateAccessToken(athlete_pb2.CreateAccessTokenRequest(parent=first))
            .token
        )
    with channel_as(cached.address, token) as athlete_channel:
        with pytest.raises(grpc.RpcError) as refused:
            admin_pb2_grpc.AdminServiceStub(athlete_channel).FlushCache(
                admin_pb2.FlushCacheRequest()
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason(refused.value) == "ADMIN_ONLY"


def test_an_athlete_reads_only_their_own_even_when_cached(cached: ServerThread) -> None:
    """Authorization runs before the cache: a cached copy is never a way around it."""
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        athlete, activity = _new_activity(channel)
        other, _ = _new_activity(channel)
        _titles(channel, athlete, activity)  # cached now
        token = (
            athlete_pb2_grpc.AthleteServiceStub(channel)
            .CreateAccessToken(athlete_pb2.CreateAccessTokenRequest(parent=other))
            .token
        )
    with channel_as(cached.address, token) as intruder:
        stub = activity_pb2_grpc.ActivityServiceStub(intruder)
        with pytest.raises(grpc.RpcError) as denied:
            stub.GetActivity(activity_pb2.GetActivityRequest(name=activity))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cancelled_reads_do_not_disturb_the_reads_sharing_their_lookup(
    cached: ServerThread,
) -> None:
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        athlete, activity = _new_activity(channel)

    async def burst() -> list[Any]:
        metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        async with grpc.aio.insecure_channel(cached.address) as aio_channel:
            stub = activity_pb2_grpc.ActivityServiceStub(aio_channel)
            calls = [
                stub.GetActivity(activity_pb2.GetActivityRequest(name=activity), metadata=metadata)
                for _ in range(64)
            ]
            for call in calls[::2]:
                call.cancel()
            return await asyncio.gather(*calls, return_exceptions=True)

    for _ in range(5):
        outcomes = asyncio.run(burst())
        kept = outcomes[1::2]
        assert all(isinstance(o, activity_pb2.Activity) and o.title == "Morning run" for o in kept)
    with channel_as(cached.address, ADMIN_TOKEN) as channel:
        assert _titles(channel, athlete, activity)[0] == "Morning run"


def test_local_copies_keep_the_most_recently_used_within_their_bytes() -> None:
    copies = LocalCopies(2, max_bytes=100)
    one, two, three = (activity_pb2.Activity(title=t) for t in ("1", "2", "3"))
    copies.put("a", one, 10)
    copies.put("b", two, 10)
    assert copies.get("a") is one  # now the most recent
    copies.put("c", three, 10)
    assert copies.get("b") is None
    assert copies.get("a") is one
    assert copies.get("c") is three
    copies.put("big", two, 95)  # over the byte budget with the others: they go
    assert copies.get("a") is None
    assert copies.get("big") is two
    copies.put("huge", three, 101)  # larger than the whole budget: never kept
    assert copies.get("huge") is None
    assert copies.clear() == 1


def test_keys_tell_pages_filters_and_versions_apart() -> None:
    first = activity_pb2.ListActivitiesRequest(parent="athletes/a", page_size=10)
    second = activity_pb2.ListActivitiesRequest(parent="athletes/a", page_size=10, page_token="x")
    keys = {
        _key("athletes/a/activities", "v1", first),
        _key("athletes/a/activities", "v1", second),
        _key("athletes/a/activities", "v2", first),
    }
    assert len(keys) == 3
    assert all(key.startswith("athletes/a/activities|") for key in keys)
    # Unknown fields (a field number the contract does not have) make no key of their own:
    # a client cannot fill the cache with copies of one page.
    padded = activity_pb2.ListActivitiesRequest.FromString(
        first.SerializeToString() + b"\xb8\x3e\x01"
    )
    assert _key("athletes/a/activities", "v1", padded) == _key("athletes/a/activities", "v1", first)


def test_without_redis_nothing_is_cached(tmp_path: Path) -> None:
    """Only Redis can tell every process that may write (a stride-worker beside the
    server too) about each write: without it every read goes to the database."""
    with (
        ServerThread(make_settings(tmp_path / "data", None)) as server,
        channel_as(server.address, ADMIN_TOKEN) as channel,
    ):
        athlete, activity = _new_activity(channel)
        results = ("hit_local", "hit_redis", "miss", "bypass")
        before = {result: cache_count(result) for result in results}
        for _ in range(3):
            assert _titles(channel, athlete, activity)[0] == "Morning run"
        assert {result: cache_count(result) for result in results} == before
