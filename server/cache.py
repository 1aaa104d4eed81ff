"""Cache-aside for reads: the response a read produced, reused until the athlete's data
changes.

A cached copy is keyed by the resource name, the athlete's data version
(storage.dataversions) and the request, and holds the serialized response. Each lookup
asks for the athlete's current version first, so a copy made before a write (in any
process) is never found by a read that starts after it. Copies live in Redis, shared by
every process, and in a small in-process layer that saves the Redis round trip and the
decoding; both forget old versions by themselves (LRU, TTL).

Only successful responses are kept, after authorization (the interceptors ran first).
Redis unreachable means answering from the database, never an error. A copy is made from
the primary (a lagging replica's answer stored under the new version would outlive the
lag), and keys carry a fingerprint of what shaped the answer besides the data (the code's
version, the schema, paging settings, the signing key), so copies from before a deploy
are never served after it. The request's unknown fields do not make keys of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from core import metrics
from storage.dataversions import RedisVersions, VersionsUnavailable

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=Message)

_HIT_LOCAL = metrics.CACHE_REQUESTS.labels("hit_local")
_HIT_REDIS = metrics.CACHE_REQUESTS.labels("hit_redis")
_MISS = metrics.CACHE_REQUESTS.labels("miss")
_BYPASS = metrics.CACHE_REQUESTS.labels("bypass")
# Responses larger than this are not kept; the in-process layer holds at most LOCAL_BYTES.
MAX_COPY_BYTES = 2**20
LOCAL_BYTES = 64 * 2**20


class LocalCopies:
    """The in-process layer: the most recently used responses, as messages, at most
    `capacity` of them and `max_bytes` of them together."""

    def __init__(self, capacity: int, max_bytes: int = LOCAL_BYTES) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, tuple[Message, int]] = OrderedDict()

    def get(self, key: str) -> Message | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: str, message: Message, size: int) -> None:
        if self._capacity <= 0 or size > self._max_bytes:
            return
        self.discard(key)
        self._items[key] = (message, size)
        self._bytes += size
        while len(self._items) > self._capacity or self._bytes > self._max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped

    def discard(self, key: str) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self._bytes -= found[1]

    def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        self._bytes = 0
        return count


class ReadCache:
    def __init__(
        self,
        versions: RedisVersions,
        redis: AsyncRedis,
        *,
        key_prefix: str,
        fingerprint: str,
        ttl_seconds: float,
        local_entries: int,
        enabled: bool = True,
    ) -> None:
        """`enabled` False: reads go to the database, but FlushCache still reaches the
        copies other processes keep (they share Redis)."""
        self._versions = versions
        self._redis = redis
        self._root = f"{key_prefix}c:"
        self._prefix = f"{self._root}{fingerprint}:"
        self._ttl = max(1, int(ttl_seconds))
        self._local = LocalCopies(local_entries)
        self._enabled = enabled

    @property
    def consistent(self) -> bool:
        """Loads must read the primary: what they return is stored under a version."""
        return self._enabled

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
        if not self._enabled:
            return await load()
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
                self._local.put(key, message, len(stored))
                return message
        _MISS.inc()
        message = await load()
        data = message.SerializeToString()
        if len(data) <= MAX_COPY_BYTES:
            self._local.put(key, message, len(data))
            await self._store(key, data)
        return message

    async def flush(self, prefix: str) -> int:
        """Make every copy unreachable in every process (a new epoch: FlushCache is rare,
        and a prefix cut inside an id names no athlete to renew alone), and delete the
        copies in Redis whose resource name starts with `prefix` (of any fingerprint).
        Returns how many were deleted."""
        await self._versions.renew_epoch()
        self._local.clear()
        deleted = 0
        batch: list[bytes] = []
        pattern = f"{_glob_escape(self._root)}*:{_glob_escape(prefix)}*"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self._redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await self._redis.unlink(*batch))
        return deleted

    async def _fetch(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return value if isinstance(value, bytes) else None

    async def _store(self, key: str, data: bytes) -> None:
        # Not stored: the next read is a miss again (nothing is wrong, only slower).
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(self._prefix + key, data, ex=self._ttl)


class Uncached:
    """No cache anywhere: no Redis (nothing could tell every process about every write)."""

    consistent = False

    async def read(
        self,
        athlete_id: str,
        name: str,
        request: Message,
        response_type: type[M],
        load: Callable[[], Awaitable[M]],
    ) -> M:
        return await load()

    async def flush(self, prefix: str) -> int:
        return 0


Cache = ReadCache | Uncached


def _key(name: str, version: str, request: Message) -> str:
    """Starts with the resource name (FlushCache's prefixes); the request's known fields,
    hashed, tell pages and filters apart."""
    data = request.SerializeToString(deterministic=True)
    if len(UnknownFieldSet(request)):
        known = type(request)()
        known.CopyFrom(request)
        known.DiscardUnknownFields()
        data = known.SerializeToString(deterministic=True)
    digest = hashlib.blake2b(data, digest_size=12)
    return f"{name}|{version}|{type(request).__name__}|{digest.hexdigest()}"


def fingerprint(*parts: object) -> str:
    """A short digest of what shapes responses besides the data (see the module doc)."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=6).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
