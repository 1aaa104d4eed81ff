"""Strava JSON to Stride's domain types (domain.strava): real recordings, simulator payloads
and hostile input."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from domain.activities import Visibility, validate_edit, validate_measurements
from domain.errors import Violations
from domain.strava import (
    GENERIC_SPORT,
    StravaActivity,
    StravaPayloadError,
    activity_from_strava,
    samples_from_streams,
)
from tests.strava_sim import SimConfig
from tests.strava_sim.payloads import detailed, stream_set, summary
from tests.strava_sim.streams import STREAM_ORDER, generate
from tests.strava_sim.world import World

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(
    os.environ.get(
        "STRIDE_STRAVA_FIXTURES", ROOT.parent / "shared" / "fixtures" / "real" / "strava_api"
    )
)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
START = dt.datetime(2025, 6, 1, 7, 0, tzinfo=dt.UTC)


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"Strava's recorded responses are not at {FIXTURES}")
    return json.loads(path.read_text())


def assert_valid(activity: StravaActivity) -> None:
    violations = Violations()
    validate_edit(activity.edit, violations, "a")
    validate_measurements(activity.measurements, violations, "a", NOW)
    assert not violations, violations.items


def minimal(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": 42,
        "name": "Lunch Run",
        "sport_type": "Run",
        "start_date": "2025-06-01T07:00:00Z",
        "elapsed_time": 600,
        "moving_time": 590,
        "distance": 2000.0,
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not ...}


def by_type(streams: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The list form (``key_by_type=false``) as the by-type form the client returns."""
    return {s["type"]: {k: v for k, v in s.items() if k != "type"} for s in streams}


# -- real recordings ------------------------------------------------------------------------------


def activity_payloads() -> list[tuple[str, dict[str, Any]]]:
    if not FIXTURES.is_dir():
        return []
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        for item in body if isinstance(body, list) else [body]:
            if isinstance(item, dict) and "start_date" in item and "elapsed_time" in item:
                out.append((f"{path.name}#{item.get('id')}", item))
    return out


def test_the_recordings_hold_activities() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"Strava's recorded responses are not at {FIXTURES}")
    # 30 from the list, the 2013 run, the NYC marathon, the manual hike.
    assert len(PAYLOADS) == 33


PAYLOADS = activity_payloads()


@pytest.mark.parametrize(("name", "raw"), PAYLOADS, ids=[name for name, _ in PAYLOADS])
def test_every_recorded_activity_maps_and_validates(name: str, raw: dict[str, Any]) -> None:
    activity = activity_from_strava(raw, now=NOW)
    assert_valid(activity)
    assert activity.external_id == str(raw["id"])
    assert activity.edit.title == raw["name"]
    assert activity.measurements.elapsed == dt.timedelta(seconds=raw["elapsed_time"])


def test_nyc_marathon_exact_values() -> None:
    activity = activity_from_strava(fixture("activity_detailed_run_nyc-marathon.json"), now=NOW)
    assert activity.external_id == "1946417534"
    assert activity.edit.title == "TCS NYC Marathon 2018"
    assert activity.edit.sport_type == "Run"
    assert activity.edit.visibility is Visibility.EVERYONE
    assert activity.edit.description.startswith("Official time 3:42:02.")
    m = activity.measurements
    assert m.start_time == dt.datetime(2018, 11, 4, 14, 53, 46, tzinfo=dt.UTC)
    assert m.time_zone == "America/New_York"
    assert m.distance_meters == 42268.1
    assert m.elevation_gain_meters == 270.9
    assert m.elapsed == dt.timedelta(seconds=13333)
    assert m.moving == dt.timedelta(seconds=13085)
    assert (m.average_heart_rate_bpm, m.max_heart_rate_bpm) == (170.1, 187.0)
    assert (m.average_speed_meters_per_second, m.max_speed_meters_per_second) == (3.17, 5.6)
    # No power meter, no cadence in the record, and Strava never states a loss.
    assert (m.average_power_watts, m.max_power_watts, m.average_cadence_rpm) == (None,) * 3
    assert m.elevation_loss_meters is None


def test_2013_run_without_sport_type_or_heart_rate() -> None:
    activity = activity_from_strava(fixture("activity_detailed_run_2013.json"), now=NOW)
    assert activity.edit.sport_type == "Run"  # from the deprecated `type`
    assert activity.edit.title == "09/22/2013 Oakland, CA"
    m = activity.measurements
    assert m.start_time == dt.datetime(2013, 9, 23, 0, 15, 14, tzinfo=dt.UTC)
    assert m.time_zone == "America/Los_Angeles"
    assert m.distance_meters == 5562.6
    assert m.average_heart_rate_bpm is None
    assert m.max_heart_rate_bpm is None


