"""GPX and TCX parsing: every real fixture, checked against values the test computes itself
(with the stdlib parser and its own haversine), plus synthetic and hostile inputs."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from domain.activities import Sample
from domain.files.gpx import parse_gpx, sport_from_gpx_type
from domain.files.model import FileError, FileFormat, ParsedActivity
from domain.files.tcx import parse_tcx
from domain.files.xml import MAX_SAMPLES
from tests.support import real_fixture


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres (mean Earth radius), written here independently."""
    r = 6_371_008.8
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def path_length(points: list[tuple[float, float]]) -> float:
    return sum(haversine(a, b) for a, b in itertools.pairwise(points))


def sample_path(samples: list[Sample]) -> list[tuple[float, float]]:
    return [
        (s.latitude, s.longitude)
        for s in samples
        if s.latitude is not None and s.longitude is not None
    ]


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


# --- GPX fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GpxExpected:
    samples: int
    untimed: int
    first: str | None
    last: str | None
    sport: str | None
    title: str | None


GPX_EXPECTED: dict[str, GpxExpected] = {
    "run_garmin-connect_hr-cad.gpx": GpxExpected(
        988, 0, "2017-07-29T14:46:35Z", "2017-07-29T16:18:13Z", "Run", "casual stroll"
    ),
    "ride_garmin-connect_edge1000_hr-cad-temp.gpx": GpxExpected(
        96, 0, "2020-06-01T14:52:40Z", "2020-06-01T14:54:46Z", "Ride", "Leiden Fietsen"
    ),
    # 358 untimed track points + 2 waypoints; 176 + 337 timed points in two tracks.
    "gpsbabel_4-tracks_partial-times.gpx": GpxExpected(
        513, 360, "2010-10-03T09:36:30Z", "2010-10-03T13:19:31Z", None, "03-OCT-10"
    ),
    "track_empty-second-segment.gpx": GpxExpected(
        9, 0, "2013-07-06T17:26:26Z", "2013-07-06T17:27:42Z", None, "2013-07-06T14:59:00Z"
    ),
    "route_strava_run_no-times.gpx": GpxExpected(0, 113, None, None, "Run", "Afternoon Run"),
    "runkeeper_waypoint-hr-only.gpx": GpxExpected(0, 1, None, None, None, None),
    "bom_no-namespace_waypoint-only.gpx": GpxExpected(0, 1, None, None, None, None),
}
GPX_FAILING = {"malformed_bad-character.gpx": "FILE_CORRUPT"}


def test_every_gpx_fixture_has_an_expected_outcome() -> None:
    names = {p.name for p in real_fixture("gpx").glob("*.gpx")}
    assert names == set(GPX_EXPECTED) | set(GPX_FAILING)


def independent_gpx_track(data: bytes) -> tuple[list[tuple[dt.datetime, float, float]], int]:
    """Timed track points (time-sorted, last of a repeated time) and the count of untimed
    points, read with the plain stdlib parser (fine for trusted fixtures)."""
    root = ET.fromstring(data)
    timed: dict[dt.datetime, tuple[float, float]] = {}
    untimed = 0
    for el in root.iter():
        name = local(el.tag)
        if name in ("wpt", "rtept"):
            untimed += 1
        elif name == "trkpt":
            times = [c.text for c in el if local(c.tag) == "time" and c.text]
            if times:
                timed[utc(times[0].strip())] = (float(el.attrib["lat"]), float(el.attrib["lon"]))
            else:
                untimed += 1
    return [(t, *timed[t]) for t in sorted(timed)], untimed


