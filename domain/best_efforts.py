"""Best efforts: the fastest time over each standard distance anywhere within one activity.

Personal records are the best of these over many activities, so this module only answers the
question for a single activity, from its (elapsed seconds, cumulative distance) samples. It is
pure and cheap (O(n) per distance) because it runs whenever samples are stored.

Decisions, so that every caller gets the same answer:

- **Elapsed time.** The clock keeps running through pauses: a window that contains a stop is
  longer by the stop, as on a race clock (and as Strava's own best efforts count it).
- **Between samples the athlete moves at constant speed.** Distance is interpolated linearly,
  so an effort may start and end between two samples.
- **Missing distances are skipped.** A point whose distance (or time) is None, NaN or
  infinite is dropped; the neighbouring points are joined by a straight line instead.
- **Cumulative distance never decreases.** A GPS glitch where it drops would let the same
  metres count twice; each point's distance is raised to the running maximum so far, which
  turns the glitch into a stop.
- **Times must be in order.** A decreasing time means the caller mixed up its data, so it is
  an error rather than silently sorted; a repeated time keeps its last point (as
  `domain.strava.samples_from_streams` does).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.activities import Sample


class Distance(StrEnum):
    """The standard distances, shortest first, in the order of the API's BestEffortDistance.

    The value is the slug personal record names use (`5k-all`, `mile-2024`).
    """

    FOUR_HUNDRED_M = "400m"
    ONE_K = "1k"
    ONE_MILE = "mile"
    FIVE_K = "5k"
    TEN_K = "10k"
    FIFTEEN_K = "15k"
    TEN_MILE = "10mile"
    HALF_MARATHON = "half"
    THIRTY_K = "30k"
    MARATHON = "marathon"

    @property
    def meters(self) -> float:
        return _METERS[self]


_SAME_TIME = 1e-6  # seconds

_METERS: dict[Distance, float] = {
    Distance.FOUR_HUNDRED_M: 400.0,
    Distance.ONE_K: 1000.0,
    Distance.ONE_MILE: 1609.344,
    Distance.FIVE_K: 5000.0,
    Distance.TEN_K: 10_000.0,
    Distance.FIFTEEN_K: 15_000.0,
    Distance.TEN_MILE: 16_093.44,
    Distance.HALF_MARATHON: 21_097.5,
    Distance.THIRTY_K: 30_000.0,
    Distance.MARATHON: 42_195.0,
}


@dataclass(frozen=True)
class BestEffort:
    """The fastest window over `distance`; offsets are on the samples' own time axis."""

    distance: Distance
    elapsed_seconds: float
    start_offset_seconds: float
    end_offset_seconds: float


def offsets_from_samples(
    start_time: dt.datetime, samples: Iterable[Sample]
) -> list[tuple[float, float | None]]:
    """Stored samples as (seconds since `start_time`, cumulative distance) for `best_efforts`."""
    return [((s.time - start_time).total_seconds(), s.distance_meters) for s in samples]


def best_efforts(
    samples: Sequence[tuple[float, float | None]],
) -> dict[Distance, BestEffort]:
    """The best effort for every standard distance the activity covers (the others are absent).

    `samples` are (elapsed seconds, cumulative distance in metres), in time order; see the
    module's docstring for pauses, missing points and glitches. Raises ValueError when a time
    goes backwards.
    """
    times, dists = _clean(samples)
    if len(times) < 2:
        return {}
    out: dict[Distance, BestEffort] = {}
    for distance in Distance:
        # `_fastest` decides coverage with the same arithmetic as its search: a distance the
        # activity covers only to within a rounding error gets no (infinite) effort.
        effort = _fastest(times, dists, distance)
        if effort is not None:
            out[distance] = effort
    return out


def _clean(samples: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[float]]:
    times: list[float] = []
    dists: list[float] = []
    for t, d in samples:
        if d is None or not (math.isfinite(t) and math.isfinite(d)):
            continue
        if times and t <= times[-1]:
            if t < times[-1]:
                raise ValueError(f"sample times must not decrease: {t} after {times[-1]}")
            times.pop()  # a repeated time keeps its last point
            dists.pop()
        times.append(float(t))
        dists.append(max(float(d), dists[-1]) if dists else float(d))
    return times, dists


def _fastest(times: list[float], dists: list[float], distance: Distance) -> BestEffort | None:
    """Two pointers: an optimal window has a sample at its start or at its end.

    Within a pair of segments both edges move linearly, so the window's length is linear in
    where it starts and is smallest at a segment boundary. Hence two passes: each sample as the
    start (the end is the first moment the distance is reached) and each sample as the end (the
    start is the last moment the athlete was `distance` behind). Both pointers only advance.

    On a steady pace every window is equally fast but rounding makes some a hair shorter, so
    windows within a microsecond of each other count as equal and the earliest is kept: the
    answer stays stable and is the one an athlete expects. Plain locals, no objects per
    candidate: this loop is the whole cost.
    """
    length = distance.meters
    n = len(times)
    best, best_start, best_end = math.inf, 0.0, 0.0

    j = 1  # first index with dists[j] >= target, so dists[j - 1] < target <= dists[j]
    for i in range(n):
        target = dists[i] + length
        if target > dists[-1]:
            break
        j = max(j, i + 1)
        while dists[j] < target:
            j += 1
        fraction = (target - dists[j - 1]) / (dists[j] - dists[j - 1])
        end = times[j - 1] + fraction * (times[j] - times[j - 1])
        if end - times[i] < best - _SAME_TIME:  # starts only get later in this pass
            best, best_start, best_end = end - times[i], times[i], end

    i = 0  # last index with dists[i] <= target, so dists[i] <= target < dists[i + 1]
    for j in range(n):
        target = dists[j] - length
        if target < dists[0]:
            continue
        while dists[i + 1] <= target:
            i += 1
        fraction = (target - dists[i]) / (dists[i + 1] - dists[i])
        start = times[i] + fraction * (times[i + 1] - times[i])
        elapsed = times[j] - start
        if elapsed < best - _SAME_TIME or (elapsed <= best + _SAME_TIME and start < best_start):
            best, best_start, best_end = elapsed, start, times[j]

    if not math.isfinite(best):
        return None  # no window covers the distance
    return BestEffort(distance, best, best_start, best_end)
