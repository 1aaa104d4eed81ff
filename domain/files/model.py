"""What every file parser produces, and how a file fails."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from domain.activities import Sample


class FileFormat(StrEnum):
    GPX = "gpx"
    TCX = "tcx"
    FIT = "fit"


@dataclass(frozen=True)
class ParsedActivity:
    """One activity read from a file. Samples are in time order with aware UTC times (an
    activity without timestamps has none, and `start_time` None); values a file lacks are
    None. `sport_type` is a Stride sport (domain.sports) when the file says which, else None.
    """

    format: FileFormat
    start_time: dt.datetime | None
    samples: list[Sample] = field(default_factory=list)
    sport_type: str | None = None
    title: str | None = None
    description: str | None = None
    # What recorded it ("Garmin Edge 1000"), when the file says.
    device: str | None = None
    # Points with a position but no time (a planned route, waypoints), kept apart: they
    # place nothing in time.
    untimed_points: int = 0


class FileError(ValueError):
    """A file that cannot be imported; `reason` is a stable UPPER_SNAKE_CASE code the import
    job reports per file (FILE_CORRUPT, FILE_TOO_LARGE, FILE_UNSAFE, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
