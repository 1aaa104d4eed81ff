"""A circuit breaker around Strava, shared by every worker through Redis.

Closed: calls go through; ``threshold`` consecutive failures (5xx, timeouts, connection
errors) open it. Open: no call is made (CircuitOpen with the time it may be tried again) until
``cooldown`` seconds passed; then the first caller takes the single half-open trial (others
keep being refused). The trial's success closes the circuit, its failure opens it again for
another cool-down. A trial whose caller vanished expires after ``trial_timeout`` seconds.
Without Redis (or while it fails) the state is kept in this process with the same rules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from tasks.strava.errors import CircuitOpen

# KEYS[1]: the hash; ARGV: now, cooldown, trial_timeout. Returns {allowed, retry_at}.
_ACQUIRE = """
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'trial_until')
local state = h[1] or 'closed'
local now = tonumber(ARGV[1])
if state == 'closed' then return {1, '0'} end
if state == 'open' then
  local retry = tonumber(h[2]) + tonumber(ARGV[2])
  if now < retry then return {0, tostring(retry)} end
elseif now < tonumber(h[3]) then
  return {0, h[3]}
end
local trial_until = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'trial_until', trial_until)
return {1, '0'}
"""

# ARGV: now, threshold. Returns the state afterwards.
_FAIL = """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures')
local state = h[1] or 'closed'
local failures = (tonumber(h[2]) or 0) + 1
redis.call('HSET', KEYS[1], 'failures', failures, 'last_failure_at', ARGV[1])
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
  state = 'open'
end
return state
"""


@dataclass(frozen=True)
class CircuitSnapshot:
    shared: bool
    state: str  # closed | open | half_open
    failures: int  # consecutive
    opened_at: float | None
    retry_at: float | None  # when an open circuit allows a trial call

    def as_dict(self) -> dict[str, Any]:
        return {
            "shared": self.shared,
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "retry_at": self.retry_at,
        }


class CircuitBreaker:
    def __init__(
        self,
        application: str,
        *,
        redis_client: redis.Redis | None = None,
        key_prefix: str = "stride:",
        threshold: int = 5,
        cooldown: float = 30.0,
        trial_timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = f"{key_prefix}strava:circuit:{application}"
        self.redis = redis_client
        self.threshold = threshold
        self.cooldown = cooldown
        self.trial_timeout = trial_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, Any] = {"state": "closed", "failures": 0}
        if redis_client is not None:
            self._acquire_script = redis_client.register_script(_ACQUIRE)
            self._fail_script = redis_client.register_script(_FAIL)

    def before_call(self) -> None:
        """Return when a call may be made; raise CircuitOpen otherwise."""
        now = self.clock()
        if self.redis is not None:
            try:
                allowed, retry = self._acquire_script(
                    keys=[self.key], args=[now, self.cooldown, self.trial_timeout]
                )
                if not int(allowed):
                    self._refuse(float(retry))
                return
            except redis.RedisError:
                pass
        with self._lock:
            state = self._local
            if state["state"] == "closed":
                return
            if state["state"] == "open":
                retry_at = state["opened_at"] + self.cooldown
                if now < retry_at:
                    self._refuse(retry_at)
            elif now < state["trial_until"]:
                self._refuse(state["trial_until"])
            state["state"], state["trial_until"] = "half_open", now + self.trial_timeout

    @staticmethod
    def _refuse(retry_at: float) -> None:
        raise CircuitOpen(f"Strava circuit open until {retry_at:.0f}", retry_at)

    def success(self) -> None:
        if self.redis is not None:
            try:
                self.redis.hset(self.key, mapping={"state": "closed", "failures": 0})
                return
            except redis.RedisError:
                pass
        with self._lock:
            self._local.update(state="closed", failures=0)

    def failure(self) -> None:
        now = self.clock()
        if self.redis is not None:
            try:
                self._fail_script(keys=[self.key], args=[now, self.threshold])
                return
            except redis.RedisError:
                pass
        with self._lock:
            state = self._local
            state["failures"] += 1
            if state["state"] == "half_open" or (
                state["state"] == "closed" and state["failures"] >= self.threshold
            ):
                state.update(state="open", opened_at=now)

    def snapshot(self) -> CircuitSnapshot:
        raw: dict[str, Any] = {}
        shared = False
        if self.redis is not None:
            try:
                found: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
                raw = {k.decode(): v.decode() for k, v in found.items()}
                shared = True
            except redis.RedisError:
                pass
        if not shared:
            with self._lock:
                raw = dict(self._local)
        state = str(raw.get("state", "closed"))
        opened_at = float(raw["opened_at"]) if raw.get("opened_at") is not None else None
        retry_at: float | None = None
        if state == "open" and opened_at is not None:
            retry_at = opened_at + self.cooldown
        elif state == "half_open" and raw.get("trial_until") is not None:
            retry_at = float(raw["trial_until"])
        return CircuitSnapshot(
            shared, state, int(float(raw.get("failures", 0))), opened_at, retry_at
        )
