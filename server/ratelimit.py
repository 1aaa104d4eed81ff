"""Token buckets shared through Redis, with a process-local fallback.

Each call takes `cost` tokens from two buckets at once: the caller's principal and its
client IP. A bucket holds at most `burst` tokens and refills at `rate` per second.

With Redis, buckets live in Redis and an atomic Lua script takes tokens from them. To
avoid one round trip per call, a process leases a few tokens at a time (5 % of the
bucket's capacity, at least what the call costs) and spends them locally. Leased
tokens have left the shared bucket, so the shared limit is never exceeded; a caller
spread over many processes may be refused up to (processes x lease) tokens early.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.telemetry import tracer

log = structlog.get_logger(__name__)

LEASE_FRACTION = 0.05

# KEYS: bucket keys. ARGV: per key (rate, burst, need, want). Takes `want` tokens (at
# least `need`) from every bucket, or nothing. Uses the Redis clock (TIME) so every
# process agrees on time. Returns {1, granted...} or {0, seconds to wait}, as strings.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[4 * i - 3])
  local burst = tonumber(ARGV[4 * i - 2])
  local need = tonumber(ARGV[4 * i - 1])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  if tokens < need then
    wait = math.max(wait, (need - tokens) / rate)
  end
end
if wait > 0 then
  return {0, tostring(wait)}
end
local granted = {1}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[4 * i - 3])
  local burst = tonumber(ARGV[4 * i - 2])
  local grant = math.min(tonumber(ARGV[4 * i]), levels[i])
  redis.call('HSET', key, 'tokens', levels[i] - grant, 'at', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  granted[i + 1] = tostring(grant)
end
return granted
"""


@dataclass(frozen=True)
class Limit:
    key: str
    rate: float
    burst: float

    @property
    def lease(self) -> float:
        return max(1.0, self.burst * LEASE_FRACTION)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: float = 0.0


class LocalBuckets:
    """The same algorithm in process memory: the embedded default, and the fallback."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, limits: list[Limit], cost: float) -> Decision:
        now = time.monotonic()
        levels = []
        wait = 0.0
        for limit in limits:
            tokens, at = self._buckets.get(limit.key, (limit.burst, now))
            tokens = min(limit.burst, tokens + (now - at) * limit.rate)
            levels.append(tokens)
            if tokens < cost:
                wait = max(wait, (cost - tokens) / limit.rate)
        if wait > 0:
            return Decision(False, wait)
        for limit, tokens in zip(limits, levels, strict=True):
            self._buckets[limit.key] = (tokens - cost, now)
        if len(self._buckets) > 100_000:  # forget idle callers rather than grow without bound
            self._buckets.clear()
        return Decision(True)


class RateLimiter:
    """Redis when configured and reachable; otherwise the local buckets (reported degraded)."""

    RETRY_REDIS_SECONDS = 5.0

    def __init__(self, redis: Redis | None, key_prefix: str = "stride:") -> None:
        self._prefix = f"{key_prefix}rl:"
        self._script = redis.register_script(_LUA) if redis is not None else None
        self._local = LocalBuckets()
        self._leased: dict[str, float] = {}
        self._redis_down_until = 0.0

    @property
    def using_fallback(self) -> bool:
        return self._script is not None and time.monotonic() < self._redis_down_until

    def mark_redis(self, healthy: bool) -> None:
        """Health checks report Redis state, so recovery is noticed without a failing call."""
        self._redis_down_until = 0.0 if healthy else time.monotonic() + self.RETRY_REDIS_SECONDS

    async def take(self, limits: list[Limit], cost: float) -> Decision:
        if self._script is None or self.using_fallback:
            return self._local.take(limits, cost)
        short = [limit for limit in limits if self._leased.get(limit.key, 0.0) < cost]
        covered = [limit for limit in limits if limit not in short]
        # Reserve from the leases now: other calls may spend them while this one awaits Redis.
        self._spend(covered, cost)
        if not short:
            return Decision(True)
        args: list[float] = []
        for limit in short:
            args += [limit.rate, limit.burst, cost, max(cost, limit.lease)]
        keys = [self._prefix + limit.key for limit in short]
        with tracer().start_as_current_span("redis rate_limit", kind=trace.SpanKind.CLIENT):
            try:
                reply = await self._script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                self._spend(covered, -cost)
                log.warning("redis unreachable; using the local rate limiter", error=str(exc))
                self.mark_redis(False)
                return self._local.take(limits, cost)
        if not int(reply[0]):
            self._spend(covered, -cost)
            return Decision(False, float(reply[1]))
        for limit, granted in zip(short, reply[1:], strict=True):
            self._leased[limit.key] = self._leased.get(limit.key, 0.0) + float(granted) - cost
        if len(self._leased) > 100_000:
            self._leased.clear()
        return Decision(True)

    def _spend(self, limits: list[Limit], cost: float) -> None:
        for limit in limits:
            self._leased[limit.key] = self._leased.get(limit.key, 0.0) - cost


def retry_seconds(decision: Decision) -> float:
    return max(0.001, math.ceil(decision.retry_after_seconds * 1000) / 1000)
