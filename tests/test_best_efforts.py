"""Best efforts (domain.best_efforts): known answers on synthetic streams, and agreement with an
independent brute force on the real recordings in ../shared/fixtures/real/."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import pytest

from domain.activities import Sample
from domain.best_efforts import BestEffort, Distance, best_efforts, offsets_from_samples
from domain.strava import samples_from_streams
from tests.support import real_fixture

EARTH_RADIUS_M = 6_371_008.8

Points = list[tuple[float, float | None]]


def constant_pace(speed: float, times: Sequence[float]) -> Points:
    return [(t, speed * t) for t in times]


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-6)


# -- the standard distances ------------------------------------------------------------------


def test_standard_distances_in_the_api_order() -> None:
    assert [d.meters for d in Distance] == [
        400,
        1000,
        1609.344,
        5000,
        10_000,
        15_000,
        16_093.44,
        21_097.5,
        30_000,
        42_195,
    ]
    assert Distance.FIVE_K.value == "5k"  # the personal record id: `5k-all`
    assert Distance.ONE_MILE.value == "mile"


# -- synthetic streams with known answers ----------------------------------------------------


@pytest.mark.parametrize("speed", [2.5, 10 / 3, 4.0])
def test_constant_pace_every_second(speed: float) -> None:
    points = constant_pace(speed, range(0, 5 * 3600 + 1))
    efforts = best_efforts(points)
    assert set(efforts) == set(Distance)
    for distance, effort in efforts.items():
        assert effort.distance is distance
        assert effort.elapsed_seconds == approx(distance.meters / speed)
        assert round(effort.elapsed_seconds) == round(distance.meters / speed)
        # Every window is as fast: the earliest is reported.
        assert effort.start_offset_seconds == approx(0)
        assert effort.end_offset_seconds == approx(distance.meters / speed)


def test_constant_pace_at_irregular_intervals() -> None:
    rng = random.Random(10)
    times = [0.0, *itertools.accumulate(rng.uniform(0.2, 30) for _ in range(3000))]
    efforts = best_efforts(constant_pace(3.1, times))
    assert set(efforts) == {d for d in Distance if d.meters <= 3.1 * times[-1]}
    for distance, effort in efforts.items():
        assert effort.elapsed_seconds == approx(distance.meters / 3.1)


def negative_split(times: Sequence[float]) -> Points:
    """5 km at 3 m/s, then 5 km at 4 m/s (the change is at t = 5000/3 s)."""
    change = 5000 / 3
    return [(t, 3 * t if t <= change else 5000 + 4 * (t - change)) for t in times]


@pytest.mark.parametrize(
    "times",
    [
        [*range(0, 2917), 5000 / 3, 2916 + 2 / 3],
        [0, 100.5, 333, 5000 / 3, 1700.25, 2000, 2222.2, 2500, 2916 + 2 / 3],
    ],
    ids=["every-second", "irregular"],
)
def test_negative_split_best_windows_are_in_the_fast_half(times: list[float]) -> None:
    efforts = best_efforts(negative_split(sorted(times)))
    change = 5000 / 3
    assert set(efforts) == {
        Distance.FOUR_HUNDRED_M,
        Distance.ONE_K,
        Distance.ONE_MILE,
        Distance.FIVE_K,
        Distance.TEN_K,
    }
    for distance in (Distance.FOUR_HUNDRED_M, Distance.ONE_K, Distance.ONE_MILE):
        effort = efforts[distance]
        assert effort.elapsed_seconds == approx(distance.meters / 4)
        assert effort.start_offset_seconds >= change - 1e-9
    five = efforts[Distance.FIVE_K]
    assert five.elapsed_seconds == approx(1250)
    assert (five.start_offset_seconds, five.end_offset_seconds) == (
        approx(change),
        approx(2916 + 2 / 3),
    )
    assert efforts[Distance.TEN_K].elapsed_seconds == approx(change + 1250)


def test_a_pause_inside_every_window_lengthens_it() -> None:
    """4 m/s for 600 m, 45 s standing, 4 m/s for another 600 m: every 1 km window holds the
    stop; the 400 m does not need to."""
    points: Points = [(t, 4.0 * t) for t in range(0, 151)]
    points += [(t, 600.0) for t in range(151, 196)]
    points += [(t, 600 + 4.0 * (t - 195)) for t in range(196, 346)]
    efforts = best_efforts(points)
    assert set(efforts) == {Distance.FOUR_HUNDRED_M, Distance.ONE_K}
    assert efforts[Distance.FOUR_HUNDRED_M].elapsed_seconds == approx(100)
    one_k = efforts[Distance.ONE_K]
    assert one_k.elapsed_seconds == approx(250 + 45)
    assert one_k.start_offset_seconds <= 150
    assert one_k.end_offset_seconds >= 195


def test_a_pause_with_no_samples_inside_it_counts_too() -> None:
    """A device that stops recording while paused leaves a gap in time, not in distance."""
    points: Points = [(0, 0.0), (250, 1000.0), (400, 1000.0), (650, 2000.0)]
    efforts = best_efforts(points)
    assert efforts[Distance.ONE_K].elapsed_seconds == approx(250)
    assert efforts[Distance.ONE_MILE].elapsed_seconds == approx(1609.344 / 4 + 150)


def test_distances_longer_than_the_activity_are_absent() -> None:
    efforts = best_efforts(constant_pace(4.0, range(0, 1251)))  # exactly 5 km
    assert set(efforts) == {
        Distance.FOUR_HUNDRED_M,
        Distance.ONE_K,
        Distance.ONE_MILE,
        Distance.FIVE_K,
    }
    assert efforts[Distance.FIVE_K] == BestEffort(Distance.FIVE_K, 1250.0, 0.0, 1250.0)
    assert set(best_efforts(constant_pace(4.0, range(0, 1250)))) == {
        Distance.FOUR_HUNDRED_M,
        Distance.ONE_K,
        Distance.ONE_MILE,
    }
    assert best_efforts(constant_pace(4.0, range(0, 99))) == {}


def test_offsets_are_on_the_samples_time_axis() -> None:
    """Samples that begin after the activity's start keep their offsets."""
    efforts = best_efforts([(t + 30.0, 5.0 * t) for t in range(0, 201)])
    assert efforts[Distance.FOUR_HUNDRED_M] == BestEffort(Distance.FOUR_HUNDRED_M, 80, 30, 110)


