"""The job event bus (in-process and Redis pub/sub) and `watch`, the replay-then-live merge:
in order, no gaps, no duplicates, ending with the job; the database is the record and the
bus only a hint."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from core.job_bus import BusUnavailable, InProcessBus, RedisBus
from domain.errors import NotFound
from domain.jobs import EventsExpired, Job, JobEvent, JobKind, JobState, Progress
from services.jobs import JobStore, watch
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import SharedRedis

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _event(sequence: int, job_id: str = "j") -> JobEvent:
    return JobEvent(job_id=job_id, sequence=sequence, time=T0, state=JobState.RUNNING)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'events.db'}", [], PoolOptions())
    migrate.upgrade(database.primary)
    yield database
    database.dispose()


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def store(database: Database, bus: InProcessBus) -> JobStore:
    return JobStore(database, bus)


async def _collect(events: AsyncIterator[JobEvent], seconds: float = 10) -> list[JobEvent]:
    async def run() -> list[JobEvent]:
        return [event async for event in events]

    return await asyncio.wait_for(run(), seconds)


def _run_job(store: JobStore, job_id: str, steps: int, pause: float = 0.0) -> None:
    """A task: start, `steps` progress events, succeed (from a worker thread)."""
    store.start(job_id, "w")
    for i in range(steps):
        if pause:
            threading.Event().wait(pause)
        store.record_progress(job_id, "w", Progress(completed=i + 1, total=steps))
    store.transition(job_id, JobState.SUCCEEDED, owner="w")


# The buses ----------------------------------------------------------------------------------


async def test_in_process_bus_delivers_from_worker_threads(bus: InProcessBus) -> None:
    subscription = await bus.subscribe("j")
    other = await bus.subscribe("k")
    threads = [threading.Thread(target=bus.publish, args=(_event(n),)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = {(await subscription.get(2)).sequence for _ in range(2)}  # type: ignore[union-attr]
    assert got == {1, 2}
    assert await other.get(0.05) is None
    await subscription.close()
    await other.close()
    assert bus.subscriber_count("j") == 0
    bus.publish(_event(3))  # nobody listens: nothing happens


async def test_redis_bus_fans_out_between_clients(shared_redis: SharedRedis) -> None:
    publisher = redis.Redis.from_url(shared_redis.url)
    subscriber_client = AsyncRedis.from_url(shared_redis.url)
    bus = RedisBus(publisher, lambda: subscriber_client, shared_redis.prefix)
    assert bus.channel("j") == f"{shared_redis.prefix}job:j"
    try:
        first = await bus.subscribe("j")
        second = await bus.subscribe("j")
        await asyncio.to_thread(bus.publish, _event(7))
        for subscription in (first, second):
            received = await subscription.get(5)
            assert received == _event(7)
            await subscription.close()
    finally:
        await subscriber_client.aclose()
        publisher.close()


async def test_redis_bus_down_is_reported_not_raised() -> None:
    dead = "redis://127.0.0.1:1/0"
    publisher = redis.Redis.from_url(dead, socket_connect_timeout=0.2)
    subscriber_client = AsyncRedis.from_url(dead, socket_connect_timeout=0.2)
    bus = RedisBus(publisher, lambda: subscriber_client, "p:")
    try:
        bus.publish(_event(1))  # logged, not raised
        with pytest.raises(BusUnavailable):
            await bus.subscribe("j")
    finally:
        await subscriber_client.aclose()
        publisher.close()


# watch ----------------------------------------------------------------------------------------


async def test_watch_replays_then_streams_live_until_the_job_ends(
    store: JobStore, bus: InProcessBus
) -> None:
    job, _ = store.create(None, JobKind.FILE_IMPORT, {})
    watching = asyncio.create_task(_collect(watch(store, bus, job.id, 0)))
    for _ in range(1000):
        if bus.subscriber_count(job.id):
            break
        await asyncio.sleep(0.01)
    await asyncio.to_thread(_run_job, store, job.id, 20)
    events = await watching
    assert [e.sequence for e in events] == list(range(1, 24))
    assert events[-1].state == JobState.SUCCEEDED


async def test_two_watchers_see_the_same_events(store: JobStore, bus: InProcessBus) -> None:
    job, _ = store.create(None, JobKind.STRAVA_SYNC, {})
    watchers = [asyncio.create_task(_collect(watch(store, bus, job.id, 0))) for _ in range(2)]
    await asyncio.to_thread(_run_job, store, job.id, 10, 0.005)
    first, second = await asyncio.gather(*watchers)
    assert first == second
    assert [e.sequence for e in first] == list(range(1, 14))


async def test_a_reconnecting_watcher_gets_exactly_the_missed_events(
    store: JobStore, bus: InProcessBus
) -> None:
    job, _ = store.create(None, JobKind.STRAVA_SYNC, {})
    await asyncio.to_thread(_run_job, store, job.id, 5)
    events = await _collect(watch(store, bus, job.id, 4))
    assert [e.sequence for e in events] == [5, 6, 7, 8]
    with pytest.raises(NotFound):
        await _collect(watch(store, bus, "missing", 0))


class _WritesDuringReplay:
    """A store whose first replay read is followed by writes, as if a worker ran between the
    watcher's database read and its first live event. `publish` False: the bus loses them."""

    def __init__(self, store: JobStore, database: Database, publish: bool) -> None:
        self.store = store
        # A second store on the same database, with or without the bus.
        self.writer = JobStore(database, store.bus if publish else None)
        self.reads = 0
        self.written = threading.Event()

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def events_after(self, job_id: str, after_sequence: int, limit: int = 500) -> list[JobEvent]:
        events = self.store.events_after(job_id, after_sequence, limit)
        self.reads += 1
        if self.reads == 1:
            self.writer.start(job_id, "w")
            self.writer.record_progress(job_id, "w", Progress(completed=1))
            self.written.set()
        return events


