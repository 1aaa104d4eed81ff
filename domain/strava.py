"""Strava API JSON to Stride's domain types: pure functions, no I/O.

Strava's payloads come from many eras (2013 recordings lack ``sport_type`` and
``visibility``) and from devices that put nulls and odd values in streams. The sync must import
what can be imported, so the mapping repairs what it safely can (unknown sport, unknown time
zone, out-of-range heart rate, bad stream points) and raises `StravaPayloadError` only when the
activity itself cannot be placed: no id, no start, broken durations.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.activities import (
    MAX_ELAPSED,
    ActivityEdit,
    Measurements,
    Sample,
    Visibility,
    validate_edit,
    validate_measurements,
)
from domain.errors import Violations
from domain.sports import SPORT_TYPES
from domain.validation import is_time_zone

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
# Stride's catch-all sport: Strava's own generic type, so it stays a valid Strava value.
GENERIC_SPORT = "Workout"
_SPORTS_BY_LOWER = {sport.lower(): sport for sport in SPORT_TYPES}
# "(GMT-08:00) America/Los_Angeles": the IANA name follows the standard-offset label.
_TIME_ZONE_LABEL = re.compile(r"^\s*\(GMT[^)]*\)\s*(\S+)\s*$")
_VISIBILITIES = {v.value: v for v in Visibility}
_WORD_BREAK = re.compile(r"(?<=[a-z])(?=[A-Z])")


class StravaPayloadError(ValueError):
    """A Strava activity that cannot become a Stride activity (the sync skips and reports it)."""


@dataclass(frozen=True)
class StravaActivity:
    external_id: str  # Strava's activity id, as text
    edit: ActivityEdit
    measurements: Measurements


def activity_from_strava(
    raw: Mapping[str, Any], *, now: dt.datetime | None = None
) -> StravaActivity:
    """Map a SummaryActivity or DetailedActivity; the result passes Stride's validation.

    ``now`` bounds the start time as `validate_measurements` does (defaults to the clock).
    """
    external_id = _external_id(raw.get("id"))
    sport_type = _sport_type(raw.get("sport_type"), raw.get("type"))
    edit = ActivityEdit(
        title=_title(raw.get("name"), sport_type),
        sport_type=sport_type,
        description=_text(raw.get("description"))[:MAX_DESCRIPTION],
        visibility=_visibility(raw.get("visibility"), raw.get("private")),
    )
    elapsed = _duration(raw, "elapsed_time")
    if elapsed is None:
        raise StravaPayloadError(f"activity {external_id}: elapsed_time is missing")
    moving = _duration(raw, "moving_time")
    if moving is not None and moving > elapsed:
        moving = elapsed  # Strava rounds each separately; never let moving exceed elapsed
    has_hr = raw.get("has_heartrate") is not False
    # Strava estimates a ride's power without a power meter (device_watts false): a model's
    # guess, not a measurement, so it is left out (the samples then have no power either).
    measured_power = raw.get("device_watts") is not False
    measurements = Measurements(
        start_time=_start_time(raw.get("start_date"), external_id),
        elapsed=elapsed,
        time_zone=_time_zone(raw.get("timezone")),
        moving=moving,
        distance_meters=_amount(raw, "distance", external_id),
        elevation_gain_meters=_amount(raw, "total_elevation_gain", external_id),
        average_heart_rate_bpm=_heart_rate(raw.get("average_heartrate")) if has_hr else None,
        max_heart_rate_bpm=_heart_rate(raw.get("max_heartrate")) if has_hr else None,
        # elev_high/elev_low are extremes, not a loss: the loss comes from the samples.
        average_cadence_rpm=_positive(raw.get("average_cadence")),
        average_power_watts=_positive(raw.get("average_watts")) if measured_power else None,
        max_power_watts=_positive(raw.get("max_watts")) if measured_power else None,
        average_speed_meters_per_second=_positive(raw.get("average_speed")),
        max_speed_meters_per_second=_positive(raw.get("max_speed")),
    )
    violations = Violations()
    validate_edit(edit, violations, "activity")
    validate_measurements(measurements, violations, "activity", now or dt.datetime.now(dt.UTC))
    if violations:
        problems = "; ".join(f"{v.field} {v.description}" for v in violations.items)
        raise StravaPayloadError(f"activity {external_id}: {problems}")
    return StravaActivity(external_id, edit, measurements)


def _is_number(value: object) -> bool:
    # bool is an int subclass, and JSON true is never a measurement.
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _external_id(value: object) -> str:
    if type(value) is int and value > 0:
        return str(value)
    if isinstance(value, str) and value.isdecimal() and value.isascii() and int(value) > 0:
        return str(int(value))
    raise StravaPayloadError(f"activity id is missing or not a positive integer: {value!r}")


def _sport_type(sport_type: object, legacy_type: object) -> str:
    """``sport_type``, else the deprecated ``type``, else Stride's generic sport."""
    for candidate in (sport_type, legacy_type):
        if isinstance(candidate, str) and (known := _SPORTS_BY_LOWER.get(candidate.lower())):
            return known
    return GENERIC_SPORT


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _title(name: object, sport_type: str) -> str:
    title = _text(name).strip()[:MAX_TITLE].strip()
    return title or _WORD_BREAK.sub(" ", sport_type)  # "TrailRun" -> "Trail Run"