def test_offsets_from_stored_samples() -> None:
    start = dt.datetime(2024, 5, 1, 7, tzinfo=dt.UTC)
    samples = [Sample(start + dt.timedelta(seconds=t), 4.0 * t) for t in range(5, 106)]
    samples.append(Sample(start + dt.timedelta(seconds=106)))  # no distance
    points = offsets_from_samples(start, samples)
    assert points[0] == (5.0, 20.0)
    assert points[-1] == (106.0, None)
    assert best_efforts(points)[Distance.FOUR_HUNDRED_M] == BestEffort(
        Distance.FOUR_HUNDRED_M, 100, 5, 105
    )


# -- hostile input ----------------------------------------------------------------------------


def test_too_few_points_give_nothing() -> None:
    assert best_efforts([]) == {}
    assert best_efforts([(0.0, 0.0)]) == {}
    assert best_efforts([(0.0, 0.0), (10.0, 0.0)]) == {}
    assert best_efforts([(0.0, None), (600.0, None)]) == {}
    assert best_efforts([(0.0, 0.0), (600.0, math.nan), (700.0, None)]) == {}


def test_times_going_backwards_are_an_error() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        best_efforts([(0.0, 0.0), (200.0, 800.0), (100.0, 400.0), (300.0, 1200.0)])


def test_a_repeated_time_keeps_its_last_point() -> None:
    points: Points = [(0.0, 0.0), (100.0, 400.0), (100.0, 300.0), (200.0, 700.0)]
    assert best_efforts(points) == best_efforts([(0.0, 0.0), (100.0, 300.0), (200.0, 700.0)])


def test_missing_and_non_finite_points_are_skipped() -> None:
    clean = constant_pace(4.0, range(0, 1001, 5))
    dirty: Points = list(clean)
    for k in range(3, len(dirty), 7):
        dirty[k] = (dirty[k][0], (None, math.nan, math.inf, -math.inf)[k % 4])
    dirty.insert(50, (math.nan, 123.0))
    dirty.insert(80, (math.inf, 99_999.0))
    kept = [(t, d) for t, d in dirty if d is not None and math.isfinite(t) and math.isfinite(d)]
    assert best_efforts(dirty) == best_efforts(kept)
    for distance, effort in best_efforts(dirty).items():
        assert effort.elapsed_seconds == approx(distance.meters / 4)