@pytest.mark.parametrize("published", [True, False], ids=["published", "lost-on-the-bus"])
async def test_events_written_between_replay_and_live_are_not_lost(
    store: JobStore, bus: InProcessBus, database: Database, published: bool
) -> None:
    job, _ = store.create(None, JobKind.STRAVA_SYNC, {})
    racing = _WritesDuringReplay(store, database, published)
    watching = asyncio.create_task(_collect(watch(racing, bus, job.id, 0)))
    assert await asyncio.to_thread(racing.written.wait, 10)
    # A later event arrives live: the watcher sees the gap (if any) and reads the database.
    await asyncio.to_thread(store.transition, job.id, JobState.SUCCEEDED, owner="w")
    events = await watching
    assert [e.sequence for e in events] == [1, 2, 3, 4]


async def test_a_quiet_bus_is_covered_by_rechecking_the_database(
    store: JobStore, bus: InProcessBus, database: Database
) -> None:
    job, _ = store.create(None, JobKind.STRAVA_SYNC, {})
    silent = JobStore(database, None)  # writes that never reach the bus
    watching = asyncio.create_task(_collect(watch(store, bus, job.id, 0, recheck_seconds=0.1)))
    await asyncio.to_thread(_run_job, silent, job.id, 3)
    assert [e.sequence for e in await watching] == [1, 2, 3, 4, 5, 6]


async def test_redis_down_falls_back_to_polling_the_database(database: Database) -> None:
    dead = "redis://127.0.0.1:1/0"
    publisher = redis.Redis.from_url(dead, socket_connect_timeout=0.2)
    subscriber_client = AsyncRedis.from_url(dead, socket_connect_timeout=0.2)
    bus = RedisBus(publisher, lambda: subscriber_client, "p:")
    store = JobStore(database, bus)
    try:
        job, _ = await asyncio.to_thread(store.create, None, JobKind.STRAVA_SYNC, {})
        watching = asyncio.create_task(
            _collect(watch(store, bus, job.id, 0, poll_seconds=0.05, resubscribe_seconds=0.2))
        )
        await asyncio.to_thread(_run_job, store, job.id, 5, 0.01)
        assert [e.sequence for e in await watching] == list(range(1, 9))
    finally:
        await subscriber_client.aclose()
        publisher.close()


async def test_events_no_longer_kept_are_a_clear_error(database: Database) -> None:
    clock_now = [T0]
    store = JobStore(database, None, clock=lambda: clock_now[0])
    job, _ = store.create(None, JobKind.RECOMPUTE, {})
    _run_job(store, job.id, 2)
    clock_now[0] += store.retention * 2
    assert store.prune_events() == 4
    with pytest.raises(EventsExpired):
        await _collect(watch(store, None, job.id, 0))
    # Up to date with the end: the kept terminal event.
    events = await _collect(watch(store, None, job.id, 4))
    assert [e.state for e in events] == [JobState.SUCCEEDED]
