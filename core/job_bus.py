"""Live fan-out of job events: workers publish each event after its database commit;
watchers subscribe by job id.

The bus is a hint, never the record: an event may be lost (a full queue, Redis down, a
watcher subscribing late), so a watcher replays from the database and re-reads it whenever
it sees a gap or the bus fails (`services.jobs.watch`). Two implementations: in-process
(the embedded default: workers run inside the server) and Redis pub/sub (between
processes), chosen by `runtime.root.Runtime.job_bus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

import redis
import structlog
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import PubSub

from domain.jobs import JobEvent

log = structlog.get_logger(__name__)


class BusUnavailable(Exception):
    """The bus cannot deliver events (Redis down): read the database instead."""


class Subscription(ABC):
    """Live events of one job, for one watcher on one event loop."""

    @abstractmethod
    async def get(self, wait_seconds: float) -> JobEvent | None:
        """The next event, or None when none came within `wait_seconds` (or a message was
        not an event). Raises BusUnavailable when the bus broke."""

    @abstractmethod
    async def close(self) -> None: ...


class JobEventBus(ABC):
    @abstractmethod
    def publish(self, event: JobEvent) -> None:
        """From any thread, after the event's commit. Never raises: a lost event only delays
        watchers until they re-read the database."""

    @abstractmethod
    async def subscribe(self, job_id: str) -> Subscription:
        """Raises BusUnavailable when the bus cannot be reached."""


# In process ---------------------------------------------------------------------------------


class _LocalSubscription(Subscription):
    QUEUE_SIZE = 1000

    def __init__(self, bus: InProcessBus, job_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self._bus = bus
        self.job_id = job_id
        self.loop = loop
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue(self.QUEUE_SIZE)

    def offer(self, event: JobEvent) -> None:
        """On the subscriber's loop. A full queue drops the event: the watcher sees the gap
        and re-reads the database."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("job event dropped: watcher queue full", job_id=event.job_id)

    async def get(self, wait_seconds: float) -> JobEvent | None:
        try:
            return await asyncio.wait_for(self.queue.get(), wait_seconds)
        except TimeoutError:
            return None

    async def close(self) -> None:
        self._bus._remove(self)


class InProcessBus(JobEventBus):
    """Subscribers are asyncio queues; publishers (worker threads) feed them through their
    loop's `call_soon_threadsafe`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[_LocalSubscription]] = {}

    def publish(self, event: JobEvent) -> None:
        with self._lock:
            targets = list(self._subscribers.get(event.job_id, ()))
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, event)
            except RuntimeError:  # its loop closed; it will never read again
                self._remove(subscription)

    async def subscribe(self, job_id: str) -> Subscription:
        subscription = _LocalSubscription(self, job_id, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add(subscription)
        return subscription

    def _remove(self, subscription: _LocalSubscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(subscription.job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[subscription.job_id]

    def subscriber_count(self, job_id: str) -> int:
        with self._lock:
            return len(self._subscribers.get(job_id, ()))


# Redis pub/sub ------------------------------------------------------------------------------


class _RedisSubscription(Subscription):
    # Each read waits at most this long, below the clients' socket timeouts.
    READ_SLICE = 0.5

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def get(self, wait_seconds: float) -> JobEvent | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(remaining, self.READ_SLICE)
                )
            except (redis.RedisError, OSError) as exc:
                raise BusUnavailable(str(exc)) from exc
            if message is None or message.get("type") != "message":
                continue
            try:
                return JobEvent.from_json(json.loads(message["data"]))
            except (ValueError, KeyError, TypeError):
                log.warning("malformed job event on the bus")
                return None

    async def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisBus(JobEventBus):
    """Channel `{prefix}job:{id}` per job. Publishes with the sync client (worker threads);
    subscribes with the asyncio client, created on the watcher's loop by `async_client`."""

    def __init__(
        self,
        client: redis.Redis,
        async_client: Callable[[], AsyncRedis | None],
        prefix: str,
    ) -> None:
        self._client = client
        self._async_client = async_client
        self._prefix = prefix
        self._failing = False  # log an outage once, and its end, not every event

    def channel(self, job_id: str) -> str:
        return f"{self._prefix}job:{job_id}"

    def publish(self, event: JobEvent) -> None:
        """Best effort: events are stored first, and watchers read the database while
        Redis is down."""
        try:
            self._client.publish(self.channel(event.job_id), json.dumps(event.to_json()))
        except (redis.RedisError, OSError) as exc:
            if not self._failing:
                self._failing = True
                log.warning("job events not published until Redis is back (watchers read"
                            " the database)", job_id=event.job_id, error=str(exc))  # fmt: skip
            return
        if self._failing:
            self._failing = False
            log.info("job events published again")

    async def subscribe(self, job_id: str) -> Subscription:
        client = self._async_client()
        if client is None:
            raise BusUnavailable("no Redis client")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel(job_id))
        except (redis.RedisError, OSError) as exc:
            await _RedisSubscription(pubsub).close()
            raise BusUnavailable(str(exc)) from exc
        return _RedisSubscription(pubsub)
