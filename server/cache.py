"""Cache-aside for reads: the response a read produced, reused until the athlete's data
changes.

A cached copy is keyed by the resource name, the athlete's data version
(storage.dataversions) and the request, and holds the serialized response. Each lookup
asks for the athlete's current version first, so a copy made before a write (in any
process) is never found by a read that starts after it. Copies live in Redis, shared by
every process, and in a small in-process layer that saves the Redis round trip and the
decoding; both forget old versions by themselves (LRU, TTL).

Only successful responses are kept, after authorization (the interceptors ran first).
Redis unreachable means answering from the database, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from google.protobuf.message import Message
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from core import metrics
from storage.dataversions import DataVersions, VersionsUnavailable

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=Message)

_HIT_LOCAL = metrics.CACHE_REQUESTS.labels("hit_local")
_HIT_REDIS = metrics.CACHE_REQUESTS.labels("hit_redis")
_MISS = metrics.CACHE_REQUESTS.labels("miss")
_BYPASS = metrics.CACHE_REQUESTS.labels("bypass")


class LocalCopies:
    """The in-process layer: the most recently used responses, as messages."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, Message] = OrderedDict()

    def get(self, key: str) -> Message | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, message: Message) -> None:
        if self._capacity <= 0:
            return
        self._items[key] = message
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def drop(self, prefix: str) -> int:
        doomed = [key for key in self._items if key.startswith(prefix)]
        for key in doomed:
            del self._items[key]
        return len(doomed)


class ReadCache:
    def __init__(
        self,
        versions: DataVersions,
        redis: AsyncRedis | None,
        *,
        key_prefix: str,
        ttl_seconds: float,
        local_entries: int,
    ) -> None:
        self._versions = versions
        self._redis = redis
        self._prefix = f"{key_prefix}c:"
        self._ttl = max(1, int(ttl_seconds))
        self._local = LocalCopies(local_entries)

    async def read(
        self,
        athlete_id: str,
        name: str,
        request: Message,
        response_type: type[M],
        load: Callable[[], Awaitable[M]],
    ) -> M:
        """`name`: the resource read (or listed under); `load` produces the response on a
        miss. Messages returned may be shared: callers must not modify them."""
        try:
            version = await self._versions.current(athlete_id)
        except VersionsUnavailable:
            _BYPASS.inc()
            return await load()
        key = _key(name, version, request)
        local = self._local.get(key)
        if local is not None:
            _HIT_LOCAL.inc()
            return local  # type: ignore[return-value]
        stored = await self._fetch(key)
        if stored is not None:
            try:
                message = response_type.FromString(stored)
            except Exception:
                log.warning("unreadable cached response dropped", key=key)
            else:
                _HIT_REDIS.inc()
                self._local.put(key, message)
                return message
        _MISS.inc()
        message = await load()
        self._local.put(key, message)
        await self._store(key, message)
        return message

    async def flush(self, prefix: str, athlete_id: str | None) -> int:
        """Make every copy under `prefix` unreachable: a new version for `athlete_id` (the
        athlete the prefix is under) or, without one, a new epoch for everyone; copies in
        Redis under the prefix are deleted too. Returns how many copies were deleted here
        (Redis keys, or in-process copies without Redis)."""
        await self._versions.renew(athlete_id)
        dropped = self._local.drop(prefix)
        if self._redis is None:
            return dropped
        deleted = 0
        batch: list[bytes] = []
        pattern = self._prefix + _glob_escape(prefix) + "*"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self._redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await self._redis.unlink(*batch))
        return deleted

    async def _fetch(self, key: str) -> bytes | None:
        if self._redis is None:
            return None
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return value if isinstance(value, bytes) else None

    async def _store(self, key: str, message: Message) -> None:
        if self._redis is None:
            return
        # Not stored: the next read is a miss again (nothing is wrong, only slower).
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(self._prefix + key, message.SerializeToString(), ex=self._ttl)


class Uncached:
    """Caching off (STRIDE_CACHE_ENABLED=false, or nothing could keep it right)."""

    async def read(
        self,
        athlete_id: str,
        name: str,
        request: Message,
        response_type: type[M],
        load: Callable[[], Awaitable[M]],
    ) -> M:
        return await load()

    async def flush(self, prefix: str, athlete_id: str | None) -> int:
        return 0


Cache = ReadCache | Uncached


def _key(name: str, version: str, request: Message) -> str:
    """Starts with the resource name (FlushCache's prefixes); the request's bytes, hashed,
    tell pages and filters apart."""
    digest = hashlib.blake2b(request.SerializeToString(deterministic=True), digest_size=12)
    return f"{name}|{version}|{type(request).__name__}|{digest.hexdigest()}"


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
