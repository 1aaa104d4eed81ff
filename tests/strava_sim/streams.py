"""Sample streams derived from an activity's plan, and what Strava derives from streams.

Generated lazily (and cached by the server): a one-hour activity at 1 Hz is 3,601 samples per
channel. Everything is seeded from the activity, so the same activity always yields the same
streams.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tests.strava_sim.world import RIDE_SPORTS, RUN_SPORTS, Activity

# Strava's order of stream types in a list-form response (see the recorded 2014 response).
STREAM_ORDER = (
    "latlng",
    "time",
    "distance",
    "altitude",
    "heartrate",
    "cadence",
    "watts",
    "temp",
    "grade_smooth",
    "moving",
    "velocity_smooth",
)
ALL_STREAM_TYPES = frozenset(STREAM_ORDER)


@dataclass
class Streams:
    """Every channel an activity recorded, index-aligned."""

    time: list[int]
    distance: list[float]
    moving: list[bool]
    velocity_smooth: list[float]
    latlng: list[list[float]] | None
    altitude: list[float] | None
    grade_smooth: list[float] | None
    heartrate: list[int] | None
    cadence: list[int] | None
    watts: list[int] | None
    temp: list[int] | None

    def available(self) -> dict[str, Sequence[object]]:
        """The recorded channels by stream type, in Strava's order."""
        channels: dict[str, Sequence[object] | None] = {
            "latlng": self.latlng,
            "time": self.time,
            "distance": self.distance,
            "altitude": self.altitude,
            "heartrate": self.heartrate,
            "cadence": self.cadence,
            "watts": self.watts,
            "temp": self.temp,
            "grade_smooth": self.grade_smooth,
            "moving": self.moving,
            "velocity_smooth": self.velocity_smooth,
        }
        return {name: data for name, data in channels.items() if data is not None}

    def __len__(self) -> int:
        return len(self.time)