def test_manual_hike_and_listed_trail_runs() -> None:
    hike = activity_from_strava(fixture("activity_manual_hike.json"), now=NOW)
    assert (hike.edit.sport_type, hike.measurements.distance_meters) == ("Hike", 22530.8)
    assert hike.measurements.elevation_gain_meters == 0.0
    listed = [
        activity_from_strava(raw, now=NOW)
        for raw in fixture("athlete_activities_list_runs_2025.json")
    ]
    sports = [a.edit.sport_type for a in listed]
    assert (sports.count("Run"), sports.count("TrailRun")) == (28, 2)
    assert listed[0].edit.title == "Run with Artyom"
    assert listed[0].measurements.average_heart_rate_bpm == 159.6
    assert listed[0].measurements.average_cadence_rpm == 78.7
    # A manual activity's max_speed of 0 means "not known", not standing still.
    assert hike.measurements.max_speed_meters_per_second is None


def test_key_by_type_distance_only_streams_have_no_time_to_place_samples() -> None:
    streams = fixture("activity_streams_key-by-type_distance-only_run.json")
    assert samples_from_streams(START, streams) == []
    # With a time stream beside it, every distance point becomes a sample.
    count = len(streams["distance"]["data"])
    samples = samples_from_streams(START, {**streams, "time": {"data": list(range(count))}})
    assert len(samples) == count == 13129
    assert (samples[0].distance_meters, samples[-1].distance_meters) == (0.0, 42268.1)
    assert samples[-1].time == START + dt.timedelta(seconds=13128)
    assert samples[0].latitude is None
    assert samples[0].heart_rate_bpm is None


def test_list_form_streams_with_nulls() -> None:
    streams = by_type(fixture("activity_streams_list_all-types_ride_2010.json"))
    samples = samples_from_streams(START, streams)
    assert len(samples) == 998  # 999 points, time[1] is null
    first, last = samples[0], samples[-1]
    assert first.time == START
    assert (first.latitude, first.longitude) == (None, None)  # latlng[0] is null
    assert first.distance_meters == 0.6
    assert first.altitude_meters == 23.0
    assert first.heart_rate_bpm == 111
    assert first.cadence_rpm is None  # cadence[0] is null
    assert first.power_watts == 163
    assert first.speed_meters_per_second == 0.0
    assert samples[1].time == START + dt.timedelta(seconds=8)
    assert (samples[1].latitude, samples[1].longitude) == (38.546881, -121.817439)
    assert last.time == START + dt.timedelta(seconds=3935)
    assert (last.latitude, last.longitude) == (38.560208, -121.777183)
    assert last.distance_meters == 20739.7
    assert (last.heart_rate_bpm, last.cadence_rpm, last.power_watts) == (75, 0, 0)
    assert last.speed_meters_per_second == 0.9
    assert [s.time for s in samples] == sorted({s.time for s in samples})


# -- the simulator --------------------------------------------------------------------------------


def test_simulator_payloads_map() -> None:
    world = World(SimConfig(seed=7, athletes=2, activities=12, stream_step=10))
    seen_sports, seen_visibility, manual = set(), set(), 0
    for activity in world.activities.values():
        athlete = world.athletes[activity.athlete_id]
        streams = None if activity.manual else generate(activity, 10)
        for raw in (summary(activity), detailed(activity, athlete, streams)):
            mapped = activity_from_strava(json.loads(json.dumps(raw)), now=NOW)
            assert_valid(mapped)
            assert mapped.external_id == str(activity.id)
            assert mapped.edit.sport_type == activity.sport_type
            assert mapped.edit.title == activity.name
            assert mapped.edit.visibility == activity.visibility
            assert mapped.measurements.time_zone == activity.zone
            assert mapped.measurements.start_time == activity.start
            assert mapped.measurements.distance_meters == activity.distance
        seen_sports.add(mapped.edit.sport_type)
        seen_visibility.add(mapped.edit.visibility)
        if streams is None:
            manual += 1
            continue
        body = stream_set(streams, STREAM_ORDER, True, "distance", None)
        assert isinstance(body, dict)
        samples = samples_from_streams(activity.start, json.loads(json.dumps(body)))
        assert len(samples) == len(streams)
        assert samples[-1].time == activity.start + dt.timedelta(seconds=streams.time[-1])
        assert samples[-1].distance_meters == streams.distance[-1]
        if streams.heartrate is not None:
            assert [s.heart_rate_bpm for s in samples] == streams.heartrate
        if streams.latlng is not None:
            assert [[s.latitude, s.longitude] for s in samples] == streams.latlng
        else:
            assert all(s.latitude is None for s in samples)
    assert manual >= 2
    assert len(seen_visibility) == 3
    assert len(seen_sports) >= 2


