"""Hardened, streaming XML reading and sample clean-up shared by the GPX and TCX parsers.

Files come from anyone (an upload, a Strava export), so XML is read only through
defusedxml: entity declarations (billion laughs, external entities) and external
references are refused before anything expands. The document is read as a stream of
events so a parser can stop at the point limit without having built the whole tree, and
every low-level error becomes a `FileError` with a stable reason the import job reports.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from domain.activities import Sample
from domain.files.model import FileError

# Points (track points, route points, waypoints, TCX trackpoints) one file may hold. A
# day-long activity at 1 Hz is ~86,400 points; this leaves room for multi-day recordings
# while bounding the memory one upload can take.
MAX_SAMPLES = 500_000

MIN_HEART_RATE = 20
MAX_HEART_RATE = 260
# Upper bounds far above any athlete, only so a hostile value cannot overflow an integer
# column downstream.
MAX_CADENCE = 500
MAX_POWER_WATTS = 10_000


def local_name(tag: str) -> str:
    """The tag without its namespace: GPX 1.0/1.1, no namespace at all, and both versions of
    Garmin's extension namespaces (under whatever prefix) are then read alike."""
    return tag.rpartition("}")[2]


def iter_elements(data: bytes) -> Iterator[tuple[str, Element]]:
    """Yield ("start" | "end", element) events from `data`, parsed safely.

    Errors from the XML layer are translated here, and only here, so a `FileError` the
    caller raises while consuming events passes through untouched. A byte-order mark is
    handled by expat itself.
    """
    events = SafeET.iterparse(io.BytesIO(data), events=("start", "end"))
    try:
        yield from events
    except DefusedXmlException as exc:
        raise FileError("FILE_UNSAFE", f"refused unsafe XML ({type(exc).__name__}): {exc}") from exc
    except ParseError as exc:
        raise FileError("FILE_CORRUPT", f"not well-formed XML: {exc}") from exc


def check_root(element: Element, expected: str, kind: str) -> None:
    """Refuse a document whose root is not what the file claims to be (a TCX named .gpx),
    rather than reading it as an empty activity."""
    found = local_name(element.tag)
    if found != expected:
        raise FileError(
            "FILE_WRONG_TYPE", f"not a {kind} file: the root element is <{found}>, not <{expected}>"
        )


class PointCounter:
    """Counts points while parsing and stops at MAX_SAMPLES, before more are built."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.limit = limit
        self.count = 0

    def add(self) -> None:
        self.count += 1
        if self.count > self.limit:
            raise FileError("FILE_TOO_LARGE", f"the file holds more than {self.limit} points")


def text_of(element: Element | None) -> str | None:
    """Stripped text, or None when missing or blank."""
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


def parse_float(text: str | None) -> float | None:
    """A finite float, or None: a bad value drops that reading, never the file."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_int(text: str | None) -> int | None:
    """An integer reading ("90" or "90.0"), rounded, or None."""
    value = parse_float(text)
    return None if value is None else round(value)


def parse_time(text: str | None) -> dt.datetime | None:
    """An ISO 8601 time ("Z", an offset, or fractional seconds) as aware UTC, or None.

    A time without offset is taken as UTC: GPX and TCX both define their times as UTC.
    """
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        # Year 1 with a positive offset (or 9999 with a negative one) has no UTC time.
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def valid_position(lat: float | None, lon: float | None) -> tuple[float | None, float | None]:
    """Both coordinates in range, or neither: half a position places nothing."""
    if lat is None or lon is None or not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        return None, None
    return lat, lon


def valid_heart_rate(value: int | None) -> int | None:
    """Heart rate within what a human heart does; a strap's 0 or 255 means no reading."""
    if value is None or not MIN_HEART_RATE <= value <= MAX_HEART_RATE:
        return None
    return value


def valid_cadence(value: int | None) -> int | None:
    """Cadence (rpm or steps per minute): non-negative and bounded, else no reading."""
    return value if value is not None and 0 <= value <= MAX_CADENCE else None


def valid_power(value: int | None) -> int | None:
    """Power in watts: non-negative and bounded, else no reading."""
    return value if value is not None and 0 <= value <= MAX_POWER_WATTS else None


def non_negative_float(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None


def ordered_samples(samples: list[Sample]) -> list[Sample]:
    """Samples in time order, one per timestamp: of repeated times the last in the file wins
    (a device that rewrites a point writes the corrected one later). The sort is stable, so
    equal times keep their file order."""
    ordered = sorted(samples, key=lambda s: s.time)
    result: list[Sample] = []
    for sample in ordered:
        if result and result[-1].time == sample.time:
            result[-1] = sample
        else:
            result.append(sample)
    return result
