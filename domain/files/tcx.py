"""TCX (Garmin Training Center Database v2) to one ParsedActivity per <Activity>.

Decisions:
- Each <Activity> under <Activities> is one activity; its laps and tracks are merged and
  time-sorted (lap boundaries are not kept). Courses and workouts plan, they record
  nothing, and are ignored. A file without any <Activity> is FileError NO_ACTIVITIES, so
  the import reports it clearly instead of importing nothing silently.
- Trackpoints without <Time> are counted in `untimed_points`. An activity without timed
  trackpoints is still returned with no samples; its `start_time` is the activity <Id>
  (a time by the schema) when that parses, else None.
- `DistanceMeters` is the device's cumulative distance and is kept per sample as is.
- Cadence is <Cadence> (bike) or the TPX RunCadence extension; speed and power come from
  the ActivityExtension TPX (Speed, Watts) under any prefix (ns3, ax, ...).
- Sport: Running -> Run, Biking -> Ride, Other (or anything else) -> None.
- `description` is the activity's <Notes>; `device` is Creator/Name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from domain.activities import Sample
from domain.files.model import FileError, FileFormat, ParsedActivity
from domain.files.xml import (
    PointCounter,
    check_root,
    iter_elements,
    local_name,
    non_negative_float,
    ordered_samples,
    parse_float,
    parse_int,
    parse_time,
    text_of,
    valid_cadence,
    valid_heart_rate,
    valid_position,
    valid_power,
)

_SPORTS: dict[str, str] = {"running": "Run", "biking": "Ride"}


@dataclass
class _Builder:
    sport: str | None
    samples: list[Sample] = field(default_factory=list)
    untimed: int = 0
    activity_id: str | None = None
    notes: str | None = None
    device: str | None = None


def parse_tcx(data: bytes) -> list[ParsedActivity]:
    """Parse a TCX file into its activities, in file order (see the module docstring).

    Raises FileError: FILE_CORRUPT, FILE_UNSAFE, FILE_WRONG_TYPE (root is not
    <TrainingCenterDatabase>), FILE_TOO_LARGE (more than MAX_SAMPLES trackpoints),
    NO_ACTIVITIES.
    """
    activities: list[ParsedActivity] = []
    current: _Builder | None = None
    counter = PointCounter()
    stack: list[Element] = []
    for event, element in iter_elements(data):
        name = local_name(element.tag)
        if event == "start":
            if not stack:
                check_root(element, "TrainingCenterDatabase", "TCX")
            if name == "Activity":
                current = _Builder(sport=_SPORTS.get((element.get("Sport") or "").lower()))
            stack.append(element)
            continue
        stack.pop()
        if current is None:
            continue
        if name == "Trackpoint":
            counter.add()
            _take_trackpoint(current, element)
            # Drop processed points so memory stays flat however long the file is.
            if stack:
                del stack[-1][:]
        elif name == "Activity":
            activities.append(_finish(current))
            current = None
        elif stack:
            _take_activity_field(current, name, element, local_name(stack[-1].tag))
    if not activities:
        raise FileError("NO_ACTIVITIES", "the TCX file holds no <Activity>")
    return activities


def _take_activity_field(builder: _Builder, name: str, element: Element, parent: str) -> None:
    if parent == "Activity" and name == "Id":
        builder.activity_id = text_of(element)
    elif parent == "Activity" and name == "Notes":
        builder.notes = text_of(element)
    elif parent == "Creator" and name == "Name":
        builder.device = text_of(element)


def _take_trackpoint(builder: _Builder, element: Element) -> None:
    values = _leaf_values(element)
    time = parse_time(values.get("Time"))
    if time is None:
        builder.untimed += 1
        return
    builder.samples.append(_sample(values, time))


def _leaf_values(element: Element) -> dict[str, str]:
    """Leaf texts of one trackpoint by local name. Leaf names are unique within a
    trackpoint (HeartRateBpm/Value is the only <Value>), so the tree need not be walked
    path by path."""
    values: dict[str, str] = {}
    for leaf in element.iter():
        if len(leaf) == 0:
            text = text_of(leaf)
            if text is not None:
                values.setdefault(local_name(leaf.tag), text)
    return values


def _sample(values: dict[str, str], time: dt.datetime) -> Sample:
    lat, lon = valid_position(
        parse_float(values.get("LatitudeDegrees")), parse_float(values.get("LongitudeDegrees"))
    )
    cadence = values.get("Cadence") or values.get("RunCadence")
    return Sample(
        time=time,
        distance_meters=non_negative_float(parse_float(values.get("DistanceMeters"))),
        latitude=lat,
        longitude=lon,
        altitude_meters=parse_float(values.get("AltitudeMeters")),
        heart_rate_bpm=valid_heart_rate(parse_int(values.get("Value"))),
        cadence_rpm=valid_cadence(parse_int(cadence)),
        power_watts=valid_power(parse_int(values.get("Watts"))),
        speed_meters_per_second=non_negative_float(parse_float(values.get("Speed"))),
    )


def _finish(builder: _Builder) -> ParsedActivity:
    samples = ordered_samples(builder.samples)
    start = samples[0].time if samples else parse_time(builder.activity_id)
    return ParsedActivity(
        format=FileFormat.TCX,
        start_time=start,
        samples=samples,
        sport_type=builder.sport,
        title=None,
        description=builder.notes,
        device=builder.device,
        untimed_points=builder.untimed,
    )
