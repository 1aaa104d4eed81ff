"""GPX 1.0 / 1.1 to one ParsedActivity.

Decisions:
- All tracks and segments of a file form one activity: devices split a recording into
  segments at pauses and GPSBabel writes one track per log, yet the athlete did one thing.
  Samples are merged and time-sorted; segment breaks are not kept (derived metrics detect
  pauses from time gaps anyway).
- Only timed track points become samples. Track points without a time, route points and
  waypoints place nothing in time; they are counted in `untimed_points`. A file with no
  timed point is still returned (start_time None, no samples, untimed_points > 0): the
  import reports it as skipped for having no timestamps, instead of as a broken file.
- Namespaces are ignored (GPX 1.0, 1.1 or none; Garmin TrackPointExtension v1 or v2 under
  any prefix): element names alone are unambiguous in GPX.
- Title, description and sport come from the first track that has them, else from the
  metadata. `device` stays None: GPX `creator` names the writing software ("Garmin
  Connect", "StravaGPX", "GPSBabel"), not what recorded it.
- Temperature (`atemp`) is read by no one: Sample has no temperature channel.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from domain.activities import Sample
from domain.files.model import FileFormat, ParsedActivity
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
from domain.sports import SPORT_TYPES

_POINTS = frozenset({"trkpt", "rtept", "wpt"})
_TEXT_FIELDS = frozenset({"name", "desc", "type"})

# GPX `type` is free text: what apps write, and the numeric codes Strava's exports use.
_SPORT_ALIASES: dict[str, str] = {
    "run": "Run",
    "running": "Run",
    "9": "Run",
    "trail_running": "TrailRun",
    "trail running": "TrailRun",
    "ride": "Ride",
    "cycling": "Ride",
    "biking": "Ride",
    "road_biking": "Ride",
    "bike": "Ride",
    "1": "Ride",
    "mountain_biking": "MountainBikeRide",
    "walk": "Walk",
    "walking": "Walk",
    "10": "Walk",
    "hike": "Hike",
    "hiking": "Hike",
    "4": "Hike",
    "swim": "Swim",
    "swimming": "Swim",
    "open_water_swimming": "Swim",
    "cross_country_skiing": "NordicSki",
}
_SPORT_BY_LOWER = {sport.lower(): sport for sport in SPORT_TYPES}


def sport_from_gpx_type(value: str | None) -> str | None:
    """Map a GPX `type` loosely to a Stride sport; unknown words give None, not a guess."""
    if value is None:
        return None
    key = value.strip().lower()
    return _SPORT_BY_LOWER.get(key) or _SPORT_ALIASES.get(key.replace("-", "_"))


@dataclass
class _Builder:
    samples: list[Sample] = field(default_factory=list)
    untimed: int = 0
    track_text: dict[str, str] = field(default_factory=dict)
    metadata_text: dict[str, str] = field(default_factory=dict)


def parse_gpx(data: bytes) -> ParsedActivity:
    """Parse a GPX file into one activity (see the module docstring for the rules).

    Raises FileError: FILE_CORRUPT (not well-formed), FILE_UNSAFE (entities), FILE_WRONG_TYPE
    (root is not <gpx>), FILE_TOO_LARGE (more than MAX_SAMPLES points).
    """
    builder = _Builder()
    counter = PointCounter()
    stack: list[Element] = []
    for event, element in iter_elements(data):
        if event == "start":
            if not stack:
                check_root(element, "gpx", "GPX")
            stack.append(element)
            continue
        stack.pop()
        name = local_name(element.tag)
        if name in _POINTS:
            counter.add()
            _take_point(builder, element, name)
            # Drop processed points so memory stays flat however long the file is.
            if stack:
                del stack[-1][:]
        elif name in _TEXT_FIELDS and stack:
            _take_text(builder, name, element, local_name(stack[-1].tag))
    return _finish(builder)


def _take_point(builder: _Builder, element: Element, name: str) -> None:
    time = parse_time(_child_text(element, "time")) if name == "trkpt" else None
    if time is None:
        builder.untimed += 1
        return
    builder.samples.append(_sample(element, time))


def _take_text(builder: _Builder, name: str, element: Element, parent: str) -> None:
    """Keep the first non-blank name/desc/type of a track, and of the metadata (GPX 1.1
    puts them in <metadata>, GPX 1.0 directly under <gpx>)."""
    text = text_of(element)
    if text is None:
        return
    if parent == "trk":
        builder.track_text.setdefault(name, text)
    elif parent in ("metadata", "gpx"):
        builder.metadata_text.setdefault(name, text)


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if local_name(child.tag) == name:
            return text_of(child)
    return None


def _extension_values(element: Element) -> dict[str, str]:
    """Leaf values under <extensions>, by local name: hr, cad, atemp, speed, power."""
    values: dict[str, str] = {}
    for child in element:
        if local_name(child.tag) != "extensions":
            continue
        for leaf in child.iter():
            text = text_of(leaf)
            if text is not None and len(leaf) == 0:
                values.setdefault(local_name(leaf.tag), text)
    return values


def _sample(element: Element, time: dt.datetime) -> Sample:
    lat, lon = valid_position(parse_float(element.get("lat")), parse_float(element.get("lon")))
    ext = _extension_values(element)
    return Sample(
        time=time,
        latitude=lat,
        longitude=lon,
        altitude_meters=parse_float(_child_text(element, "ele")),
        heart_rate_bpm=valid_heart_rate(parse_int(ext.get("hr"))),
        cadence_rpm=valid_cadence(parse_int(ext.get("cad"))),
        power_watts=valid_power(parse_int(ext.get("power"))),
        speed_meters_per_second=non_negative_float(parse_float(ext.get("speed"))),
    )


def _finish(builder: _Builder) -> ParsedActivity:
    samples = ordered_samples(builder.samples)

    def pick(key: str) -> str | None:
        return builder.track_text.get(key) or builder.metadata_text.get(key)

    return ParsedActivity(
        format=FileFormat.GPX,
        start_time=samples[0].time if samples else None,
        samples=samples,
        sport_type=sport_from_gpx_type(pick("type")),
        title=pick("name"),
        description=pick("desc"),
        device=None,
        untimed_points=builder.untimed,
    )
