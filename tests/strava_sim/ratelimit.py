"""Strava's rate limits with real window accounting.

Four counters per application: overall and read ("non-upload"; every endpoint the simulator
serves is one), each over a short (15-minute) and a long (daily) window. Windows are aligned
to the epoch, so 900-second windows reset at :00, :15, :30 and :45 and daily ones at midnight
UTC. Every counted request is counted before it is judged, so rejected requests count too
(Strava: "requests violating the short term limit will still count toward the long term
limit"), and usage can exceed the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.strava_sim.config import SimConfig


@dataclass
class _Counter:
    window: int = -1
    count: int = 0


@dataclass(frozen=True)
class Verdict:
    limited: bool
    headers: dict[str, str]


class RateLimiter:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.overall = config.overall_limits
        self.read = config.read_limits
        self.windows = (config.short_window, config.long_window)
        self.enabled = config.rate_limits_enabled
        self._lock = threading.Lock()
        self._counters = {key: _Counter() for key in ("overall0", "overall1", "read0", "read1")}

    def configure(
        self,
        overall: tuple[int, int] | None = None,
        read: tuple[int, int] | None = None,
        short_window: float | None = None,
        long_window: float | None = None,
        enabled: bool | None = None,
    ) -> None:
        """Change limits or windows at run time (usage is kept; :meth:`reset` clears it)."""
        with self._lock:
            self.overall = overall or self.overall
            self.read = read or self.read
            self.windows = (short_window or self.windows[0], long_window or self.windows[1])
            if enabled is not None:
                self.enabled = enabled

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        for counter in self._counters.values():
            counter.window, counter.count = -1, 0

    def _current(self, key: str, now: float) -> _Counter:
        counter = self._counters[key]
        window = math.floor(now / self.windows[int(key[-1])])
        if counter.window != window:
            counter.window, counter.count = window, 0
        return counter

    def _usage(self, prefix: str, now: float) -> tuple[int, int]:
        return self._current(prefix + "0", now).count, self._current(prefix + "1", now).count

    def _headers(self, now: float) -> dict[str, str]:
        overall = self._usage("overall", now)
        read = self._usage("read", now)
        return {
            "X-RateLimit-Limit": f"{self.overall[0]},{self.overall[1]}",
            "X-RateLimit-Usage": f"{overall[0]},{overall[1]}",
            "X-ReadRateLimit-Limit": f"{self.read[0]},{self.read[1]}",
            "X-ReadRateLimit-Usage": f"{read[0]},{read[1]}",
        }

    def hit(self, is_read: bool = True) -> Verdict:
        """Count one request and say whether it is over a limit."""
        with self._lock:
            now = self.clock()
            prefixes = ("overall", "read") if is_read else ("overall",)
            for prefix in prefixes:
                for span in "01":
                    self._current(prefix + span, now).count += 1
            overall = self._usage("overall", now)
            read = self._usage("read", now)
            over = overall[0] > self.overall[0] or overall[1] > self.overall[1]
            if is_read:
                over = over or read[0] > self.read[0] or read[1] > self.read[1]
            return Verdict(self.enabled and over, self._headers(now))

    def peek(self) -> dict[str, str]:
        with self._lock:
            return self._headers(self.clock())

    def state(self) -> dict[str, object]:
        """Usage, limits and when each window resets (epoch seconds), for the control API."""
        with self._lock:
            now = self.clock()
            resets = [(math.floor(now / length) + 1) * length for length in self.windows]
            return {
                "enabled": self.enabled,
                "windows": list(self.windows),
                "overall": {
                    "limit": list(self.overall),
                    "usage": list(self._usage("overall", now)),
                },
                "read": {"limit": list(self.read), "usage": list(self._usage("read", now))},
                "resets_at": resets,
            }
