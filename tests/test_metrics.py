"""Derived metrics (domain.metrics): known answers on synthetic tracks, and agreement with the
devices' own figures in the real recordings of ../shared/fixtures/real/.

Real pairs used, and why these: each TCX file carries the device's cumulative DistanceMeters
and per-lap time, average and maximum heart rate; the Strava ride of 2010 (list-form streams)
carries Strava's distance, altitude and grade_smooth streams. No Strava detailed activity has
an altitude stream next to it (the NYC marathon's streams hold distance only, and without time;
the 2013 run has no streams), so elevation gain is checked against the gain Strava's own
grade_smooth stream implies over its distance stream instead of total_elevation_gain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from domain.activities import Measurements, Sample
from domain.metrics import (
    ELEVATION_HYSTERESIS_METERS,
    SampleSummary,
    fill_measurements,
    geodesic_distance,
    summarize,
)
from domain.strava import samples_from_streams
from tests.support import real_fixture

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
METERS_PER_DEGREE = 6_371_008.8 * math.pi / 180  # on the sphere domain.metrics uses


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def run(
    times: Sequence[float],
    distances: Sequence[float],
    *,
    device: bool = True,
    positions: bool = True,
    altitudes: Sequence[float | None] | None = None,
    heart: Sequence[int | None] | None = None,
) -> list[Sample]:
    """A straight track due north from 45 N with the given cumulative distances."""
    return [
        Sample(
            at(t),
            distance_meters=d if device else None,
            latitude=45.0 + d / METERS_PER_DEGREE if positions else None,
            longitude=7.0 if positions else None,
            altitude_meters=altitudes[i] if altitudes is not None else None,
            heart_rate_bpm=heart[i] if heart is not None else None,
        )
        for i, (t, d) in enumerate(zip(times, distances, strict=True))
    ]


def steady(seconds: int, speed: float, **kwargs: Any) -> list[Sample]:
    times = [float(t) for t in range(seconds + 1)]
    return run(times, [speed * t for t in times], **kwargs)


def seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()


# -- geodesic distance -----------------------------------------------------------------------


def test_one_degree_of_latitude_is_111_2_km() -> None:
    pair = [Sample(T0, latitude=44.5, longitude=7.0), Sample(at(1), latitude=45.5, longitude=7.0)]
    meters = geodesic_distance(pair)[-1]
    assert meters is not None
    assert meters == pytest.approx(111_200, rel=0.005)
    # WGS-84's meridian arc from 44.5 N to 45.5 N is 111,132 m: the sphere is 0.06 % long here.
    assert meters == pytest.approx(111_132, rel=0.001)


def test_geodesic_distance_skips_points_without_position() -> None:
    samples = [
        Sample(T0, latitude=0.0, longitude=0.0),
        Sample(at(1)),  # no fix
        Sample(at(2), latitude=0.0, longitude=0.001),
        Sample(at(3), latitude=math.nan, longitude=0.0),
        Sample(at(4), latitude=0.0, longitude=0.002),
    ]
    out = geodesic_distance(samples)
    step = 0.001 * METERS_PER_DEGREE
    assert out[1] is None
    assert out[3] is None
    assert out[0] == 0.0
    assert out[2] == pytest.approx(step)
    assert out[4] == pytest.approx(2 * step)


def test_geodesic_distance_of_a_known_track() -> None:
    samples = steady(1000, 3.0, device=False)
    last = geodesic_distance(samples)[-1]
    assert last == pytest.approx(3000.0, rel=1e-9)


# -- constant speed, pauses, elapsed -----------------------------------------------------------


@pytest.mark.parametrize("device", [True, False])
def test_constant_speed(device: bool) -> None:
    s = summarize(steady(1000, 3.0, device=device))
    assert s.start_time == T0
    assert seconds(s.elapsed) == 1000
    assert seconds(s.moving) == 1000
    assert s.distance_source == ("device" if device else "geodesic")
    assert s.distance_meters == pytest.approx(3000.0, rel=1e-9)
    assert s.average_speed_meters_per_second == pytest.approx(3.0, rel=1e-9)
    assert s.max_speed_meters_per_second == pytest.approx(3.0, rel=1e-9)
    assert s.elevation_gain_meters is None
    assert s.average_heart_rate_bpm is None


def test_a_ten_minute_stop_with_the_recorder_on_is_not_moving_time() -> None:
    times = [float(t) for t in range(1801)]
    # 600 s at 3 m/s, 600 s standing still (still recording every second), 600 s at 3 m/s.
    dists = [3.0 * min(t, 600) + 3.0 * max(0.0, t - 1200) for t in times]
    for device in (True, False):
        s = summarize(run(times, dists, device=device))
        assert seconds(s.elapsed) == 1800
        assert seconds(s.moving) == pytest.approx(1200, abs=6)
        assert s.distance_meters == pytest.approx(3600.0)
        assert s.average_speed_meters_per_second == pytest.approx(3.0, rel=0.01)


def test_a_ten_minute_gap_in_recording_is_not_moving_time() -> None:
    times = [float(t) for t in range(601)] + [float(t) for t in range(1200, 1801)]
    dists = [3.0 * min(t, 600) + 3.0 * max(0.0, t - 1200) for t in times]
    s = summarize(run(times, dists))
    assert seconds(s.elapsed) == 1800
    assert seconds(s.moving) == 1200


def test_a_brief_slow_sample_is_not_a_pause() -> None:
    # The device's distance only updates on four seconds of five: a one-second "stop"
    # then a double step. Speed over the window stays at 3 m/s.
    times = [float(t) for t in range(601)]
    dists = [3.0 * (t - t % 5 + min(t % 5, 4) * 5 / 4) for t in times]
    s = summarize(run(times, dists, positions=False))
    assert seconds(s.moving) == 600


def test_without_distance_only_gaps_are_pauses() -> None:
    times = [float(t) for t in range(0, 301, 5)] + [float(t) for t in range(900, 1201, 5)]
    samples = [Sample(at(t), heart_rate_bpm=120) for t in times]
    s = summarize(samples)
    assert seconds(s.elapsed) == 1200
    assert seconds(s.moving) == 600
    assert s.distance_meters is None
    assert s.average_speed_meters_per_second is None


# -- distance: glitches, plausibility ------------------------------------------------------------


def test_a_drop_in_device_distance_becomes_a_stop() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    samples = [
        Sample(at(t), distance_meters=d)
        for t, d in zip(times, [0.0, 3.0, 6.0, 1.0, 9.0, 12.0], strict=True)
    ]
    assert summarize(samples).distance_meters == 12.0


def test_implausible_device_distance_falls_back_to_positions() -> None:
    samples = steady(600, 3.0)
    # A mis-scaled sensor: a tenth of the distance the positions cover.
    scaled = [
        dataclasses.replace(x, distance_meters=(x.distance_meters or 0) / 10) for x in samples
    ]
    s = summarize(scaled)
    assert s.distance_source == "geodesic"
    assert s.distance_meters == pytest.approx(1800.0, rel=1e-6)
    # A sensor within a factor of two of the positions is trusted (it may know better).
    close = [
        dataclasses.replace(x, distance_meters=(x.distance_meters or 0) * 0.9) for x in samples
    ]
    assert summarize(close).distance_source == "device"
    assert summarize(close).distance_meters == pytest.approx(1620.0)


def test_times_are_cleaned_as_best_efforts_cleans_them() -> None:
    samples = steady(10, 3.0)
    with pytest.raises(ValueError, match="must not decrease"):
        summarize([samples[1], samples[0]])
    with pytest.raises(ValueError, match="no samples"):
        summarize([])
    repeated = [*samples[:5], dataclasses.replace(samples[4], heart_rate_bpm=99), *samples[5:]]
    s = summarize(repeated)
    assert seconds(s.elapsed) == 10
    assert s.max_heart_rate_bpm == 99.0


# -- maximum speed -----------------------------------------------------------------------------


def test_max_speed_ignores_a_single_gps_spike() -> None:
    samples = steady(600, 3.0, device=False)
    bad = samples[300]
    samples[300] = dataclasses.replace(bad, longitude=(bad.longitude or 0) + 0.001)  # ~79 m east
    s = summarize(samples)
    assert s.distance_meters is not None
    assert s.distance_meters > 1900
    assert s.max_speed_meters_per_second == pytest.approx(3.0, rel=0.01)


def test_max_speed_finds_a_real_surge() -> None:
    times = [float(t) for t in range(601)]
    # 3 m/s, a 60 s surge at 6 m/s, 3 m/s again.
    dists = [3.0 * t + 3.0 * min(max(t - 300, 0.0), 60.0) for t in times]
    s = summarize(run(times, dists))
    assert s.max_speed_meters_per_second == pytest.approx(6.0)


# -- elevation ---------------------------------------------------------------------------------


def hills(seconds_total: int, height: float, period: int) -> list[float]:
    """Rounded hills: up `height` metres over half a period, down over the other half."""
    return [height / 2 * (1 - math.cos(2 * math.pi * t / period)) for t in range(seconds_total + 1)]


def naive_gain(altitudes: Sequence[float]) -> float:
    return sum(max(0.0, b - a) for a, b in itertools.pairwise(altitudes))


def test_hills_with_known_gain() -> None:
    alts = hills(3000, 50.0, 1000)  # three 50 m hills, back to the start: 150 m up, 150 down
    s = summarize(steady(3000, 3.0, altitudes=alts))
    assert s.elevation_gain_meters == pytest.approx(150.0, rel=0.01)
    assert s.elevation_loss_meters == pytest.approx(150.0, rel=0.01)
    # A sharp summit is rounded off by about slope x window / 4 (0.75 m at 0.1 m/s): three
    # triangular hills lose about 4.5 m of 150.
    triangles = [50.0 - abs(50.0 - (t % 1000) / 10) for t in range(3001)]
    s = summarize(steady(3000, 3.0, altitudes=triangles))
    assert s.elevation_gain_meters == pytest.approx(150.0 - 4.5, abs=1.0)


def test_a_settling_barometer_is_not_a_climb() -> None:
    # Power-on: the altimeter reads 1,260 m, then approaches the true 2,256 m within seconds.
    settling = [2256.0 - 1000.0 * 0.5**t for t in range(12)]
    alts = settling + [2256.0 + 20.0 * t / 588 for t in range(589)]  # then a 20 m climb
    s = summarize(steady(600, 3.0, altitudes=alts))
    assert naive_gain(alts) > 990
    # Steps above 10 m/s are dropped; the slower tail of the settling (7.8 + 3.9 + ... = 15.6 m)
    # is indistinguishable from a climb and may remain.
    assert s.elevation_gain_meters is not None
    assert 20.0 - ELEVATION_HYSTERESIS_METERS <= s.elevation_gain_meters <= 20.0 + 15.6


def test_flat_course_with_3_m_noise_gains_nothing() -> None:
    rng = random.Random(9)
    alts = [100.0 + rng.uniform(-3.0, 3.0) for _ in range(3601)]
    assert naive_gain(alts) > 1000  # what summing raw differences would report
    s = summarize(steady(3600, 3.0, altitudes=alts))
    assert s.elevation_gain_meters is not None
    assert s.elevation_loss_meters is not None
    assert s.elevation_gain_meters < 2.0
    assert s.elevation_loss_meters < 2.0


def test_hills_with_3_m_noise_keep_their_gain() -> None:
    rng = random.Random(10)
    alts = [a + rng.uniform(-3.0, 3.0) for a in hills(3000, 50.0, 1000)]
    s = summarize(steady(3000, 3.0, altitudes=alts))
    assert s.elevation_gain_meters == pytest.approx(150.0, rel=0.05)


def test_a_rise_below_the_hysteresis_is_not_a_climb_but_a_staircase_is() -> None:
    small = [100.0] * 200 + [100.0 + ELEVATION_HYSTERESIS_METERS * 0.8] * 200 + [100.0] * 200
    s = summarize(steady(599, 3.0, altitudes=small))
    assert s.elevation_gain_meters == 0.0
    # 1 m steps every 10 s for 200 s: each below the threshold, together a 20 m climb.
    stairs = [100.0 + min(t // 10, 20) for t in range(400)]
    s = summarize(steady(399, 3.0, altitudes=stairs))
    assert s.elevation_gain_meters == pytest.approx(20.0, abs=0.5)
    assert s.elevation_loss_meters == 0.0


# -- averages ----------------------------------------------------------------------------------


def test_heart_rate_is_time_weighted_over_irregular_intervals() -> None:
    # 100 bpm every second for 10 s, then one 160 bpm reading that holds for 40 s.
    times = [float(t) for t in range(11)] + [50.0]
    heart = [100] * 10 + [160, 100]
    samples = [Sample(at(t), heart_rate_bpm=h) for t, h in zip(times, heart, strict=True)]
    s = summarize(samples)
    assert s.average_heart_rate_bpm == pytest.approx((100 * 10 + 160 * 40) / 50)  # 148
    assert sum(heart) / len(heart) == pytest.approx(105.0)  # what a plain mean would say
    assert s.max_heart_rate_bpm == 160.0


def test_heart_rate_gives_no_weight_to_a_gap_in_recording() -> None:
    times = [0.0, 10.0, 20.0, 620.0, 630.0]
    heart = [100, 100, 180, 120, 120]
    samples = [Sample(at(t), heart_rate_bpm=h) for t, h in zip(times, heart, strict=True)]
    # The 180 reading would hold for 600 s; nothing was recorded then.
    assert summarize(samples).average_heart_rate_bpm == pytest.approx((100 * 20 + 120 * 10) / 30)


def test_cadence_and_power_count_moving_time_and_cadence_drops_zeros() -> None:
    times = [float(t) for t in range(351)]
    # 100 s pedalling at 200 W / 90 rpm, 50 s coasting (still moving, 0 W / 0 rpm),
    # 200 s stopped at the lights (0 W / 0 rpm).
    dists = [8.0 * min(t, 150.0) for t in times]
    samples = [
        dataclasses.replace(
            x,
            power_watts=200 if t < 100 else 0,
            cadence_rpm=90 if t < 100 else 0,
        )
        for x, t in zip(run(times, dists), times, strict=True)
    ]
    s = summarize(samples)
    assert seconds(s.moving) == pytest.approx(150, abs=6)
    assert s.average_cadence_rpm == pytest.approx(90.0)
    assert s.average_power_watts == pytest.approx(200 * 100 / seconds(s.moving), rel=1e-9)
    assert s.max_power_watts == 200.0


def test_max_power_is_the_highest_reading_and_none_without_power() -> None:
    times = [float(t) for t in range(10)]
    watts = [150, 180, None, 640, 200, 0, 210, None, 190, 170]
    samples = [
        dataclasses.replace(x, power_watts=w)
        for x, w in zip(run(times, [5.0 * t for t in times]), watts, strict=True)
    ]
    assert summarize(samples).max_power_watts == 640.0
    assert summarize(run(times, [5.0 * t for t in times])).max_power_watts is None


# -- fill_measurements -------------------------------------------------------------------------


SUMMARY = SampleSummary(
    start_time=T0,
    elapsed=dt.timedelta(seconds=3600),
    moving=dt.timedelta(seconds=3300),
    distance_meters=10_000.0,
    elevation_gain_meters=120.0,
    average_heart_rate_bpm=150.0,
    max_heart_rate_bpm=180.0,
    elevation_loss_meters=115.0,
    average_cadence_rpm=88.0,
    average_power_watts=210.0,
    max_power_watts=720.0,
    average_speed_meters_per_second=10_000.0 / 3300,
    max_speed_meters_per_second=4.2,
)


def test_fill_measurements_keeps_what_the_source_gave() -> None:
    given = Measurements(
        start_time=T0,
        elapsed=dt.timedelta(seconds=3500),
        moving=dt.timedelta(seconds=3400),
        distance_meters=9_900.0,
        elevation_gain_meters=90.0,
        average_heart_rate_bpm=140.0,
        max_heart_rate_bpm=170.0,
        elevation_loss_meters=80.0,
        average_cadence_rpm=85.0,
        average_power_watts=190.0,
        max_power_watts=650.0,
        average_speed_meters_per_second=2.9,
        max_speed_meters_per_second=4.0,
    )
    assert fill_measurements(given, SUMMARY) == given


def test_fill_measurements_fills_what_the_source_left_empty() -> None:
    empty = Measurements(start_time=T0, elapsed=dt.timedelta(0), average_heart_rate_bpm=0.0)
    filled = fill_measurements(empty, SUMMARY)
    assert filled == Measurements(
        start_time=T0,
        elapsed=dt.timedelta(seconds=3600),
        moving=dt.timedelta(seconds=3300),
        distance_meters=10_000.0,
        elevation_gain_meters=120.0,
        average_heart_rate_bpm=150.0,
        max_heart_rate_bpm=180.0,
        elevation_loss_meters=115.0,
        average_cadence_rpm=88.0,
        average_power_watts=210.0,
        max_power_watts=720.0,
        average_speed_meters_per_second=10_000.0 / 3300,
        max_speed_meters_per_second=4.2,
    )


def test_fill_measurements_treats_zero_as_empty_for_the_sample_metrics() -> None:
    zeros = Measurements(
        start_time=T0,
        elapsed=dt.timedelta(seconds=3600),
        elevation_loss_meters=0.0,
        average_cadence_rpm=0.0,
        average_power_watts=0.0,
        average_speed_meters_per_second=0.0,
    )
    filled = fill_measurements(zeros, SUMMARY)
    assert (
        filled.elevation_loss_meters,
        filled.average_cadence_rpm,
        filled.average_power_watts,
        filled.average_speed_meters_per_second,
    ) == (115.0, 88.0, 210.0, 10_000.0 / 3300)


def test_fill_measurements_keeps_moving_within_the_given_elapsed_time() -> None:
    given = Measurements(start_time=T0, elapsed=dt.timedelta(seconds=3000), time_zone="UTC")
    filled = fill_measurements(given, SUMMARY)
    assert filled.moving == dt.timedelta(seconds=3000)
    assert filled.elapsed == dt.timedelta(seconds=3000)
    assert filled.time_zone == "UTC"


def test_fill_measurements_with_a_summary_that_lacks_a_channel() -> None:
    bare = SampleSummary(start_time=T0, elapsed=dt.timedelta(60), moving=dt.timedelta(0))
    given = Measurements(start_time=T0, elapsed=dt.timedelta(seconds=60))
    assert fill_measurements(given, bare) == given


# -- real recordings ---------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclasses.dataclass
class Tcx:
    samples: list[Sample]
    lap_seconds: list[float]
    lap_average_heart: list[float]
    lap_max_heart: list[float]


def real(*parts: str) -> Path:
    return real_fixture("/".join(parts))


def read_tcx(name: str) -> Tcx:
    """A minimal TCX reader for these tests (the import's own parser is not used here)."""
    root = ET.parse(real("tcx", name)).getroot()
    samples: list[Sample] = []
    laps: list[tuple[float, float | None, float | None]] = []
    for lap in (e for e in root.iter() if _local(e.tag) == "Lap"):
        fields: dict[str, float] = {}
        for child in lap:
            name_ = _local(child.tag)
            if name_ == "TotalTimeSeconds" and child.text:
                fields["time"] = float(child.text)
            elif name_ in ("AverageHeartRateBpm", "MaximumHeartRateBpm"):
                fields[name_] = float(next(iter(child)).text or "nan")
        laps.append(
            (fields["time"], fields.get("AverageHeartRateBpm"), fields.get("MaximumHeartRateBpm"))
        )
    for point in (e for e in root.iter() if _local(e.tag) == "Trackpoint"):
        values: dict[str, str] = {}
        for e in point.iter():
            if _local(e.tag) == "Value" or e.text is None:
                continue
            values[_local(e.tag)] = e.text
            if _local(e.tag) == "HeartRateBpm":
                values["HeartRateBpm"] = next(iter(e)).text or ""

        def number(key: str, values: dict[str, str] = values) -> float | None:
            return float(values[key]) if key in values else None

        def whole(key: str, values: dict[str, str] = values) -> int | None:
            return round(float(values[key])) if key in values else None

        samples.append(
            Sample(
                dt.datetime.fromisoformat(values["Time"].replace("Z", "+00:00")),
                distance_meters=number("DistanceMeters"),
                latitude=number("LatitudeDegrees"),
                longitude=number("LongitudeDegrees"),
                altitude_meters=number("AltitudeMeters"),
                heart_rate_bpm=whole("HeartRateBpm"),
                cadence_rpm=whole("Cadence"),
                power_watts=whole("Watts"),
            )
        )
    return Tcx(
        samples,
        [t for t, _, _ in laps],
        [h for _, h, _ in laps if h is not None],
        [h for _, _, h in laps if h is not None],
    )


def strava_ride() -> tuple[list[Sample], dict[str, list[Any]]]:
    raw = json.loads(
        real("strava_api", "activity_streams_list_all-types_ride_2010.json").read_text()
    )
    by_type = {stream["type"]: stream for stream in raw}
    return samples_from_streams(T0, by_type), {k: v["data"] for k, v in by_type.items()}


def last_value(values: Sequence[float | None]) -> float:
    return next(v for v in reversed(values) if v is not None)


def first_value(values: Sequence[float | None]) -> float:
    return next(v for v in values if v is not None)


@pytest.mark.parametrize(
    "name", ["run_forerunner410_hr.tcx", "xcski-sport-other_vivoactive-hr_hr-runcadence.tcx"]
)
def test_geodesic_distance_agrees_with_the_devices_distance(name: str) -> None:
    samples = read_tcx(name).samples
    device_distances = [s.distance_meters for s in samples]
    device = last_value(device_distances) - first_value(device_distances)
    assert last_value(geodesic_distance(samples)) == pytest.approx(device, rel=0.02)
    s = summarize(samples)
    assert s.distance_source == "device"
    assert s.distance_meters == pytest.approx(device)


def test_geodesic_distance_agrees_with_stravas_distance_stream() -> None:
    samples, streams = strava_ride()
    strava = last_value(streams["distance"]) - first_value(streams["distance"])
    assert last_value(geodesic_distance(samples)) == pytest.approx(strava, rel=0.02)
    assert summarize(samples).distance_meters == pytest.approx(strava)


def test_strava_ride_moving_time_excludes_its_recording_gap() -> None:
    samples, streams = strava_ride()
    s = summarize(samples)
    times = [t for t in streams["time"] if t is not None]
    assert seconds(s.elapsed) == times[-1] - times[0] == 3935
    # One gap of 1,111 s (stream time 2584 to 3695); every other interval is moving.
    assert seconds(s.moving) == 3935 - 1111


@pytest.mark.parametrize(
    "name",
    [
        "run_forerunner410_hr.tcx",
        "xcski-sport-other_vivoactive-hr_hr-runcadence.tcx",
        "ride_edge1000_hr-cad-power_5laps.tcx",
    ],
)
def test_heart_rate_agrees_with_the_devices_lap_averages(name: str) -> None:
    tcx = read_tcx(name)
    device_average = sum(
        t * h for t, h in zip(tcx.lap_seconds, tcx.lap_average_heart, strict=True)
    ) / sum(tcx.lap_seconds)
    s = summarize(tcx.samples)
    assert s.average_heart_rate_bpm == pytest.approx(device_average, abs=1.0)
    assert s.max_heart_rate_bpm == max(tcx.lap_max_heart)


def test_time_weighting_matters_on_a_real_run() -> None:
    tcx = read_tcx("run_forerunner410_hr.tcx")
    heart = [s.heart_rate_bpm for s in tcx.samples if s.heart_rate_bpm is not None]
    device_average = sum(
        t * h for t, h in zip(tcx.lap_seconds, tcx.lap_average_heart, strict=True)
    ) / sum(tcx.lap_seconds)
    assert abs(sum(heart) / len(heart) - device_average) > 3.0  # a plain mean is off


def test_edge_1000_ride_uses_device_distance_across_its_timer_stop() -> None:
    # 32 s (14:53:33 to 14:54:05) in which the positions move 240 m but the device's distance
    # only 7.7 m: the timer was stopped. The device's distance is kept, and the stop is not
    # moving time.
    samples = read_tcx("ride_edge1000_hr-cad-power_5laps.tcx").samples
    s = summarize(samples)
    assert s.distance_source == "device"
    assert s.distance_meters == pytest.approx(668.19 - 6.59, abs=0.01)
    assert seconds(s.elapsed) == 126
    assert seconds(s.moving) == pytest.approx(126 - 32, abs=2)
    assert s.average_power_watts is not None
    assert 100 < s.average_power_watts < 250


def test_treadmill_run_with_a_reset_final_distance() -> None:
    # The Fitbit file stands still (one position) and its last point's distance is 0: the
    # running maximum keeps the lap's 2,998.98 m, and positions that never move do not
    # override the device.
    samples = read_tcx("run_fitbit-ionic_hr_bom_tz-offset.tcx").samples
    s = summarize(samples)
    assert s.distance_source == "device"
    assert s.distance_meters == pytest.approx(2998.98)


def test_elevation_gain_of_the_strava_ride_is_within_a_plausible_band() -> None:
    samples, streams = strava_ride()
    # Strava's own climb: its smoothed grade (percent) over each distance step.
    grade_gain = 0.0
    previous: float | None = None
    for distance, grade in zip(streams["distance"], streams["grade_smooth"], strict=True):
        if distance is None or grade is None:
            continue
        if previous is not None and grade > 0:
            grade_gain += grade / 100 * (distance - previous)
        previous = distance
    altitudes = [a for a in streams["altitude"] if a is not None]
    s = summarize(samples)
    assert s.elevation_gain_meters is not None
    assert 0.5 * grade_gain <= s.elevation_gain_meters <= 1.5 * grade_gain
    assert s.elevation_gain_meters <= naive_gain(altitudes)


@pytest.mark.parametrize(
    ("name", "settled"),
    [
        ("run_forerunner410_hr.tcx", 0),
        # The vivoactive's barometer reads 1,258 m at power-on and settles at 2,256 m by its
        # tenth sample (1 Hz): the first 1,000 m are no climb.
        ("xcski-sport-other_vivoactive-hr_hr-runcadence.tcx", 9),
    ],
)
def test_real_gain_minus_loss_is_the_net_climb(name: str, settled: int) -> None:
    # Smoothing drops as much from gain as from loss: their difference is the net change of
    # the profile once the sensor has settled.
    samples = read_tcx(name).samples
    altitudes = [s.altitude_meters for s in samples if s.altitude_meters is not None]
    s = summarize(samples)
    assert s.elevation_gain_meters is not None
    assert s.elevation_loss_meters is not None
    assert 50 < s.elevation_gain_meters < 150
    net = s.elevation_gain_meters - s.elevation_loss_meters
    assert net == pytest.approx(altitudes[-1] - altitudes[settled], abs=10)


def test_a_recording_gap_without_device_distance_counts_one_interval_not_the_straight_line() -> (
    None
):
    # 1 Hz along a meridian at 5 m/s, then the timer stops for 40 s while the rider rolls
    # on 200 m, then 1 Hz again: the gap counts one interval (5 m) at the speed after it.
    start = dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC)
    metres_per_degree = math.pi * 6_371_008.8 / 180
    samples = []
    position = 0.0
    for second in [*range(0, 60), *range(100, 160)]:
        if second == 100:
            position += 200.0 - 5.0  # the stretch ridden with the timer stopped
        samples.append(
            Sample(
                time=start + dt.timedelta(seconds=second),
                latitude=45 + position / metres_per_degree,
                longitude=7.0,
            )
        )
        position += 5.0
    s = summarize(samples)
    assert s.distance_source == "geodesic"
    assert s.distance_meters == pytest.approx(119 * 5.0, rel=1e-3)
    assert seconds(s.moving) == 118  # the gap is a stop: 59 + 59 one-second intervals


def test_smart_recording_intervals_are_not_gaps() -> None:
    # Irregular 1-10 s intervals at 4 m/s: every metre counts.
    start = dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC)
    metres_per_degree = math.pi * 6_371_008.8 / 180
    rng = random.Random(7)
    samples, second = [], 0
    for _ in range(300):
        samples.append(
            Sample(
                time=start + dt.timedelta(seconds=second),
                latitude=45 + 4.0 * second / metres_per_degree,
                longitude=7.0,
            )
        )
        second += rng.choice([1, 1, 2, 3, 5, 8, 10])
    s = summarize(samples)
    assert s.distance_meters == pytest.approx(4.0 * seconds(s.elapsed), rel=1e-3)