@pytest.mark.parametrize("name", sorted(GPX_EXPECTED))
def test_gpx_fixture(name: str) -> None:
    data = real_fixture(f"gpx/{name}").read_bytes()
    expected = GPX_EXPECTED[name]
    activity = parse_gpx(data)
    assert activity.format == FileFormat.GPX
    assert len(activity.samples) == expected.samples
    assert activity.untimed_points == expected.untimed
    assert activity.sport_type == expected.sport
    assert activity.title == expected.title

    track, untimed = independent_gpx_track(data)
    assert len(track) == expected.samples
    assert untimed == expected.untimed
    if expected.first is None:
        assert activity.start_time is None
        assert activity.samples == []
        return
    assert activity.start_time == utc(expected.first) == track[0][0]
    assert activity.samples[-1].time == utc(expected.last or "") == track[-1][0]
    assert all(s.time.tzinfo is dt.UTC for s in activity.samples)
    times = [s.time for s in activity.samples]
    assert times == sorted(set(times))
    independent = path_length([(lat, lon) for _, lat, lon in track])
    assert independent > 0
    assert path_length(sample_path(activity.samples)) == pytest.approx(independent, rel=1e-9)


def test_gpx_garmin_extensions_are_read() -> None:
    activity = parse_gpx(
        real_fixture("gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx").read_bytes()
    )
    first = activity.samples[0]
    assert (first.heart_rate_bpm, first.cadence_rpm) == (154, 90)
    assert first.altitude_meters == pytest.approx(-20.2, abs=1e-6)
    assert first.latitude == pytest.approx(52.157762758, abs=1e-8)


def test_gpx_run_distance_is_plausible() -> None:
    """A sanity anchor outside the parser: the Garmin run is a ~90 min stroll of a few km."""
    activity = parse_gpx(real_fixture("gpx/run_garmin-connect_hr-cad.gpx").read_bytes())
    assert 2_000 < path_length(sample_path(activity.samples)) < 15_000
    hrs = [s.heart_rate_bpm for s in activity.samples if s.heart_rate_bpm is not None]
    assert len(hrs) == 988


def test_bom_no_namespace_file() -> None:
    data = real_fixture("gpx/bom_no-namespace_waypoint-only.gpx").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    activity = parse_gpx(data)
    assert activity.untimed_points == 1
    assert activity.start_time is None


def test_malformed_gpx_is_corrupt_with_parser_message() -> None:
    with pytest.raises(FileError) as info:
        parse_gpx(real_fixture("gpx/malformed_bad-character.gpx").read_bytes())
    assert info.value.reason == "FILE_CORRUPT"
    assert "line 1" in info.value.message


# --- TCX fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TcxExpected:
    samples: int
    first: str
    last: str
    sport: str | None
    device: str


TCX_EXPECTED: dict[str, TcxExpected] = {
    # 100 trackpoints; lap boundaries repeat 4 times.
    "ride_edge1000_hr-cad-power_5laps.tcx": TcxExpected(
        96, "2020-06-01T14:52:40Z", "2020-06-01T14:54:46Z", "Ride", "Garmin Edge 1000"
    ),
    "run_fitbit-ionic_hr_bom_tz-offset.tcx": TcxExpected(
        200, "2022-12-04T20:14:28-04:00", "2022-12-04T20:30:46-04:00", "Run", "Fitbit Ionic"
    ),
    "run_forerunner410_hr.tcx": TcxExpected(
        384,
        "2012-12-26T21:29:53Z",
        "2012-12-26T22:03:05Z",
        "Run",
        "Forerunner 410 Software Version 2.20",
    ),
    "run_forerunner410_no-hr.tcx": TcxExpected(
        384,
        "2012-12-26T21:29:53Z",
        "2012-12-26T22:03:05Z",
        "Run",
        "Forerunner 410 Software Version 2.20",
    ),
    "xcski-sport-other_vivoactive-hr_hr-runcadence.tcx": TcxExpected(
        486, "2020-12-26T15:14:21Z", "2020-12-26T15:54:22Z", None, "vívoactive HR"
    ),
}


def test_every_tcx_fixture_has_an_expected_outcome() -> None:
    assert {p.name for p in real_fixture("tcx").glob("*.tcx")} == set(TCX_EXPECTED)