# -- hostile payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ...}, "id"),
        ({"id": None}, "id"),
        ({"id": True}, "id"),
        ({"id": -5}, "id"),
        ({"start_date": ...}, "start_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"start_date": 1717225200}, "start_date"),
        ({"elapsed_time": ...}, "elapsed_time"),
        ({"elapsed_time": -1}, "elapsed_time"),
        ({"elapsed_time": "600"}, "elapsed_time"),
        ({"elapsed_time": True}, "elapsed_time"),
        ({"elapsed_time": 0}, "elapsed_time"),
        ({"elapsed_time": 40 * 86400, "moving_time": 1}, "elapsed_time"),
        ({"moving_time": -3}, "moving_time"),
        ({"moving_time": "fast"}, "moving_time"),
        ({"distance": -1.0}, "distance"),
        ({"distance": "far"}, "distance"),
        ({"start_date": "2099-01-01T00:00:00Z"}, "start_time"),
    ],
)
def test_unusable_payloads_raise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(StravaPayloadError, match=message):
        activity_from_strava(minimal(**overrides), now=NOW)
    assert issubclass(StravaPayloadError, ValueError)


def test_names_are_defaulted_and_clipped() -> None:
    assert activity_from_strava(minimal(name=None), now=NOW).edit.title == "Run"
    assert activity_from_strava(minimal(name="  "), now=NOW).edit.title == "Run"
    unnamed = minimal(name=..., sport_type="TrailRun")
    assert activity_from_strava(unnamed, now=NOW).edit.title == "Trail Run"
    long = activity_from_strava(minimal(name="x" * 500, description="y" * 20_000), now=NOW)
    assert (len(long.edit.title), len(long.edit.description)) == (200, 10_000)
    assert activity_from_strava(minimal(description=None), now=NOW).edit.description == ""


@pytest.mark.parametrize(
    ("sport_type", "legacy", "expected"),
    [
        ("Run", "Run", "Run"),
        ("MountainBikeRide", "Ride", "MountainBikeRide"),
        (..., "Ride", "Ride"),
        (None, "Swim", "Swim"),
        ("gravelride", None, "GravelRide"),
        ("Padel", "Workout", "Workout"),
        ("Quidditch", ..., GENERIC_SPORT),
        (12, ["Run"], GENERIC_SPORT),
    ],
)
def test_sport_types(sport_type: Any, legacy: Any, expected: str) -> None:
    activity = activity_from_strava(minimal(sport_type=sport_type, type=legacy), now=NOW)
    assert activity.edit.sport_type == expected
    assert_valid(activity)


@pytest.mark.parametrize(
    ("visibility", "private", "expected"),
    [
        ("everyone", False, Visibility.EVERYONE),
        ("followers_only", False, Visibility.FOLLOWERS_ONLY),
        ("only_me", True, Visibility.ONLY_ME),
        (..., True, Visibility.ONLY_ME),
        (..., ..., Visibility.EVERYONE),
        ("everyone", True, Visibility.ONLY_ME),  # never widen what Strava keeps private
        ("nonsense", ..., Visibility.EVERYONE),
    ],
)
def test_visibility(visibility: Any, private: Any, expected: Visibility) -> None:
    raw = minimal(visibility=visibility, private=private)
    assert activity_from_strava(raw, now=NOW).edit.visibility is expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("(GMT-08:00) America/Los_Angeles", "America/Los_Angeles"),
        ("(GMT+01:00) Europe/Paris", "Europe/Paris"),
        ("(GMT+00:00) Etc/Nowhere", ""),
        ("America/Los_Angeles", ""),
        (None, ""),
        (..., ""),
    ],
)
def test_time_zones(label: Any, expected: str) -> None:
    assert activity_from_strava(minimal(timezone=label), now=NOW).measurements.time_zone == (
        expected
    )


