"""Per-athlete data versions: what cached reads are keyed by (server.cache).

Every committed write to an athlete's data gives that athlete a new version (storage.
changes announces the athletes; `bump` runs before the write's call returns), so a read
that starts after a write never finds a copy made before it, in any process.

Versions are random tokens, never counters: a version lost (Redis restarted, a key
expired) comes back as a new random token, never as one an old copy was stored under.
A version is the athlete's token plus the epoch, a token shared by every athlete that
`renew_epoch` (FlushCache) replaces.

With Redis, versions live there and every process (servers, workers) sees the same ones.
Lookups from concurrent calls share round trips: one is on its way at a time, and the
calls that arrive meanwhile go together in the next. A bump that cannot reach Redis
leaves the process unsure: its own lookups fail (the cache is bypassed) and a background
thread retries until it has replaced the epoch, which makes every copy in every process
unreachable. Until then another process may still answer from a copy made before that
write: the only window in which a read can be stale, and it closes as soon as Redis
answers the writer again.

There is no cache without Redis: nothing else tells every process that may write (a
`stride-worker` beside the server included) about the others' writes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable

import redis
import structlog
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from storage.redislink import LinkError, RedisLink

log = structlog.get_logger(__name__)

EPOCH = "epoch"
RETRY_SECONDS = 0.5

# KEYS: the epoch's key, then athletes' keys. ARGV: the TTL in seconds, then a fresh token
# per key (used only where the key is missing). Returns every key's token.
_CURRENT = """
local tokens = {}
for i, key in ipairs(KEYS) do
  local token = redis.call('GET', key)
  if not token then
    token = ARGV[i + 1]
    redis.call('SET', key, token, 'EX', ARGV[1])
  end
  tokens[i] = token
end
return tokens
"""


class VersionsUnavailable(Exception):
    """The current versions cannot be known now: answer from the database."""


def _token() -> str:
    return os.urandom(8).hex()


class RedisVersions:
    """Versions in Redis, shared by every process. `bump` is synchronous (it runs after a
    commit, on the thread that committed); lookups need `use_async(client)` first."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: float) -> None:
        self._client = client
        self._prefix = f"{prefix}dv:"
        # Versions outlive the copies keyed by them; one that expires anyway is only a miss.
        self._ttl = max(1, int(ttl_seconds * 2))
        self._async: AsyncRedis | None = None
        self._link: RedisLink | None = None
        self._script: object = None
        self._pending: dict[str, list[asyncio.Future[str]]] = {}
        self._in_flight: asyncio.Task[None] | None = None  # also keeps the task referenced
        self._unsure = threading.Event()  # a bump did not reach Redis
        self._lock = threading.Lock()
        self._failures = 0  # bumps that did not reach Redis, ever
        self._retrying = False

    def use_async(self, client: AsyncRedis, link: RedisLink | None = None) -> None:
        """Lookups through `link` when given (storage.redislink: a fifth of the CPU per
        lookup), else through `client`; renewals always through `client`."""
        self._async = client
        self._script = client.register_script(_CURRENT)
        self._link = link

    def close_async(self) -> None:
        if self._link is not None:
            self._link.close()

    def key(self, athlete_id: str | None) -> str:
        return self._prefix + (EPOCH if athlete_id is None else f"a:{athlete_id}")

    # Writes ----------------------------------------------------------------------------

    def bump(self, athlete_ids: Iterable[str]) -> None:
        keys = [self.key(athlete_id) for athlete_id in athlete_ids]
        if not keys:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, _token(), ex=self._ttl)
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("cache versions not bumped; retrying with a new epoch", error=str(exc))
            self._become_unsure()

    def _become_unsure(self) -> None:
        with self._lock:
            self._failures += 1
            self._unsure.set()
            if self._retrying:
                return
            self._retrying = True
        threading.Thread(target=self._retry, name="stride-cache-epoch", daemon=True).start()

    def _retry(self) -> None:
        """Renew the epoch until a renewal succeeds with no bump failed meanwhile."""
        while True:
            with self._lock:
                failures = self._failures
            try:
                self._client.set(self.key(None), _token(), ex=self._ttl)
            except (RedisError, OSError):
                time.sleep(RETRY_SECONDS)
                continue
            with self._lock:
                if self._failures == failures:
                    self._unsure.clear()
                    self._retrying = False
                    log.info("cache epoch renewed after Redis came back")
                    return

    async def renew_epoch(self) -> None:
        """Every athlete's version at once (FlushCache)."""
        if self._async is None:
            raise VersionsUnavailable("no asyncio Redis client")
        try:
            await self._async.set(self.key(None), _token(), ex=self._ttl)
        except (RedisError, OSError) as exc:
            raise VersionsUnavailable(str(exc)) from exc

    # Reads -----------------------------------------------------------------------------

    async def current(self, athlete_id: str) -> str:
        if self._unsure.is_set() or self._script is None:
            raise VersionsUnavailable("versions unsure until Redis answers again")
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(athlete_id, []).append(waiter)
        if self._in_flight is None:
            self._send()
        return await waiter

    def _send(self) -> None:
        """One lookup at a time: the calls that arrive while it is on its way go together
        in the next, sent as soon as it returns. Under load a round trip serves many
        calls; a lone call never waits for company."""
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._lookup(batch))
        self._in_flight = task
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight = None
        if self._pending:
            self._send()

    async def _lookup(self, batch: dict[str, list[asyncio.Future[str]]]) -> None:
        athletes = list(batch)
        keys = [self.key(None), *(self.key(athlete_id) for athlete_id in athletes)]
        try:
            args = [self._ttl, *(_token() for _ in keys)]
            if self._link is not None:
                tokens = await self._link.evalsha(_CURRENT, keys, args)
            else:
                assert callable(self._script)
                tokens = await self._script(keys=keys, args=args)
            if not isinstance(tokens, list) or len(tokens) != len(keys):
                raise LinkError(f"unexpected reply to the version lookup: {tokens!r:.80}")
        except BaseException as exc:  # whatever it was, no waiter is left hanging
            error = VersionsUnavailable(str(exc) or type(exc).__name__)
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
            if not isinstance(exc, (RedisError, OSError, LinkError, asyncio.CancelledError)):
                log.error("cache version lookup failed", exc_info=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        epoch = _text(tokens[0])
        for athlete_id, token in zip(athletes, tokens[1:], strict=True):
            version = f"{epoch}.{_text(token)}"
            for waiter in batch[athlete_id]:
                if not waiter.done():  # its call may have been cancelled meanwhile
                    waiter.set_result(version)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