def independent_tcx(data: bytes) -> tuple[list[dt.datetime], float, int]:
    """Distinct trackpoint times (sorted), the largest DistanceMeters of any trackpoint, and
    the number of trackpoints with a heart rate, read with the stdlib parser."""
    root = ET.fromstring(data)
    times: set[dt.datetime] = set()
    distance = 0.0
    hr_points = 0
    for tp in root.iter():
        if local(tp.tag) != "Trackpoint":
            continue
        children = {local(c.tag): c for c in tp}
        if "Time" in children and children["Time"].text:
            times.add(utc(children["Time"].text.strip()))
        if "DistanceMeters" in children and children["DistanceMeters"].text:
            distance = max(distance, float(children["DistanceMeters"].text))
        if "HeartRateBpm" in children:
            hr_points += 1
    return sorted(times), distance, hr_points


@pytest.mark.parametrize("name", sorted(TCX_EXPECTED))
def test_tcx_fixture(name: str) -> None:
    data = real_fixture(f"tcx/{name}").read_bytes()
    expected = TCX_EXPECTED[name]
    activities = parse_tcx(data)
    assert len(activities) == 1
    activity = activities[0]
    assert activity.format == FileFormat.TCX
    assert activity.sport_type == expected.sport
    assert activity.device == expected.device
    assert len(activity.samples) == expected.samples

    times, device_distance, hr_points = independent_tcx(data)
    assert [s.time for s in activity.samples] == times
    assert activity.start_time == utc(expected.first) == times[0]
    assert activity.samples[-1].time == utc(expected.last) == times[-1]
    distances = [s.distance_meters for s in activity.samples if s.distance_meters is not None]
    assert max(distances) == pytest.approx(device_distance, rel=1e-12)
    hr = [s.heart_rate_bpm for s in activity.samples if s.heart_rate_bpm is not None]
    # Repeated lap-boundary times are merged, so at most as many readings as the file has.
    assert 0 < len(hr) <= hr_points if hr_points else hr == []


def test_tcx_utc_offsets_become_utc() -> None:
    (activity,) = parse_tcx(real_fixture("tcx/run_fitbit-ionic_hr_bom_tz-offset.tcx").read_bytes())
    assert activity.start_time == dt.datetime(2022, 12, 5, 0, 14, 28, tzinfo=dt.UTC)
    assert activity.start_time is not None
    assert activity.start_time.utcoffset() == dt.timedelta(0)


def test_tcx_power_speed_cadence_and_run_cadence() -> None:
    (ride,) = parse_tcx(real_fixture("tcx/ride_edge1000_hr-cad-power_5laps.tcx").read_bytes())
    first = ride.samples[0]
    assert (first.heart_rate_bpm, first.cadence_rpm, first.power_watts) == (154, 90, 162)
    assert first.speed_meters_per_second == pytest.approx(6.438, abs=1e-3)
    assert first.distance_meters == pytest.approx(6.59, abs=1e-6)
    (ski,) = parse_tcx(
        real_fixture("tcx/xcski-sport-other_vivoactive-hr_hr-runcadence.tcx").read_bytes()
    )
    assert any(s.cadence_rpm for s in ski.samples)


def recorded_legs(samples: list[Sample], max_gap_s: float = 10.0) -> list[tuple[Sample, Sample]]:
    """Consecutive sample pairs not spanning a pause (a time gap over `max_gap_s`)."""
    return [
        (a, b)
        for a, b in itertools.pairwise(samples)
        if (b.time - a.time).total_seconds() <= max_gap_s
    ]


