"""Strava's rate limits as one budget shared by every worker.

Four counters per application: overall and read, each over the 15-minute window (resetting at
:00, :15, :30, :45 UTC) and the daily one (midnight UTC). Every response reports usage in
``X-RateLimit-Usage`` / ``X-ReadRateLimit-Usage`` ("15-minute,daily"); :meth:`Budget.record`
keeps the highest usage reported in the current window. Before a call, :meth:`Budget.reserve`
atomically adds one reservation to each counter the call consumes, unless usage plus
reservations already reaches a limit: then it raises :class:`BudgetExhausted` with the time the
exhausted window resets, and Strava is not called. A response turns its reservation into
reported usage; a call that got no answer keeps it as usage (it may have counted).

With Redis the counters are hashes under ``{prefix}strava:budget:{app}:...`` that expire at the
end of their window, changed by Lua scripts; without Redis (or while Redis fails) a process-
local store with the same rules is used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from tasks.strava.errors import BudgetExhausted

COUNTERS = ("overall_short", "overall_long", "read_short", "read_long")
# Strava's defaults (used until a response reports the application's real limits).
DEFAULT_LIMITS = (200, 2000, 100, 1000)
DEFAULT_WINDOWS = (900.0, 86400.0)

_RESERVE = """
local n = tonumber(ARGV[1])
local limits = redis.call('HMGET', KEYS[5], 'l1', 'l2', 'l3', 'l4')
for i = 1, n do
  local limit = tonumber(limits[i]) or tonumber(ARGV[1 + i])
  local h = redis.call('HMGET', KEYS[i], 'usage', 'reserved')
  if (tonumber(h[1]) or 0) + (tonumber(h[2]) or 0) >= limit then return i end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'reserved', 1)
  redis.call('PEXPIREAT', KEYS[i], ARGV[5 + i])
end
return 0
"""

_SETTLE = """
-- ARGV: n, usage x4 (-1: not reported), expiry x4, limits x4 (-1: none), reported_at, counted
local n = tonumber(ARGV[1])
for i = 1, 4 do
  local reported = tonumber(ARGV[1 + i])
  local h = redis.call('HMGET', KEYS[i], 'usage', 'reserved')
  local usage = tonumber(h[1]) or 0
  local reserved = tonumber(h[2]) or 0
  if i <= n and reserved > 0 then
    reserved = reserved - 1
    if reported < 0 and ARGV[15] == '1' then usage = usage + 1 end
  end
  if reported > usage then usage = reported end
  if reported >= 0 or i <= n then
    redis.call('HSET', KEYS[i], 'usage', usage, 'reserved', reserved)
    redis.call('PEXPIREAT', KEYS[i], ARGV[5 + i])
  end
end
if tonumber(ARGV[10]) >= 0 then
  redis.call('HSET', KEYS[5], 'l1', ARGV[10], 'l2', ARGV[11], 'l3', ARGV[12], 'l4', ARGV[13],
             'reported_at', ARGV[14])
end
return 0
"""


@dataclass(frozen=True)
class Report:
    """What one response's headers say: limits and usage for the four counters."""

    limits: tuple[int, int, int, int]
    usage: tuple[int, int, int, int]


def parse_headers(headers: Mapping[str, str]) -> Report | None:
    """The rate-limit headers of a response, or None when absent or malformed."""

    def pair(name: str) -> tuple[int, int] | None:
        value = headers.get(name)
        if not value:
            return None
        parts = value.split(",")
        if len(parts) != 2:
            return None
        try:
            return int(parts[0].strip()), int(parts[1].strip())
        except ValueError:
            return None

    overall_limit = pair("X-RateLimit-Limit")
    overall_usage = pair("X-RateLimit-Usage")
    if overall_limit is None or overall_usage is None:
        return None
    read_limit = pair("X-ReadRateLimit-Limit") or overall_limit
    read_usage = pair("X-ReadRateLimit-Usage") or overall_usage
    return Report((*overall_limit, *read_limit), (*overall_usage, *read_usage))