def _visibility(visibility: object, private: object) -> Visibility:
    """``visibility`` when known; ``private: true`` always wins, so nothing is ever widened."""
    if private is True:
        return Visibility.ONLY_ME
    known = _VISIBILITIES.get(visibility) if isinstance(visibility, str) else None
    return known or Visibility.EVERYONE


def _start_time(value: object, external_id: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            # Strava's start_date is UTC; a missing offset means UTC too (never local time).
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
    raise StravaPayloadError(
        f"activity {external_id}: start_date is missing or not an ISO 8601 time: {value!r}"
    )


def _time_zone(label: object) -> str:
    """The IANA name in Strava's label, or "" so Stride falls back to the athlete's zone."""
    if isinstance(label, str) and (match := _TIME_ZONE_LABEL.match(label)):
        name = match.group(1)
        if is_time_zone(name):
            return name
    return ""


def _duration(raw: Mapping[str, Any], key: str) -> dt.timedelta | None:
    value = raw.get(key)
    if value is None:
        return None
    if not _is_number(value) or value < 0:
        raise StravaPayloadError(
            f"activity {raw.get('id')}: {key} must be a non-negative number of seconds, "
            f"got {value!r}"
        )
    return dt.timedelta(seconds=value)


def _amount(raw: Mapping[str, Any], key: str, external_id: str) -> float:
    value = raw.get(key)
    if value is None:
        return 0.0
    if not _is_number(value) or value < 0:
        raise StravaPayloadError(
            f"activity {external_id}: {key} must be a non-negative number, got {value!r}"
        )
    return float(value)


def _heart_rate(value: object) -> float | None:
    """A plausible heart rate, else None: a sensor glitch must not cost the activity."""
    if _is_number(value) and 20 <= value <= 260:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    return None


def _positive(value: object) -> float | None:
    """A positive number, else None (not known): Strava sends 0 where it has nothing (a
    manual activity's max_speed), and an odd value must not cost the activity."""
    if _is_number(value) and value > 0:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    return None


# -- streams ---------------------------------------------------------------------------------
# Comprehensions over whole columns, not per-point function calls: a 1 Hz activity of several
# hours has tens of thousands of points. Range checks also reject NaN (every comparison with
# NaN is false); exact type checks reject bools and strings.

_NUMBER = (int, float)
_MAX_OFFSET = MAX_ELAPSED.total_seconds()


def _floats(data: Sequence[Any], n: int) -> list[float | None]:
    out: list[float | None] = [
        float(v) if type(v) in _NUMBER and -math.inf < v < math.inf else None for v in data[:n]
    ]
    out.extend([None] * (n - len(out)))
    return out


def _ints(data: Sequence[Any], n: int) -> list[int | None]:
    out: list[int | None] = [
        v if type(v) is int else round(v) if type(v) is float and -math.inf < v < math.inf else None
        for v in data[:n]
    ]
    out.extend([None] * (n - len(out)))
    return out


def _lat_lngs(data: Sequence[Any], n: int) -> tuple[list[float | None], list[float | None]]:
    points = [
        p
        if type(p) is list
        and len(p) == 2
        and type(p[0]) in _NUMBER
        and type(p[1]) in _NUMBER
        and -90 <= p[0] <= 90
        and -180 <= p[1] <= 180
        else None
        for p in data[:n]
    ]
    points.extend([None] * (n - len(points)))
    return (
        [float(p[0]) if p else None for p in points],
        [float(p[1]) if p else None for p in points],
    )


def _data(by_type: Mapping[str, Mapping[str, Any]], key: str) -> Sequence[Any]:
    stream = by_type.get(key)
    data = stream.get("data") if isinstance(stream, Mapping) else None
    return data if isinstance(data, list) else []


# In the order samples_from_streams unpacks them.
_CHANNELS: tuple[tuple[str, Callable[[Sequence[Any], int], list[Any]]], ...] = (
    ("distance", _floats),
    ("altitude", _floats),
    ("heartrate", _ints),
    ("cadence", _ints),
    ("watts", _ints),
    ("velocity_smooth", _floats),
)


def samples_from_streams(
    start_time: dt.datetime, by_type: Mapping[str, Mapping[str, Any]]
) -> list[Sample]:
    """Samples in time order, one per distinct ``time`` offset (the samples table's key).

    Without a ``time`` stream nothing can be placed in time, so there are no samples (manual
    activities have no streams at all). Points with a null or negative offset are dropped; a
    repeated offset keeps its last point. Missing, null or wrongly typed values become None.
    """
    offsets = _data(by_type, "time")
    n = len(offsets)
    if n == 0:
        return []
    distance, altitude, heart_rate, cadence, power, speed = (
        convert(_data(by_type, key), n) for key, convert in _CHANNELS
    )
    latitude, longitude = _lat_lngs(_data(by_type, "latlng"), n)
    # Offsets past MAX_ELAPSED cannot belong to a valid activity (and would overflow).
    last_index = {
        t: i for i, t in enumerate(offsets) if type(t) in _NUMBER and 0 <= t <= _MAX_OFFSET
    }  # a repeated offset keeps its last point
    second = dt.timedelta(seconds=1)
    return [
        Sample(
            start_time + offset * second,
            distance[i],
            latitude[i],
            longitude[i],
            altitude[i],
            heart_rate[i],
            cadence[i],
            power[i],
            speed[i],
        )
        for offset, i in sorted(last_index.items())
    ]
