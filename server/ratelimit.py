"""Token buckets shared through Redis (one atomic Lua script), with a process-local fallback.

Each call takes `cost` tokens from two buckets at once: the caller's principal and its
client IP. A bucket holds at most `burst` tokens and refills at `rate` per second.
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

# KEYS: bucket keys. ARGV: cost, then (rate, burst) per key. Uses the server clock (TIME) so
# every Stride process agrees on time. Returns {allowed, seconds to wait} (wait as a string).
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  if tokens < cost then
    wait = math.max(wait, (cost - tokens) / rate)
  end
end
if wait > 0 then
  return {0, tostring(wait)}
end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  redis.call('HSET', key, 'tokens', levels[i] - cost, 'at', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return {1, '0'}
"""


@dataclass(frozen=True)
class Limit:
    key: str
    rate: float
    burst: float


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

    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis
        self._script = redis.register_script(_LUA) if redis is not None else None
        self._local = LocalBuckets()
        self._redis_down_until = 0.0

    @property
    def using_fallback(self) -> bool:
        return self._redis is not None and time.monotonic() < self._redis_down_until

    def mark_redis(self, healthy: bool) -> None:
        """Health checks report Redis state, so recovery is noticed without a failing call."""
        self._redis_down_until = 0.0 if healthy else time.monotonic() + self.RETRY_REDIS_SECONDS

    async def take(self, limits: list[Limit], cost: float) -> Decision:
        if self._script is None or self.using_fallback:
            return self._local.take(limits, cost)
        args: list[float] = [cost]
        for limit in limits:
            args += [limit.rate, limit.burst]
        with tracer().start_as_current_span("redis rate_limit", kind=trace.SpanKind.CLIENT):
            try:
                allowed, wait = await self._script(keys=[f"stride:rl:{lim.key}" for lim in limits],
                                                   args=args)  # fmt: skip
            except (RedisError, OSError) as exc:
                log.warning("redis unreachable; using the local rate limiter", error=str(exc))
                self.mark_redis(False)
                return self._local.take(limits, cost)
        return Decision(bool(int(allowed)), float(wait))


def retry_seconds(decision: Decision) -> float:
    return max(0.001, math.ceil(decision.retry_after_seconds * 1000) / 1000)