@dataclass(frozen=True)
class CounterState:
    name: str
    limit: int
    usage: int
    reserved: int
    resets_at: float


@dataclass(frozen=True)
class BudgetSnapshot:
    """For health and ``AdminService.GetRateLimitState``."""

    shared: bool  # kept in Redis (False: this process only)
    counters: tuple[CounterState, ...]
    reported_at: float | None  # when Strava last reported usage
    exhausted_until: float | None  # set when no call may be made now

    def as_dict(self) -> dict[str, Any]:
        return {
            "shared": self.shared,
            "reported_at": self.reported_at,
            "exhausted_until": self.exhausted_until,
            "counters": {
                c.name: {
                    "limit": c.limit,
                    "usage": c.usage,
                    "reserved": c.reserved,
                    "resets_at": c.resets_at,
                }
                for c in self.counters
            },
        }


class _LocalStore:
    """The Lua scripts' rules over a dict (one process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hashes: dict[str, dict[str, float]] = {}
        self.expiry: dict[str, float] = {}

    def _get(self, key: str, now: float) -> dict[str, float]:
        if key in self.expiry and self.expiry[key] <= now:
            self.hashes.pop(key, None)
            self.expiry.pop(key, None)
        return self.hashes.setdefault(key, {})

    def reserve(
        self, keys: list[str], n: int, defaults: tuple[int, ...], expiry: list[float], now: float
    ) -> int:
        with self.lock:
            limits = self._get(keys[4], now)
            for i in range(n):
                limit = limits.get(f"l{i + 1}", defaults[i])
                h = self._get(keys[i], now)
                if h.get("usage", 0) + h.get("reserved", 0) >= limit:
                    return i + 1
            for i in range(n):
                h = self._get(keys[i], now)
                h["reserved"] = h.get("reserved", 0) + 1
                self.expiry[keys[i]] = expiry[i]
            return 0

    def settle(
        self,
        keys: list[str],
        n: int,
        report: Report | None,
        expiry: list[float],
        now: float,
        counted: bool,
    ) -> None:
        with self.lock:
            for i in range(4):
                reported = report.usage[i] if report else -1
                h = self._get(keys[i], now)
                usage, reserved = h.get("usage", 0), h.get("reserved", 0)
                if i < n and reserved > 0:
                    reserved -= 1
                    if reported < 0 and counted:
                        usage += 1
                usage = max(usage, reported)
                if reported >= 0 or i < n:
                    h["usage"], h["reserved"] = usage, reserved
                    self.expiry[keys[i]] = expiry[i]
            if report is not None:
                limits = self._get(keys[4], now)
                for i, limit in enumerate(report.limits):
                    limits[f"l{i + 1}"] = limit
                limits["reported_at"] = now

    def read(self, keys: list[str], now: float) -> list[dict[str, float]]:
        with self.lock:
            return [dict(self._get(key, now)) for key in keys]


class Budget:
    """One application's Strava budget, shared through Redis when given one."""

    def __init__(
        self,
        application: str,
        *,
        redis_client: redis.Redis | None = None,
        key_prefix: str = "stride:",
        windows: tuple[float, float] = DEFAULT_WINDOWS,
        default_limits: tuple[int, int, int, int] = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.application = application
        self.redis = redis_client
        self.prefix = f"{key_prefix}strava:budget:{application}:"
        self.windows = windows
        self.default_limits = default_limits
        self.clock = clock
        self.local = _LocalStore()
        if redis_client is not None:
            self._reserve_script = redis_client.register_script(_RESERVE)
            self._settle_script = redis_client.register_script(_SETTLE)

    # -- windows and keys ----------------------------------------------------------------------

    def _window_end(self, index: int, now: float) -> float:
        length = self.windows[index % 2]
        return (math.floor(now / length) + 1) * length

    def _keys(self, now: float) -> tuple[list[str], list[float]]:
        keys, ends = [], []
        for index, name in enumerate(COUNTERS):
            length = self.windows[index % 2]
            keys.append(f"{self.prefix}{name}:{math.floor(now / length)}")
            ends.append(self._window_end(index, now))
        keys.append(f"{self.prefix}limits")
        return keys, ends

    # -- the two operations ----------------------------------------------------------------------

    def reserve(self, read: bool = True) -> None:
        """Reserve one request, or raise BudgetExhausted without touching the budget."""
        now = self.clock()
        keys, ends = self._keys(now)
        n = 4 if read else 2
        exhausted = 0
        if self.redis is not None:
            try:
                exhausted = int(
                    self._reserve_script(
                        keys=keys,
                        args=[n, *self.default_limits, *(int(end * 1000) for end in ends)],
                    )
                )
            except redis.RedisError:
                exhausted = self.local.reserve(keys, n, self.default_limits, ends, now)
        else:
            exhausted = self.local.reserve(keys, n, self.default_limits, ends, now)
        if exhausted:
            resume_at = self._resume_at(now, exhausted - 1)
            raise BudgetExhausted(
                f"Strava budget spent ({COUNTERS[exhausted - 1]}); resumes at {resume_at:.0f}",
                resume_at,
            )

    def _resume_at(self, now: float, index: int) -> float:
        """When the exhausted counter's window resets (the daily one, if that is spent too)."""
        resume = self._window_end(index, now)
        snapshot = self.snapshot()
        for counter, name in zip(snapshot.counters, COUNTERS, strict=True):
            if counter.usage + counter.reserved >= counter.limit and name.endswith("long"):
                resume = max(resume, counter.resets_at)
        return resume

    def record(self, headers: Mapping[str, str] | None, *, read: bool = True) -> None:
        """Settle the reservation of a call that got an answer (with or without rate headers)."""
        self._settle(parse_headers(headers) if headers is not None else None, read, counted=True)

    def release(self, *, read: bool = True, counted: bool = True) -> None:
        """Settle the reservation of a call that got no answer: ``counted`` keeps it as usage
        (Strava may have counted it); False gives it back (the request never left)."""
        self._settle(None, read, counted)

    def _settle(self, report: Report | None, read: bool, counted: bool) -> None:
        now = self.clock()
        keys, ends = self._keys(now)
        n = 4 if read else 2
        if self.redis is not None:
            usage = report.usage if report else (-1, -1, -1, -1)
            limits = report.limits if report else (-1, -1, -1, -1)
            try:
                self._settle_script(
                    keys=keys,
                    args=[
                        n,
                        *usage,
                        *(int(end * 1000) for end in ends),
                        *limits,
                        now,
                        "1" if counted else "0",
                    ],
                )
                return
            except redis.RedisError:
                pass
        self.local.settle(keys, n, report, ends, now, counted)

    # -- for health and admin ------------------------------------------------------------------

    def snapshot(self) -> BudgetSnapshot:
        now = self.clock()
        keys, ends = self._keys(now)
        shared = False
        rows: list[dict[str, float]]
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                raw: list[dict[bytes, bytes]] = pipe.execute()
                rows = [{k.decode(): float(v) for k, v in row.items()} for row in raw]
                shared = True
            except redis.RedisError:
                rows = self.local.read(keys, now)
        else:
            rows = self.local.read(keys, now)
        limits = rows[4]
        counters = []
        exhausted_until: float | None = None
        for index, name in enumerate(COUNTERS):
            limit = int(limits.get(f"l{index + 1}", self.default_limits[index]))
            usage = int(rows[index].get("usage", 0))
            reserved = int(rows[index].get("reserved", 0))
            counters.append(CounterState(name, limit, usage, reserved, ends[index]))
            if usage + reserved >= limit:
                exhausted_until = max(exhausted_until or 0.0, ends[index])
        return BudgetSnapshot(shared, tuple(counters), limits.get("reported_at"), exhausted_until)
