"""Retry delays: exponential backoff with full jitter.

Huey's own `retry_delay` (and `retry_backoff`) waits the same computed time on every
worker, so tasks that failed together (Strava down, the database restarting) all come back
together. Full jitter spreads them: after the n-th failed attempt a task waits a uniformly
random time in [0, min(cap, base * 2**(n-1))] (the "Full Jitter" of the AWS Architecture
Blog's "Exponential Backoff and Jitter"), which keeps the expected load on the recovering
dependency low while bounding the worst wait by `cap`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 2**62 seconds is far beyond any cap; a larger exponent would only overflow a float.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Backoff:
    """`base` seconds is the ceiling after the first failure; it doubles per failure up to
    `cap` seconds."""

    base: float = 2.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def ceiling(self, failures: int) -> float:
        """The longest wait after `failures` (>= 1) failed attempts."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        return float(min(self.cap, self.base * 2 ** min(failures - 1, _MAX_EXPONENT)))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """A random wait in [0, ceiling(failures)]."""
        return (rng or _RNG).uniform(0.0, self.ceiling(failures))


_RNG = random.Random()
DEFAULT_BACKOFF = Backoff()
