"""Derived metrics: what an activity's samples say about it as a whole.

Imported files carry samples but rarely trustworthy totals, and synced activities sometimes
lack a total (no moving time, no elevation gain), so one pure function computes every total
from samples and `fill_measurements` fills only what a source left empty. Decisions:

- **Cleaning.** As in `domain.best_efforts`: a decreasing time is the caller's bug
  (ValueError), a repeated time keeps its last sample, and cumulative device distance is
  raised to its running maximum so a glitch where it drops becomes a stop, not double metres.
- **Distance.** The device's cumulative distance (wheel sensor, foot pod, the device's own
  filtered GPS) when at least two samples carry it and its total is plausible: positive and,
  when positions exist too, within a factor of two of the geodesic total (a stuck or
  mis-scaled sensor falls back to positions). Otherwise the geodesic sum of positions.
  Total = last - first cumulative value (a cropped file starts at its own first sample).
- **Geodesic distance.** Haversine on a sphere of the mean Earth radius (6,371,008.8 m).
  Against the WGS-84 ellipsoid it errs by at most about 0.6 %: north-south legs read 0.56 %
  long at the equator and 0.45 % short near the poles, 0.06 % long at 45 degrees; east-west
  legs err less. That is within the spread of GPS tracks themselves, and unlike Vincenty's
  iteration it is cheap and cannot fail to converge.
- **Recording gaps.** A device does not count distance while its timer is stopped, but a
  GPX or TCX without distance shows the stop only as a long interval between two points
  far apart. An interval longer than `RECORDING_GAP_FACTOR` times the recording's usual
  (median) interval, and at least `RECORDING_GAP_FLOOR_SECONDS`, is such a gap: it counts
  the distance of one usual interval at the speed right after it (devices count from the
  moment they resume), not the straight line across it. On the real Edge 1000 ride (a 32 s
  stop while rolling at 7.5 m/s) the GPX then reads 661 m where the device said 662 m,
  instead of 899 m. Smart recording (1 to 10 s intervals) and the distance-triggered
  logging of handhelds (a point every ~10 m: up to 8 times the median interval on a slow
  climb, in the real GPSBabel file) stay well below the factor of 20.
- **Moving time.** An interval between two samples is moving unless it is a gap longer than
  `MAX_GAP_SECONDS` (the device stopped recording: auto-pause, a timer stop) or part of a
  sustained stop: a run of consecutive intervals below `MIN_MOVING_SPEED`, together at least
  `MIN_PAUSE_SECONDS` long (standing still with the recorder on). Shorter slow stretches
  count as moving, so a device whose distance skips an update, or a two-second hesitation,
  is not a pause, while a stop's edges are exact to the sample. The same thresholds serve
  every sport: 0.5 m/s is below any walking pace and any cycling or skiing that moves, and a
  cyclist at a red light is still stopped. Without distance or positions only gaps are pauses.
  Not handled: the jitter of a stationary GPS with positions only (no device distance) reads
  as slow movement; devices filter it out of their own distance, which is preferred.
- **Elevation.** First, a step faster than `MAX_VERTICAL_SPEED` (10 m/s, beyond any climb,
  ski descent or lift) is a sensor jump, not terrain: a barometer settling after power-on
  (one real file climbs 1,000 m in its first five seconds) or a new GPS altitude fix; the
  rest of the profile is shifted so the jump counts as neither gain nor loss. Then altitude
  is smoothed by a centred moving average over `ELEVATION_SMOOTHING_SECONDS` and climbs are
  counted with a hysteresis of `ELEVATION_HYSTERESIS_METERS`: a change of direction counts
  only once the altitude has moved that far from the last turning point. The average removes
  sample-to-sample noise, the hysteresis removes slow wander, so a flat course with +-3 m
  noise gains ~0 m while a real climb is counted in full, except that a sharp summit (and
  valley) is rounded off by about slope x window / 4: 0.75 m on a 10 % climb at 1 m/s.
- **Averages.** Time-weighted: each value holds from its sample until the next one (zero-
  order hold), so an irregular recording (smart recording, 1 s then 10 s) is not biased
  towards the densely sampled stretches. Gaps longer than `MAX_GAP_SECONDS` carry no weight
  (nothing was recorded). Heart rate counts all recorded time (the heart works during a stop);
  cadence and power count moving time only (a stop would drag them towards zero). Power
  keeps zeros while moving (coasting is part of the ride's work, and energy = average power
  x moving time stays true); cadence drops zeros (a coasting cyclist has no cadence to
  average). Maximum heart rate and maximum power are the highest readings, as devices and
  Strava report them (a single spike is the sensor's word, not smoothed away).
- **Speed.** Average = distance / moving time. Maximum = the highest median of
  `MAX_SPEED_MEDIAN_OF` consecutive interval speeds, so a single GPS spike (which inflates
  the interval into and out of a bad point) cannot be the maximum.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from domain.activities import Measurements, Sample

EARTH_RADIUS_METERS = 6_371_008.8  # IUGG mean radius
MAX_GAP_SECONDS = 60.0  # longer than any smart-recording interval; auto-pause leaves these
MIN_PAUSE_SECONDS = 10.0
MIN_MOVING_SPEED = 0.5  # m/s, 1.8 km/h: below the slowest walk
ELEVATION_SMOOTHING_SECONDS = 30.0
ELEVATION_HYSTERESIS_METERS = 3.0
MAX_VERTICAL_SPEED = 10.0  # m/s: beyond any climb, ski descent or lift
MAX_SPEED_MEDIAN_OF = 5
_PLAUSIBLE_RATIO = 2.0
RECORDING_GAP_FACTOR = 20.0
RECORDING_GAP_FLOOR_SECONDS = 15.0

_T = TypeVar("_T", bound=float | None)


@dataclass(frozen=True)
class SampleSummary:
    """Totals derived from samples; None where the samples do not carry the channel."""

    start_time: dt.datetime
    elapsed: dt.timedelta
    moving: dt.timedelta
    distance_meters: float | None = None
    # "device" or "geodesic"; None without distance.
    distance_source: str | None = None
    elevation_gain_meters: float | None = None
    elevation_loss_meters: float | None = None
    average_heart_rate_bpm: float | None = None
    max_heart_rate_bpm: float | None = None
    average_cadence_rpm: float | None = None
    average_power_watts: float | None = None
    max_power_watts: float | None = None
    max_speed_meters_per_second: float | None = None
    average_speed_meters_per_second: float | None = None


def haversine_meters(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean-radius sphere (see the module docstring's error)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_METERS * math.asin(min(1.0, math.sqrt(h)))


def geodesic_distance(samples: Sequence[Sample]) -> list[float | None]:
    """Cumulative metres along the positions, one per sample; None where a sample has no
    (finite) position. A point without position is skipped: the next positioned point is
    measured from the last one that had a position."""
    out: list[float | None] = []
    total = 0.0
    last: tuple[float, float] | None = None
    for s in samples:
        lat, lon = s.latitude, s.longitude
        if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
            out.append(None)
            continue
        if last is not None:
            total += haversine_meters(last[0], last[1], lat, lon)
        last = (lat, lon)
        out.append(total)
    return out


def summarize(samples: Sequence[Sample]) -> SampleSummary:
    """Every total the samples support; see the module docstring for the methods.

    Raises ValueError without samples or when a time goes backwards.
    """
    clean = _clean(samples)
    if not clean:
        raise ValueError("no samples to summarize")
    t0 = clean[0].time
    times = [(s.time - t0).total_seconds() for s in clean]
    dists, source = _distances(clean, times)
    moving = _moving_flags(times, dists)
    moving_seconds = sum(times[i] - times[i - 1] for i in range(1, len(times)) if moving[i - 1])
    distance = dists[-1] - dists[0] if dists is not None else None
    gain, loss = _elevation(times, [s.altitude_meters for s in clean])
    heart = [s.heart_rate_bpm for s in clean]
    power = [s.power_watts for s in clean]
    recorded = [times[i] - times[i - 1] <= MAX_GAP_SECONDS for i in range(1, len(times))]
    return SampleSummary(
        start_time=t0,
        elapsed=clean[-1].time - t0,
        moving=dt.timedelta(seconds=moving_seconds),
        distance_meters=distance,
        distance_source=source,
        elevation_gain_meters=gain,
        elevation_loss_meters=loss,
        average_heart_rate_bpm=_time_weighted(times, heart, recorded),
        max_heart_rate_bpm=max((float(h) for h in heart if h is not None), default=None),
        average_cadence_rpm=_time_weighted(
            times, [c if c else None for c in (s.cadence_rpm for s in clean)], moving
        ),
        average_power_watts=_time_weighted(times, power, moving),
        max_power_watts=max((float(p) for p in power if p is not None), default=None),
        max_speed_meters_per_second=_max_speed(times, dists),
        average_speed_meters_per_second=(
            distance / moving_seconds if distance is not None and moving_seconds > 0 else None
        ),
    )


def fill_measurements(measurements: Measurements, summary: SampleSummary) -> Measurements:
    """`measurements` with the fields its source left empty (None or 0) taken from
    `summary`; a value the source gave is never overwritten, even where samples disagree
    (the source may know better, e.g. a device's barometric gain).

    Filled: elapsed and moving time, distance, elevation gain and loss, average and maximum
    heart rate, average cadence, average and maximum power, average and maximum speed. Not
    the start time or time zone: those place the activity and are always the source's."""
    m = measurements
    elapsed = m.elapsed if m.elapsed > dt.timedelta(0) else summary.elapsed
    return dataclasses.replace(
        m,
        elapsed=elapsed,
        # Moving time never exceeds elapsed time, whichever of them the source gave.
        moving=m.moving or (min(summary.moving, elapsed) if summary.moving else m.moving),
        distance_meters=_given(m.distance_meters, summary.distance_meters),
        elevation_gain_meters=_given(m.elevation_gain_meters, summary.elevation_gain_meters),
        average_heart_rate_bpm=_given(m.average_heart_rate_bpm, summary.average_heart_rate_bpm),
        max_heart_rate_bpm=_given(m.max_heart_rate_bpm, summary.max_heart_rate_bpm),
        elevation_loss_meters=_given(m.elevation_loss_meters, summary.elevation_loss_meters),
        average_cadence_rpm=_given(m.average_cadence_rpm, summary.average_cadence_rpm),
        average_power_watts=_given(m.average_power_watts, summary.average_power_watts),
        max_power_watts=_given(m.max_power_watts, summary.max_power_watts),
        average_speed_meters_per_second=_given(
            m.average_speed_meters_per_second, summary.average_speed_meters_per_second
        ),
        max_speed_meters_per_second=_given(
            m.max_speed_meters_per_second, summary.max_speed_meters_per_second
        ),
    )


def fill_from_samples(measurements: Measurements, samples: Sequence[Sample]) -> Measurements:
    """`fill_measurements` with the summary of `samples`; `measurements` unchanged when
    there is nothing to summarize (no samples, or times that go backwards)."""
    try:
        summary = summarize(samples)
    except ValueError:
        return measurements
    return fill_measurements(measurements, summary)


def _given(given: _T, derived: float | None) -> _T | float:
    """The source's value unless it is empty (None or 0) and the samples have one."""
    return given if given or not derived else derived


def _clean(samples: Sequence[Sample]) -> list[Sample]:
    out: list[Sample] = []
    for s in samples:
        if out and s.time <= out[-1].time:
            if s.time < out[-1].time:
                raise ValueError(f"sample times must not decrease: {s.time} after {out[-1].time}")
            out.pop()  # a repeated time keeps its last sample
        out.append(s)
    return out


def _fill_forward(values: list[float | None]) -> list[float] | None:
    """Cumulative values with gaps held at the last value (a stop until the next reading),
    never decreasing; None with fewer than two readings."""
    if sum(v is not None for v in values) < 2:
        return None
    first = next(v for v in values if v is not None)
    out: list[float] = []
    current = first
    for v in values:
        if v is not None and v > current:
            current = v
        out.append(current)
    return out


def _distances(samples: list[Sample], times: list[float]) -> tuple[list[float] | None, str | None]:
    device = _fill_forward(
        [
            d if d is not None and math.isfinite(d) and d >= 0 else None
            for d in (s.distance_meters for s in samples)
        ]
    )
    geodesic = _fill_forward(geodesic_distance(samples))
    if geodesic is not None:
        geodesic = _bridge_recording_gaps(times, geodesic)
    if device is not None:
        total = device[-1] - device[0]
        if total > 0 and (
            geodesic is None
            or (geo := geodesic[-1] - geodesic[0]) <= 0
            or 1 / _PLAUSIBLE_RATIO <= total / geo <= _PLAUSIBLE_RATIO
        ):
            return device, "device"
    if geodesic is not None:
        return geodesic, "geodesic"
    return None, None


def _bridge_recording_gaps(times: list[float], cumulative: list[float]) -> list[float]:
    """`cumulative` with each recording gap counted as one usual interval at the speed after
    it (see the module docstring)."""
    spans = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    if not spans:
        return cumulative
    usual = spans[len(spans) // 2]
    threshold = max(RECORDING_GAP_FLOOR_SECONDS, RECORDING_GAP_FACTOR * usual)
    out = [cumulative[0]]
    for i in range(1, len(times)):
        step = cumulative[i] - cumulative[i - 1]
        if times[i] - times[i - 1] > threshold:
            after = 0.0
            if i + 1 < len(times) and times[i + 1] > times[i]:
                after = (cumulative[i + 1] - cumulative[i]) / (times[i + 1] - times[i])
            step = min(step, after * usual)
        out.append(out[-1] + step)
    return out


def _moving_flags(times: list[float], dists: list[float] | None) -> list[bool]:
    """One flag per interval (i-1, i): see the module docstring."""
    n = len(times)
    flags: list[bool] = []
    gaps: list[bool] = []
    for i in range(1, n):
        span = times[i] - times[i - 1]
        gaps.append(span > MAX_GAP_SECONDS)
        if gaps[-1]:
            flags.append(False)
        else:
            flags.append(dists is None or dists[i] - dists[i - 1] >= MIN_MOVING_SPEED * span)
    # A slow stretch shorter than MIN_PAUSE_SECONDS is not a pause: it is moving after all.
    start = 0
    while start < len(flags):
        if flags[start] or gaps[start]:
            start += 1
            continue
        end = start
        while end + 1 < len(flags) and not flags[end + 1] and not gaps[end + 1]:
            end += 1
        if times[end + 1] - times[start] < MIN_PAUSE_SECONDS:
            flags[start : end + 1] = [True] * (end + 1 - start)
        start = end + 1
    return flags


def _elevation(
    times: list[float], altitudes: list[float | None]
) -> tuple[float | None, float | None]:
    points: list[tuple[float, float]] = []
    offset = 0.0  # what sensor jumps have added so far, taken back out
    for t, a in zip(times, altitudes, strict=True):
        if a is None or not math.isfinite(a):
            continue
        if points:
            step = a - offset - points[-1][1]
            if abs(step) > MAX_VERTICAL_SPEED * (t - points[-1][0]):
                offset += step
        points.append((t, a - offset))
    if len(points) < 2:
        return None, None
    # Centred moving average over a time window, with prefix sums and two pointers: O(n).
    half = ELEVATION_SMOOTHING_SECONDS / 2
    prefix = [0.0]
    for _, a in points:
        prefix.append(prefix[-1] + a)
    lo = hi = 0
    smooth: list[float] = []
    for t, _ in points:
        while points[lo][0] < t - half:
            lo += 1
        while hi < len(points) and points[hi][0] <= t + half:
            hi += 1
        smooth.append((prefix[hi] - prefix[lo]) / (hi - lo))
    gain = loss = 0.0
    ref = smooth[0]  # the last turning point (or the start)
    direction = 0  # +1 climbing, -1 descending, 0 not yet known
    for a in smooth[1:]:
        up = a - ref
        if (direction > 0 and up > 0) or (direction <= 0 and up >= ELEVATION_HYSTERESIS_METERS):
            gain += up
            ref, direction = a, 1
        elif (direction < 0 and up < 0) or (direction >= 0 and -up >= ELEVATION_HYSTERESIS_METERS):
            loss -= up
            ref, direction = a, -1
    return gain, loss


def _time_weighted(
    times: list[float], values: Sequence[float | None], counted: list[bool]
) -> float | None:
    """Average of `values`, each held until the next sample, over the intervals `counted`
    marks; the plain mean when no interval carries weight (a single sample)."""
    total = weight = 0.0
    for i in range(1, len(times)):
        v = values[i - 1]
        if v is not None and counted[i - 1]:
            w = times[i] - times[i - 1]
            total += v * w
            weight += w
    if weight > 0:
        return total / weight
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _max_speed(times: list[float], dists: list[float] | None) -> float | None:
    if dists is None or len(times) < 2:
        return None
    speeds = [(dists[i] - dists[i - 1]) / (times[i] - times[i - 1]) for i in range(1, len(times))]
    n = min(MAX_SPEED_MEDIAN_OF, len(speeds))
    if n % 2 == 0:
        n -= 1  # an odd window has a true median, itself one of the speeds
    return max(sorted(speeds[i : i + n])[n // 2] for i in range(len(speeds) - n + 1))