def test_distance_going_backwards_cannot_make_an_impossible_effort() -> None:
    """A GPS glitch drops the cumulative distance by 900 m for one point at 4 m/s. Read
    literally, the next second would 'cover' 904 m and a 1 km in under 25 s. The running
    maximum turns the glitch into a 1 s stop (996 m at 249 s and 250 s) followed by an 8 m
    second (1004 m at 251 s): windows that start there are 1 s faster than the pace, no more."""
    points: Points = constant_pace(4.0, range(0, 501))
    points[250] = (250.0, 100.0)
    efforts = best_efforts(points)
    assert efforts[Distance.FOUR_HUNDRED_M].elapsed_seconds == approx(99)
    assert efforts[Distance.ONE_K].elapsed_seconds == approx(249)
    # No mile fits after the glitch (2000 m in all), and the stop cancels the 8 m second.
    assert efforts[Distance.ONE_MILE].elapsed_seconds == approx(1609.344 / 4)
    # The same as if the athlete had stood still for that second.
    stood: Points = constant_pace(4.0, range(0, 501))
    stood[250] = (250.0, 996.0)
    assert best_efforts(points) == best_efforts(stood)


def test_integer_samples_are_accepted() -> None:
    effort = best_efforts([(0, 0), (100, 400)])[Distance.FOUR_HUNDRED_M]
    assert effort == BestEffort(Distance.FOUR_HUNDRED_M, 100.0, 0.0, 100.0)
    assert isinstance(effort.elapsed_seconds, float)


# -- the real recordings, against a brute force -----------------------------------------------


def _haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def gpx_tracks(relative: str) -> list[Points]:
    """Each track's timed points with a haversine cumulative distance (whatever namespace)."""
    tracks: list[Points] = []
    for track in ET.parse(real_fixture(relative)).getroot().iterfind(".//{*}trk"):
        fixes = [
            (_instant(time.text), (float(p.attrib["lat"]), float(p.attrib["lon"])))
            for p in track.iterfind(".//{*}trkpt")
            if (time := p.find("{*}time")) is not None and time.text
        ]
        if len(fixes) < 2:
            continue
        start = fixes[0][0]
        steps = (_haversine(a[1], b[1]) for a, b in itertools.pairwise(fixes))
        distances = [0.0, *itertools.accumulate(steps)]
        tracks.append(
            [((f[0] - start).total_seconds(), d) for f, d in zip(fixes, distances, strict=True)]
        )
    return tracks


def tcx_points(relative: str) -> Points:
    """Trackpoints' recorded DistanceMeters (None where a point has none)."""
    root = ET.fromstring(real_fixture(relative).read_bytes())  # the BOM is fine as bytes
    points = []
    for p in root.iterfind(".//{*}Trackpoint"):
        time, distance = p.find("{*}Time"), p.find("{*}DistanceMeters")
        assert time is not None
        assert time.text
        value = float(distance.text) if distance is not None and distance.text else None
        points.append((_instant(time.text), value))
    start = points[0][0]
    return [((t - start).total_seconds(), d) for t, d in points]


def strava_marathon_distance_only(step: int) -> Points:
    """The NYC marathon's distance stream. It comes without a time stream, so each point's
    index stands in for seconds: the distance profile is real, the clock is made up (every
    `step`-th point keeps the brute force quick)."""
    body = json.loads(
        real_fixture("strava_api/activity_streams_key-by-type_distance-only_run.json").read_text()
    )
    data = body["distance"]["data"]
    return [(float(i), data[i]) for i in range(0, len(data), step)]


def strava_ride_2010() -> Points:
    """The list-form streams through the production mapping (nulls inside the streams)."""
    body = json.loads(
        real_fixture("strava_api/activity_streams_list_all-types_ride_2010.json").read_text()
    )
    start = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)
    samples = samples_from_streams(start, {stream["type"]: stream for stream in body})
    return offsets_from_samples(start, samples)