def test_edge1000_gpx_and_tcx_agree() -> None:
    """Same ride, two files. Duration agrees directly. Distance: the TCX total (668.19 m)
    counts 6.59 m before the first point and only 7.68 m over a 32 s auto-pause in which GPS
    moved 246 m, so raw GPX haversine (899 m) is 35 % off it. Compared over the recorded
    legs (no pause), device distance and GPX haversine agree within 1 %."""
    gpx = parse_gpx(real_fixture("gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx").read_bytes())
    (tcx,) = parse_tcx(real_fixture("tcx/ride_edge1000_hr-cad-power_5laps.tcx").read_bytes())

    def duration(a: ParsedActivity) -> float:
        return (a.samples[-1].time - a.samples[0].time).total_seconds()

    assert duration(gpx) == pytest.approx(duration(tcx), rel=0.01)
    assert duration(gpx) == 126

    tcx_total = max(s.distance_meters or 0.0 for s in tcx.samples)
    assert tcx_total == pytest.approx(668.19, abs=0.01)
    assert path_length(sample_path(gpx.samples)) == pytest.approx(899.26, abs=0.1)

    device = sum(
        (b.distance_meters or 0.0) - (a.distance_meters or 0.0)
        for a, b in recorded_legs(tcx.samples)
    )
    geodesic = sum(
        haversine((a.latitude or 0.0, a.longitude or 0.0), (b.latitude or 0.0, b.longitude or 0.0))
        for a, b in recorded_legs(gpx.samples)
    )
    assert len(recorded_legs(gpx.samples)) == len(gpx.samples) - 2  # exactly one pause
    assert geodesic == pytest.approx(device, rel=0.01)


# --- Synthetic files: the rules --------------------------------------------------------------

GPX11_HEAD = (
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1" '
    b'xmlns:tpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2" version="1.1">'
)


def test_gpx_samples_sorted_deduplicated_and_validated() -> None:
    data = GPX11_HEAD + (
        b"<trk><type>9</type><trkseg>"
        b'<trkpt lat="10" lon="20"><time>2024-01-01T10:00:05+02:00</time>'
        b"<extensions><tpx:TrackPointExtension><tpx:hr>300</tpx:hr><tpx:cad>-3</tpx:cad>"
        b"</tpx:TrackPointExtension></extensions></trkpt>"
        b'<trkpt lat="95" lon="20"><time>2024-01-01T08:00:00Z</time><ele>x</ele>'
        b"<extensions><tpx:TrackPointExtension><tpx:hr>150</tpx:hr><tpx:cad>85</tpx:cad>"
        b"</tpx:TrackPointExtension></extensions></trkpt>"
        b"</trkseg><trkseg>"
        b'<trkpt lat="3" lon="3"><time>0001-01-01T00:00:00+01:00</time></trkpt>'
        b'<trkpt lat="4" lon="4"><time>2024-13-01T00:00:00Z</time></trkpt>'
        b'<trkpt lat="5" lon="5"><time>2024-01-01T09:00:00Z</time><extensions><power>1e400'
        b"</power><tpx:cad>1e300</tpx:cad></extensions></trkpt>"
        b'<trkpt lat="11" lon="21"><time>2024-01-01T08:00:05Z</time><ele>12.5</ele></trkpt>'
        b'<trkpt lat="1" lon="2"/>'
        b"</trkseg></trk></gpx>"
    )
    activity = parse_gpx(data)
    assert activity.sport_type == "Run"
    # The point without time and the two with impossible times.
    assert activity.untimed_points == 3
    assert [s.time for s in activity.samples] == [
        dt.datetime(2024, 1, 1, 8, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 8, 0, 5, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 9, 0, 0, tzinfo=dt.UTC),
    ]
    first, second, third = activity.samples
    assert (third.latitude, third.power_watts, third.cadence_rpm) == (5.0, None, None)
    assert (first.latitude, first.longitude, first.altitude_meters) == (None, None, None)
    assert (first.heart_rate_bpm, first.cadence_rpm) == (150, 85)
    # 10:00:05+02:00 == 08:00:05Z: the later point in the file wins.
    assert (second.latitude, second.longitude, second.altitude_meters) == (11.0, 21.0, 12.5)
    assert (second.heart_rate_bpm, second.cadence_rpm) == (None, None)