def generate(activity: Activity, step: int) -> Streams:
    """The activity's streams, one sample every ``step`` seconds of elapsed time."""
    rng = random.Random(activity.stream_seed)
    elapsed = activity.elapsed_time
    times = list(range(0, elapsed + 1, step))
    if times[-1] != elapsed:
        times.append(elapsed)
    n = len(times)

    moving = [True] * n
    for offset, duration in activity.pauses:
        lo = bisect.bisect_right(times, offset)
        hi = bisect.bisect_right(times, offset + duration)
        for i in range(lo, hi):
            moving[i] = False
    moving[0] = False  # Strava marks the first sample as not moving

    avg = activity.distance / activity.moving_time
    ride = activity.sport_type in RIDE_SPORTS
    slow_amp = 0.09 if ride else 0.05
    fast_amp = 0.05 if ride else 0.025
    slow = 2 * math.pi * step / rng.uniform(400, 1100)
    fast = 2 * math.pi * step / rng.uniform(45, 140)
    cs, ss = math.cos(slow), math.sin(slow)
    cf, sf = math.cos(fast), math.sin(fast)
    phase_s = rng.uniform(0, 2 * math.pi)
    phase_f = rng.uniform(0, 2 * math.pi)
    xs, ys = math.cos(phase_s), math.sin(phase_s)
    xf, yf = math.cos(phase_f), math.sin(phase_f)
    cap = activity.max_speed * 0.995 if activity.max_speed else avg * 1.5
    noise = 0.0
    keep = 0.9 ** (step**0.5)
    gauss = rng.gauss
    speeds = [0.0] * n
    for i in range(1, n):
        xs, ys = xs * cs - ys * ss, xs * ss + ys * cs
        xf, yf = xf * cf - yf * sf, xf * sf + yf * cf
        noise = noise * keep + gauss(0.0, 0.035)
        if moving[i]:
            warm = 0.85 + 0.15 * min(1.0, times[i] / 240)
            v = avg * warm * (1 + slow_amp * ys + fast_amp * yf + noise)
            speeds[i] = min(max(v, 0.2 * avg), cap)

    distance = [0.0] * n
    total = 0.0
    for i in range(1, n):
        total += speeds[i] * (times[i] - times[i - 1])
        distance[i] = total
    factor = activity.distance / total if total else 0.0
    distance = [round(d * factor, 1) for d in distance]
    distance[-1] = round(activity.distance, 1)
    velocity = [round(min(v * factor, cap), 2) for v in speeds]

    latlng: list[list[float]] | None = None
    altitude: list[float] | None = None
    grade: list[float] | None = None
    if activity.waypoints:
        latlng, altitude = _follow(activity, distance)
        grade = _grades(distance, altitude, max(1, round(10 / step)))

    heartrate = (
        _heartrate(activity, rng, times, speeds, avg, grade, step)
        if activity.has_heartrate
        else None
    )
    cadence = _cadence(activity, rng, moving, grade) if activity.average_cadence else None
    watts = (
        _watts(activity, rng, moving, speeds, avg, grade, cadence)
        if activity.average_watts
        else None
    )
    temp = None
    if activity.average_temp is not None:
        base = activity.average_temp
        temp = [
            base + (1 if (i * 7919) % n < n // 5 else 0) - (1 if i > 2 * n // 3 else 0)
            for i in range(n)
        ]
    return Streams(
        time=times,
        distance=distance,
        moving=moving,
        velocity_smooth=velocity,
        latlng=latlng,
        altitude=altitude,
        grade_smooth=grade,
        heartrate=heartrate,
        cadence=cadence,
        watts=watts,
        temp=temp,
    )


def _follow(activity: Activity, distance: list[float]) -> tuple[list[list[float]], list[float]]:
    """Positions and altitudes along the planned route, interpolated by distance."""
    points = activity.waypoints
    cumulative = [0.0]
    for (lat_a, lng_a, _), (lat_b, lng_b, _) in itertools.pairwise(points):
        dy = (lat_b - lat_a) * 111_320.0
        dx = (lng_b - lng_a) * 111_320.0 * math.cos(math.radians(lat_a))
        cumulative.append(cumulative[-1] + math.hypot(dx, dy))
    scale = cumulative[-1] / activity.distance if activity.distance else 1.0
    latlng: list[list[float]] = []
    altitude: list[float] = []
    j = 0
    last = len(points) - 1
    for d in distance:
        target = d * scale
        while j < last - 1 and cumulative[j + 1] < target:
            j += 1
        span = cumulative[j + 1] - cumulative[j]
        frac = min(1.0, max(0.0, (target - cumulative[j]) / span)) if span else 0.0
        lat_a, lng_a, alt_a = points[j]
        lat_b, lng_b, alt_b = points[j + 1]
        latlng.append(
            [round(lat_a + (lat_b - lat_a) * frac, 6), round(lng_a + (lng_b - lng_a) * frac, 6)]
        )
        altitude.append(round(alt_a + (alt_b - alt_a) * frac, 1))
    latlng[0] = [points[0][0], points[0][1]]
    latlng[-1] = [points[-1][0], points[-1][1]]
    altitude[0], altitude[-1] = points[0][2], points[-1][2]
    return latlng, altitude


def _grades(distance: list[float], altitude: list[float], window: int) -> list[float]:
    grades = [0.0] * len(distance)
    previous = 0.0
    for i in range(1, len(distance)):
        k = max(0, i - window)
        run = distance[i] - distance[k]
        if run >= 1.0:
            previous = round(max(-40.0, min(40.0, (altitude[i] - altitude[k]) / run * 100)), 1)
        grades[i] = previous
    return grades


def _heartrate(
    activity: Activity,
    rng: random.Random,
    times: list[int],
    speeds: list[float],
    avg_speed: float,
    grade: list[float] | None,
    step: int,
) -> list[int]:
    target = activity.average_heartrate
    peak = activity.max_heartrate
    start_gap = rng.uniform(25, 40)
    decay = math.exp(-step / 150.0)
    drift = rng.uniform(2, 9)
    end = times[-1] or 1
    raw = []
    gap = start_gap
    noise = 0.0
    for i, t in enumerate(times):
        effort = (speeds[i] / avg_speed - 1) * 18 if speeds[i] else -8.0
        climb = grade[i] * 0.9 if grade is not None else 0.0
        noise = noise * 0.85 + rng.gauss(0.0, 0.9)
        raw.append(target - gap + drift * t / end + effort + climb + noise)
        gap *= decay
    floor = max(50, round(target - 55))
    top = round(peak)
    shift = target - sum(raw) / len(raw)
    values: list[int] = []
    for _ in range(4):  # clipping moves the mean: shift again until it sits on the target
        values = [max(floor, min(top, round(v + shift))) for v in raw]
        shift += target - sum(values) / len(values)
    values[max(range(len(raw)), key=raw.__getitem__)] = top
    return values


def _cadence(
    activity: Activity, rng: random.Random, moving: list[bool], grade: list[float] | None
) -> list[int]:
    target = activity.average_cadence or 0.0
    ride = activity.sport_type in RIDE_SPORTS
    values = []
    noise = 0.0
    for i, is_moving in enumerate(moving):
        noise = noise * 0.8 + rng.gauss(0.0, 1.2)
        if not is_moving or (ride and grade is not None and grade[i] < -4.0):
            values.append(0)  # stopped, or coasting downhill
        else:
            values.append(max(0, round(target + noise)))
    return values


def _watts(
    activity: Activity,
    rng: random.Random,
    moving: list[bool],
    speeds: list[float],
    avg_speed: float,
    grade: list[float] | None,
    cadence: list[int] | None,
) -> list[int]:
    target = activity.average_watts or 0.0
    ceiling = activity.max_watts or round(target * 3)
    raw = []
    for i, is_moving in enumerate(moving):
        pedalling = cadence is None or cadence[i] > 0
        if not is_moving or not pedalling:
            raw.append(0.0)
            continue
        climb = 1 + (grade[i] * 0.06 if grade is not None else 0.0)
        raw.append(
            max(0.0, target * (0.55 + 0.45 * speeds[i] / avg_speed) * climb + rng.gauss(0, 18))
        )
    active = [w for w in raw if w > 0] or [target]
    shift = target - sum(active) / len(active)
    return [min(ceiling, max(0, round(w + shift))) if w > 0 else 0 for w in raw]


# -- what Strava derives from streams --------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Samples ``start``..``end`` (inclusive) and what they add up to."""

    start: int
    end: int
    distance: float
    elapsed_time: int
    moving_time: int
    max_speed: float
    elevation_gain: float
    elevation_difference: float
    average_heartrate: float | None
    max_heartrate: float | None
    average_cadence: float | None
    average_watts: float | None


def window(streams: Streams, start: int, end: int) -> Window:
    time = streams.time
    moving_time = sum(time[i] - time[i - 1] for i in range(start + 1, end + 1) if streams.moving[i])
    gain = 0.0
    diff = 0.0
    if streams.altitude is not None:
        alt = streams.altitude
        gain = sum(max(0.0, alt[i] - alt[i - 1]) for i in range(start + 1, end + 1))
        diff = alt[end] - alt[start]
    hr = streams.heartrate[start : end + 1] if streams.heartrate else None
    cad = [c for c in streams.cadence[start : end + 1] if c > 0] if streams.cadence else None
    watts = streams.watts[start : end + 1] if streams.watts else None
    return Window(
        start=start,
        end=end,
        distance=round(streams.distance[end] - streams.distance[start], 1),
        elapsed_time=time[end] - time[start],
        moving_time=moving_time,
        max_speed=max(streams.velocity_smooth[start : end + 1]),
        elevation_gain=round(gain, 1),
        elevation_difference=round(diff, 1),
        average_heartrate=round(sum(hr) / len(hr), 1) if hr else None,
        max_heartrate=float(max(hr)) if hr else None,
        average_cadence=round(sum(cad) / len(cad), 1) if cad else None,
        average_watts=round(sum(watts) / len(watts), 1) if watts else None,
    )


def cut_by_distance(streams: Streams, every: float) -> list[Window]:
    """Consecutive windows of ``every`` metres (the last one shorter): splits and auto laps."""
    windows = []
    start = 0
    total = streams.distance[-1]
    mark = every
    while start < len(streams) - 1:
        if mark >= total:
            end = len(streams) - 1
        else:
            end = bisect.bisect_left(streams.distance, mark, lo=start + 1)
            end = min(end, len(streams) - 1)
        windows.append(window(streams, start, end))
        start = end
        mark += every
    return windows


BEST_EFFORTS = (
    ("400m", 400),
    ("1/2 mile", 805),
    ("1k", 1000),
    ("1 mile", 1609),
    ("2 mile", 3219),
    ("5k", 5000),
    ("10k", 10000),
    ("15k", 15000),
    ("10 mile", 16090),
    ("20k", 20000),
    ("Half-Marathon", 21097),
    ("30k", 30000),
    ("Marathon", 42195),
)


def best_efforts(streams: Streams) -> list[tuple[str, int, int, int]]:
    """(name, distance, start index, end index) of the fastest stretch per standard distance."""
    found = []
    time, dist = streams.time, streams.distance
    for name, length in BEST_EFFORTS:
        if dist[-1] < length:
            break
        best: tuple[int, int, int] | None = None
        i = 0
        for j in range(len(dist)):
            while i < j and dist[j] - dist[i + 1] >= length:
                i += 1
            if dist[j] - dist[i] >= length:
                duration = time[j] - time[i]
                if best is None or duration < best[0]:
                    best = (duration, i, j)
        if best is not None:
            found.append((name, length, best[1], best[2]))
    return found


def pace_zone(activity: Activity, speed: float) -> int:
    """1..6, Strava's pace zones relative to the activity's own average speed."""
    if activity.sport_type not in RUN_SPORTS or not activity.average_speed:
        return 0
    ratio = speed / activity.average_speed
    return 1 + bisect.bisect_right((0.85, 0.95, 1.03, 1.1, 1.2), ratio)