def brute_force(points: Points, length: float) -> float:
    """The fastest `length` by trying every pair of samples (i, j): a window starting exactly at
    sample i and ending inside the segment before sample j, and a window ending exactly at
    sample j and starting inside the segment after sample i. O(n²), no pointers, no reuse."""
    last_at: dict[float, float] = {}
    for when, where in points:
        if where is not None and not math.isnan(where) and not math.isinf(where):
            last_at[when] = where
    t = sorted(last_at)
    d = list(itertools.accumulate((last_at[x] for x in t), max))
    best = math.inf
    for i, j in itertools.combinations(range(len(t)), 2):
        reach = d[i] + length
        if d[j - 1] < reach <= d[j]:
            end = t[j - 1] + (t[j] - t[j - 1]) * (reach - d[j - 1]) / (d[j] - d[j - 1])
            best = min(best, end - t[i])
        behind = d[j] - length
        if d[i] <= behind < d[i + 1]:
            begin = t[i] + (t[i + 1] - t[i]) * (behind - d[i]) / (d[i + 1] - d[i])
            best = min(best, t[j] - begin)
    return best


def _distance_at(t: list[float], d: list[float]) -> Callable[[float], float]:
    def at(x: float) -> float:
        k = min(max(bisect.bisect_right(t, x) - 1, 0), len(t) - 2)
        return d[k] + (d[k + 1] - d[k]) * (x - t[k]) / (t[k + 1] - t[k])

    return at


REAL_CASES: dict[str, Callable[[], list[Points]]] = {
    "gpx-run-garmin": lambda: gpx_tracks("gpx/run_garmin-connect_hr-cad.gpx"),
    "gpx-ride-edge1000": lambda: gpx_tracks("gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx"),
    "gpx-gpsbabel-tracks": lambda: gpx_tracks("gpx/gpsbabel_4-tracks_partial-times.gpx"),
    "tcx-run-forerunner410": lambda: [tcx_points("tcx/run_forerunner410_hr.tcx")],
    "tcx-run-fitbit-offset": lambda: [tcx_points("tcx/run_fitbit-ionic_hr_bom_tz-offset.tcx")],
    "tcx-xcski": lambda: [tcx_points("tcx/xcski-sport-other_vivoactive-hr_hr-runcadence.tcx")],
    "tcx-ride-edge1000": lambda: [tcx_points("tcx/ride_edge1000_hr-cad-power_5laps.tcx")],
    "strava-ride-2010": lambda: [strava_ride_2010()],
    "strava-marathon-every-20th": lambda: [strava_marathon_distance_only(20)],
    "strava-marathon-first-900": lambda: [strava_marathon_distance_only(1)[:900]],
}


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_real_recordings_agree_with_the_brute_force(case: str) -> None:
    activities = REAL_CASES[case]()
    assert activities
    for points in activities:
        efforts = best_efforts(points)
        expected = {d: brute_force(points, d.meters) for d in Distance}
        assert set(efforts) == {d for d, best in expected.items() if best < math.inf}
        assert efforts, f"{case}: too short to test anything"
        for distance, effort in efforts.items():
            assert effort.elapsed_seconds == pytest.approx(expected[distance], abs=0.01)


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_real_windows_cover_the_distance_and_no_window_is_faster(case: str) -> None:
    """The reported window spans exactly the distance; and windows starting or ending at random
    moments (not only at samples) are never faster, which checks the premise that an optimal
    window has a sample at one edge."""
    rng = random.Random(case)
    for points in REAL_CASES[case]():
        kept = {x: y for x, y in points if y is not None and math.isfinite(y)}
        t = sorted(kept)
        d = list(itertools.accumulate((kept[x] for x in t), max))
        at = _distance_at(t, d)
        for distance, effort in best_efforts(points).items():
            start, end = effort.start_offset_seconds, effort.end_offset_seconds
            assert end - start == pytest.approx(effort.elapsed_seconds, abs=1e-6)
            assert at(end) - at(start) == pytest.approx(distance.meters, abs=1e-6)
            for _ in range(200):
                begin = rng.uniform(t[0], t[-1])
                reach = at(begin) + distance.meters
                if reach > d[-1]:
                    continue
                # The first moment `reach` is passed, by bisection on time.
                low, high = begin, t[-1]
                for _ in range(100):
                    middle = (low + high) / 2
                    low, high = (middle, high) if at(middle) < reach else (low, middle)
                assert high - begin >= effort.elapsed_seconds - 1e-6


def test_a_distance_covered_only_to_within_rounding_gets_no_infinite_effort() -> None:
    # 431.43957865919464 - 31.439578659194666 is 400 in floats, but 31.4395... + 400 is not
    # <= 431.4395...: the search finds no window. No effort, rather than an infinite one.
    efforts = best_efforts([(0, 31.439578659194666), (100, 431.43957865919464)])
    assert all(math.isfinite(e.elapsed_seconds) for e in efforts.values())