def test_gpx_10_without_namespace_and_v1_extension() -> None:
    data = (
        b'<?xml version="1.0"?><gpx version="1.0"><name>Morning</name><desc>easy</desc>'
        b'<trk><type>Cycling</type><trkseg><trkpt lat="1" lon="1"><time>2024-05-01T06:00:00Z'
        b'</time></trkpt><trkpt lat="1.001" lon="1"><time>2024-05-01T06:00:01Z</time>'
        b'<extensions><gpxtpx:TrackPointExtension xmlns:gpxtpx="http://www.garmin.com/'
        b'xmlschemas/TrackPointExtension/v1"><gpxtpx:hr>99</gpxtpx:hr>'
        b"</gpxtpx:TrackPointExtension></extensions></trkpt></trkseg></trk></gpx>"
    )
    activity = parse_gpx(data)
    assert (activity.title, activity.description, activity.sport_type) == (
        "Morning",
        "easy",
        "Ride",
    )
    assert activity.samples[1].heart_rate_bpm == 99
    assert path_length(sample_path(activity.samples)) == pytest.approx(111.2, abs=0.5)


@pytest.mark.parametrize(
    ("value", "sport"),
    [("running", "Run"), ("Run", "Run"), ("9", "Run"), ("cycling", "Ride"), ("TrailRun",
     "TrailRun"), ("jkljkl", None), ("", None), (None, None)],
)  # fmt: skip
def test_gpx_type_mapping(value: str | None, sport: str | None) -> None:
    assert sport_from_gpx_type(value) == sport


TCX_HEAD = (
    b'<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"'
    b' xmlns:ax="http://www.garmin.com/xmlschemas/ActivityExtension/v2"><Activities>'
)


def tcx_point(time: str, extra: bytes = b"") -> bytes:
    return b"<Trackpoint><Time>" + time.encode() + b"</Time>" + extra + b"</Trackpoint>"


def test_tcx_several_activities_and_ax_namespace() -> None:
    data = (
        TCX_HEAD
        + b'<Activity Sport="Biking"><Id>2024-01-01T10:00:00Z</Id><Lap><Track>'
        + tcx_point(
            "2024-01-01T10:00:00Z",
            b"<HeartRateBpm><Value>10</Value></HeartRateBpm><Cadence>80</Cadence>"
            b"<Extensions><ax:TPX><ax:Watts>250</ax:Watts><ax:Speed>8.5</ax:Speed>"
            b"</ax:TPX></Extensions>",
        )
        + b"<Trackpoint><DistanceMeters>3</DistanceMeters></Trackpoint>"
        + b"</Track></Lap><Notes>hard</Notes><Creator><Name>Edge</Name></Creator></Activity>"
        + b'<Activity Sport="Running"><Id>2024-01-02T10:00:00+01:00</Id><Lap/></Activity>'
        + b"</Activities></TrainingCenterDatabase>"
    )
    ride, run = parse_tcx(data)
    assert (ride.sport_type, ride.description, ride.device, ride.untimed_points) == (
        "Ride",
        "hard",
        "Edge",
        1,
    )
    (sample,) = ride.samples
    assert (sample.heart_rate_bpm, sample.cadence_rpm, sample.power_watts) == (None, 80, 250)
    assert sample.speed_meters_per_second == 8.5
    assert run.sport_type == "Run"
    assert run.samples == []
    assert run.start_time == dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)


def test_tcx_without_activities() -> None:
    with pytest.raises(FileError) as info:
        parse_tcx(TCX_HEAD + b"</Activities></TrainingCenterDatabase>")
    assert info.value.reason == "NO_ACTIVITIES"


# --- Hostile input ---------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE gpx [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<gpx><metadata><name>&lol9;</name></metadata></gpx>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<gpx><trk><name>&x;</name></trk></gpx>"""

