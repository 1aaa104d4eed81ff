"""From a parsed file (and its row in a Strava export) to an activity, and the rule that
says an imported activity is one the athlete already has.

Decisions (docs/decisions.md, "File import"):
- **Totals come from the samples** (`domain.metrics.summarize`): files carry totals rarely
  and inconsistently, samples always. A Strava export row's name, sport type and
  description win over the file's (they are what the athlete edited on Strava).
- **No timestamps** (a route or a planned course): not an activity, unless the export row
  says when it happened and for how long; then it is stored from the row without samples.
  A manual Strava activity (a row without a file) is stored the same way.
- **No GPS** (treadmill, pool, rowing machine, a multisport leg indoors): imported as it
  is; distance comes from the device's own distance samples when present, else it is 0.
- **Times** outside 1980-2200, or lasting over 100 days, are a broken clock: FILE_BAD_TIME.
- **Titles**: the file's or row's name; else "Morning Run" style, from the start's hour in
  the athlete's time zone, as Strava names uploads.
- **Sport**: the row's (the athlete may have corrected it on Strava), else the file's,
  else Workout.
- **Duplicates**: start within `start_seconds` and distance within `distance_ratio` of the
  larger (two activities without distance match on start alone).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.activities import ActivityEdit, Measurements
from domain.files.model import FileError, ParsedActivity
from domain.files.strava_export import ExportRow
from domain.metrics import fill_measurements, summarize

DEFAULT_SPORT = "Workout"
MAX_TITLE = 200
# Recordings outside these bounds have a broken clock (GPS logs begin in the 1980s; FIT's
# epoch is 1989), and no single activity lasts 100 days.
EARLIEST = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
MAX_ELAPSED = dt.timedelta(days=100)
MAX_DESCRIPTION = 10_000
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass(frozen=True)
class DuplicateRule:
    start_seconds: float = 60.0
    distance_ratio: float = 0.02

    @property
    def enabled(self) -> bool:
        return self.start_seconds > 0

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.start_seconds)

    def matches(
        self, start: dt.datetime, distance: float, other_start: dt.datetime, other_distance: float
    ) -> bool:
        if not self.enabled or abs((start - other_start).total_seconds()) > self.start_seconds:
            return False
        larger = max(distance, other_distance)
        return larger <= 0 or abs(distance - other_distance) <= self.distance_ratio * larger


def activity_from_file(
    parsed: ParsedActivity, row: ExportRow | None, time_zone: str
) -> tuple[ActivityEdit, Measurements]:
    """The activity a parsed file holds. Raises FileError when it holds none."""
    if not parsed.samples:
        if row is not None and row.start_time is not None and row.elapsed_seconds:
            return activity_from_row(row, time_zone)
        if parsed.untimed_points:
            raise FileError(
                "FILE_NO_TIMESTAMPS",
                f"no recorded points, only {parsed.untimed_points} position(s) without times "
                "(a route, a plan or waypoints): nothing says when it happened",
            )
        raise FileError("FILE_NO_ACTIVITY", "no recorded points (no track, laps or records)")
    try:
        summary = summarize(parsed.samples)
    except ValueError as exc:
        raise FileError("FILE_CORRUPT", f"samples out of order: {exc}") from exc
    check_when(summary.start_time, summary.elapsed)
    sport = (row.sport_type if row else None) or parsed.sport_type or DEFAULT_SPORT
    empty = Measurements(start_time=summary.start_time, elapsed=dt.timedelta(0))
    measurements = fill_measurements(empty, summary)
    title = (row.title if row else None) or parsed.title
    description = (row.description if row else None) or parsed.description or ""
    edit = ActivityEdit(
        title=_title(title, sport, summary.start_time, time_zone),
        sport_type=sport,
        description=description[:MAX_DESCRIPTION],
    )
    return edit, measurements


def activity_from_row(row: ExportRow, time_zone: str) -> tuple[ActivityEdit, Measurements]:
    """A Strava export row on its own (a manual activity, or a file without times)."""
    if row.start_time is None or not row.elapsed_seconds:
        raise FileError("ROW_INCOMPLETE", "the activities.csv row has no readable date or time")
    if not 0 < row.elapsed_seconds <= MAX_ELAPSED.total_seconds():
        raise FileError("FILE_BAD_TIME", f"an elapsed time of {row.elapsed_seconds:g} s")
    elapsed = dt.timedelta(seconds=row.elapsed_seconds)
    check_when(row.start_time, elapsed)
    sport = row.sport_type or DEFAULT_SPORT
    measurements = Measurements(
        start_time=row.start_time,
        elapsed=elapsed,
        distance_meters=row.distance_meters or 0.0,
    )
    edit = ActivityEdit(
        title=_title(row.title, sport, row.start_time, time_zone),
        sport_type=sport,
        description=(row.description or "")[:MAX_DESCRIPTION],
    )
    return edit, measurements


def check_when(start: dt.datetime, elapsed: dt.timedelta) -> None:
    """Refuse times no recording has: before EARLIEST, after LATEST, or lasting more than
    MAX_ELAPSED (a clock that was never set, a corrupt timestamp field)."""
    if not EARLIEST <= start <= LATEST or elapsed > MAX_ELAPSED:
        raise FileError(
            "FILE_BAD_TIME",
            f"starts {start.isoformat()} and lasts {elapsed}: outside "
            f"{EARLIEST.year}-{LATEST.year} or longer than {MAX_ELAPSED.days} days",
        )


def _title(given: str | None, sport: str, start: dt.datetime, time_zone: str) -> str:
    if given and given.strip():
        return given.strip()[:MAX_TITLE]
    try:
        hour = start.astimezone(ZoneInfo(time_zone)).hour if time_zone else start.hour
    except (ZoneInfoNotFoundError, ValueError):
        hour = start.hour
    return f"{_part_of_day(hour)} {_CAMEL.sub(' ', sport)}"


def _part_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "Morning"
    if 12 <= hour < 14:
        return "Lunch"
    if 14 <= hour < 18:
        return "Afternoon"
    if 18 <= hour < 22:
        return "Evening"
    return "Night"