def test_times_and_numbers_are_repaired_where_safe() -> None:
    activity = activity_from_strava(
        minimal(
            id="1234",
            start_date="2025-06-01T09:00:00+02:00",
            moving_time=700,  # over elapsed_time
            total_elevation_gain=None,
            distance=...,
            has_heartrate=True,
            average_heartrate=300,  # impossible
            max_heartrate=181,
        ),
        now=NOW,
    )
    m = activity.measurements
    assert activity.external_id == "1234"
    assert m.start_time == START
    assert m.start_time.tzinfo is dt.UTC
    assert m.moving == m.elapsed == dt.timedelta(seconds=600)
    assert (m.distance_meters, m.elevation_gain_meters) == (0.0, 0.0)
    assert (m.average_heart_rate_bpm, m.max_heart_rate_bpm) == (None, 181.0)
    no_hr = minimal(has_heartrate=False, average_heartrate=150, max_heartrate=170)
    assert activity_from_strava(no_hr, now=NOW).measurements.max_heart_rate_bpm is None
    assert activity_from_strava(minimal(moving_time=...), now=NOW).measurements.moving is None


def test_power_cadence_and_speed_are_mapped_and_odd_values_dropped() -> None:
    measured = activity_from_strava(
        minimal(
            sport_type="Ride",
            average_cadence=86.4,
            average_watts=212.3,
            max_watts=812,
            device_watts=True,
            average_speed=7.9,
            max_speed=15.2,
        ),
        now=NOW,
    ).measurements
    assert (measured.average_cadence_rpm, measured.average_power_watts) == (86.4, 212.3)
    assert measured.max_power_watts == 812.0
    assert (measured.average_speed_meters_per_second, measured.max_speed_meters_per_second) == (
        7.9,
        15.2,
    )
    # Strava's estimate for a ride without a power meter is not a measurement.
    estimated = minimal(sport_type="Ride", average_watts=150.0, max_watts=400, device_watts=False)
    m = activity_from_strava(estimated, now=NOW).measurements
    assert (m.average_power_watts, m.max_power_watts) == (None, None)
    odd = minimal(average_cadence=-3, average_watts="lots", average_speed=float("nan"),
                  max_speed=True, max_watts=0)  # fmt: skip
    m = activity_from_strava(odd, now=NOW).measurements
    assert (
        m.average_cadence_rpm,
        m.average_power_watts,
        m.max_power_watts,
        m.average_speed_meters_per_second,
        m.max_speed_meters_per_second,
    ) == (None,) * 5


def test_streams_without_time_give_no_samples() -> None:
    assert samples_from_streams(START, {}) == []
    assert samples_from_streams(START, {"distance": {"data": [1.0, 2.0]}}) == []
    assert samples_from_streams(START, {"time": {"data": "0,1,2"}}) == []


def test_hostile_streams() -> None:
    streams: dict[str, Any] = {
        "time": {"data": [0, 1, 1, None, 3, -2, "4", 5.5, 2]},
        "distance": {"data": [0.0, 1.0, 2.0, 3.0, "4", None]},  # shorter than time
        "heartrate": {"data": [100.4, True, 120, 130, 140.6, 150, 160, 170, 180]},
        "cadence": {"data": [80, 81, 82, float("nan"), "83", 84, 85, 86, 87, 88, 89]},
        "watts": {"data": None},
        "latlng": {"data": [[1, 2], [3, 4], [5], None, [91, 0], [0, 0], [1, "2"], [7, 8], [9, 9]]},
        "velocity_smooth": {"data": [1, 2, 3, 4, 5, 6, 7, 8, float("inf")]},
        "altitude": "not a stream",
    }
    samples = samples_from_streams(START, streams)
    offsets = [(s.time - START).total_seconds() for s in samples]
    assert offsets == [0, 1, 2, 3, 5.5]
    by_offset = {o: s for o, s in zip(offsets, samples, strict=True)}
    zero, one, two, three, late = (by_offset[o] for o in offsets)
    assert (zero.distance_meters, zero.heart_rate_bpm, zero.cadence_rpm) == (0.0, 100, 80)
    assert (zero.latitude, zero.longitude, zero.speed_meters_per_second) == (1.0, 2.0, 1.0)
    # offset 1 appears twice: the second point (index 2) wins
    assert (one.distance_meters, one.heart_rate_bpm, one.cadence_rpm) == (2.0, 120, 82)
    assert (one.latitude, one.longitude) == (None, None)  # [5]
    assert two.heart_rate_bpm == 180
    assert two.speed_meters_per_second is None
    assert two.distance_meters is None  # past the end of the distance stream
    assert (three.distance_meters, three.heart_rate_bpm) == (None, 141)  # "4"; 140.6 rounds
    assert (three.latitude, three.longitude) == (None, None)  # latitude 91
    assert (late.heart_rate_bpm, late.cadence_rpm, late.latitude) == (170, 86, 7.0)
    assert all(s.power_watts is None and s.altitude_meters is None for s in samples)
    assert all(isinstance(s.heart_rate_bpm, int) for s in samples)
