"""Small geometry helpers: metres to degrees, Google's encoded polylines, time-zone labels."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

METRES_PER_DEGREE = 111_320.0


def offset_point(lat: float, lng: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres from (lat, lng) (flat-earth, fine for a city)."""
    dlat = north_m / METRES_PER_DEGREE
    dlng = east_m / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    return lat + dlat, lng + dlng


def _encode_value(value: int) -> str:
    value = ~(value << 1) if value < 0 else value << 1
    chunks = []
    while value >= 0x20:
        chunks.append(chr((0x20 | (value & 0x1F)) + 63))
        value >>= 5
    chunks.append(chr(value + 63))
    return "".join(chunks)


def encode_polyline(points: Sequence[tuple[float, float]]) -> str:
    """Google's encoded polyline format (precision 5), as Strava's ``map`` fields use."""
    out = []
    last_lat = last_lng = 0
    for lat, lng in points:
        ilat, ilng = round(lat * 1e5), round(lng * 1e5)
        out.append(_encode_value(ilat - last_lat))
        out.append(_encode_value(ilng - last_lng))
        last_lat, last_lng = ilat, ilng
    return "".join(out)


def decode_polyline(encoded: str) -> list[tuple[float, float]]:
    """The inverse of :func:`encode_polyline` (used by tests)."""
    points = []
    index = lat = lng = 0
    while index < len(encoded):
        deltas = []
        for _ in range(2):
            shift = result = 0
            while True:
                byte = ord(encoded[index]) - 63
                index += 1
                result |= (byte & 0x1F) << shift
                shift += 5
                if byte < 0x20:
                    break
            deltas.append(~(result >> 1) if result & 1 else result >> 1)
        lat += deltas[0]
        lng += deltas[1]
        points.append((lat / 1e5, lng / 1e5))
    return points


def strava_timezone(zone: str, when_utc: dt.datetime) -> tuple[str, float]:
    """Strava's ``timezone`` label and ``utc_offset`` for an instant.

    The label carries the zone's *standard* offset (``"(GMT-05:00) America/New_York"`` even in
    summer), while ``utc_offset`` is the offset in force at that instant (-14400.0 in summer),
    as in Strava's recorded responses.
    """
    local = when_utc.astimezone(ZoneInfo(zone))
    offset = local.utcoffset() or dt.timedelta(0)
    dst = local.dst() or dt.timedelta(0)
    standard = int((offset - dst).total_seconds())
    sign = "+" if standard >= 0 else "-"
    hours, rest = divmod(abs(standard), 3600)
    label = f"(GMT{sign}{hours:02d}:{rest // 60:02d}) {zone}"
    return label, float(offset.total_seconds())


def iso_z(when: dt.datetime) -> str:
    """``2018-11-04T14:53:46Z``: Strava's format, also for local wall-clock times."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