EXTERNAL_ENTITY_TCX = EXTERNAL_ENTITY.replace(b"gpx", b"TrainingCenterDatabase")


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entities_are_unsafe_for_gpx(data: bytes) -> None:
    with pytest.raises(FileError) as info:
        parse_gpx(data)
    assert info.value.reason == "FILE_UNSAFE"
    assert "root:" not in info.value.message  # /etc/passwd was never read into anything


@pytest.mark.parametrize(
    "data", [BILLION_LAUGHS.replace(b"gpx", b"TrainingCenterDatabase"), EXTERNAL_ENTITY_TCX]
)
def test_entities_are_unsafe_for_tcx(data: bytes) -> None:
    with pytest.raises(FileError) as info:
        parse_tcx(data)
    assert info.value.reason == "FILE_UNSAFE"


def test_truncated_files_are_corrupt() -> None:
    gpx = real_fixture("gpx/run_garmin-connect_hr-cad.gpx").read_bytes()
    tcx = real_fixture("tcx/run_forerunner410_hr.tcx").read_bytes()
    with pytest.raises(FileError) as info:
        parse_gpx(gpx[: len(gpx) // 2])
    assert info.value.reason == "FILE_CORRUPT"
    with pytest.raises(FileError) as info:
        parse_tcx(tcx[: len(tcx) // 2])
    assert info.value.reason == "FILE_CORRUPT"


def test_wrong_type_is_rejected() -> None:
    tcx = real_fixture("tcx/run_forerunner410_hr.tcx").read_bytes()
    gpx = real_fixture("gpx/track_empty-second-segment.gpx").read_bytes()
    with pytest.raises(FileError) as info:
        parse_gpx(tcx)
    assert info.value.reason == "FILE_WRONG_TYPE"
    with pytest.raises(FileError) as info:
        parse_tcx(gpx)
    assert info.value.reason == "FILE_WRONG_TYPE"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x0e\x10\xd9\x07\x00\x00\x00\x00.FIT\x00\x00", b"PK\x03\x04garbage", b"just text"],
)
def test_not_xml_is_corrupt(data: bytes) -> None:
    for parse in (parse_gpx, parse_tcx):
        with pytest.raises(FileError) as info:
            parse(data)
        assert info.value.reason == "FILE_CORRUPT"


def test_real_fit_file_claiming_gpx_is_corrupt() -> None:
    fit = real_fixture("fit/ride_edge1000_hr-cad-power.fit")
    with pytest.raises(FileError) as info:
        parse_gpx(fit.read_bytes())
    assert info.value.reason == "FILE_CORRUPT"


def test_too_many_gpx_points_stop_parsing_early() -> None:
    """MAX_SAMPLES + 1 points followed by broken XML: FILE_TOO_LARGE, not FILE_CORRUPT,
    proves the parser stopped at the limit instead of reading the whole file first."""
    data = b"<gpx><trk><trkseg>" + b'<trkpt lat="1" lon="2"/>' * (MAX_SAMPLES + 1) + b"<<<"
    with pytest.raises(FileError) as info:
        parse_gpx(data)
    assert info.value.reason == "FILE_TOO_LARGE"


def test_exactly_max_samples_gpx_points_parse() -> None:
    data = (
        b"<gpx><trk><trkseg>" + b'<trkpt lat="1" lon="2"/>' * MAX_SAMPLES + b"</trkseg></trk></gpx>"
    )
    assert parse_gpx(data).untimed_points == MAX_SAMPLES


def test_too_many_tcx_points() -> None:
    data = (
        TCX_HEAD
        + b'<Activity Sport="Running"><Lap><Track>'
        + b"<Trackpoint/>" * (MAX_SAMPLES + 1)
        + b"<<<"
    )
    with pytest.raises(FileError) as info:
        parse_tcx(data)
    assert info.value.reason == "FILE_TOO_LARGE"
