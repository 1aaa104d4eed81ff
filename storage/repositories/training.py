"""SQL for the training summary and the fitness trend: an athlete's activities in a
start-time range, summed per local day, ISO week or month and sport type, in the database.

PostgreSQL buckets with `date_trunc(unit, start_time AT TIME ZONE zone)` (ISO weeks start on
Monday there). SQLite knows no time zones: the caller's zone is turned into its UTC offsets
over the range (`domain.periods.offset_segments`, one per daylight-saving change) and each
row's local time is `start_time` plus the offset of its segment, chosen by a CASE on
`start_time`; `date()` modifiers then take the week ('-6 days', 'weekday 1': the Monday on or
before) or the month ('start of month'). Both group in SQL: only one row per bucket and
sport type comes back, never the activities.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, case, cast, func, literal, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from domain.periods import Period, offset_segments
from storage.models import ActivityRow

# tz database names PostgreSQL resolves as abbreviations with a fixed offset (its
# abbreviations are looked up before zone names), and the zones they link to in the tz
# database, which Python's zoneinfo (the SQLite path, the rest of Stride) follows.
POSTGRES_ZONE_LINKS = {
    "CET": "Europe/Brussels",
    "EET": "Europe/Athens",
    "MET": "Europe/Brussels",
    "WET": "Europe/Lisbon",
}


@dataclass(frozen=True)
class BucketTotals:
    """One bucket's (or one sport type's share of a bucket's) sums."""

    start: dt.date
    sport_type: str
    activity_count: int
    distance_meters: float
    moving_seconds: float
    elevation_gain_meters: float
    training_load: float
    estimated_load_count: int


class TrainingRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def totals(
        self,
        athlete_id: str,
        period: Period,
        time_zone: str,
        start: dt.datetime,
        end: dt.datetime,
        sport_types: Sequence[str] = (),
    ) -> list[BucketTotals]:
        """Sums per (bucket, sport type) of the activities starting in [start, end), a
        bucket being the local day, ISO week or month in `time_zone` (named by its first
        day). An activity without a moving time adds none (its elapsed time includes the
        stops); one whose load was never computed adds no load."""
        bucket = self._bucket(period, time_zone, start, end)
        row = ActivityRow
        where = [row.athlete_id == athlete_id, row.start_time >= start, row.start_time < end]
        if sport_types:
            where.append(row.sport_type.in_(list(sport_types)))
        rows = (
            select(
                bucket.label("bucket"),
                row.sport_type,
                row.distance_meters,
                func.coalesce(row.moving_seconds, 0.0).label("moving"),
                row.elevation_gain_meters,
                func.coalesce(row.training_load, 0.0).label("load"),
                case((row.training_load_estimated, 1), else_=0).label("estimated"),
            )
            .where(*where)
            .subquery()
        )
        query = select(
            rows.c.bucket,
            rows.c.sport_type,
            func.count(),
            func.sum(rows.c.distance_meters),
            func.sum(rows.c.moving),
            func.sum(rows.c.elevation_gain_meters),
            func.sum(rows.c.load),
            func.sum(rows.c.estimated),
        ).group_by(rows.c.bucket, rows.c.sport_type)
        return [
            BucketTotals(
                start=_as_date(bucket_start),
                sport_type=str(sport),
                activity_count=int(count),
                distance_meters=float(distance or 0.0),
                moving_seconds=float(moving or 0.0),
                elevation_gain_meters=float(elevation or 0.0),
                training_load=float(load or 0.0),
                estimated_load_count=int(estimated or 0),
            )
            for bucket_start, sport, count, distance, moving, elevation, load, estimated in (
                self.session.execute(query)
            )
        ]

    def _bucket(
        self, period: Period, time_zone: str, start: dt.datetime, end: dt.datetime
    ) -> ColumnElement[Any]:
        start_time = ActivityRow.start_time
        if self.session.get_bind().dialect.name == "postgresql":
            # start_time AT TIME ZONE zone; PostgreSQL reads a few legacy names as fixed
            # abbreviations (no daylight saving), so those go by the zone they link to.
            zone = POSTGRES_ZONE_LINKS.get(time_zone, time_zone)
            local = func.timezone(zone, start_time)
            if period is Period.DAY:
                return cast(local, Date)
            return cast(func.date_trunc(period.value, local), Date)
        segments = offset_segments(ZoneInfo(time_zone), start, end)
        offset: ColumnElement[Any]
        if len(segments) == 1:
            offset = literal(_modifier(segments[0][1]))
        else:
            offset = case(
                *[(start_time < until, _modifier(seconds)) for until, seconds in segments[:-1]],
                else_=_modifier(segments[-1][1]),
            )
        modifiers = {
            Period.DAY: (),
            Period.WEEK: ("-6 days", "weekday 1"),
            Period.MONTH: ("start of month",),
        }[period]
        return type_coerce(func.date(start_time, offset, *modifiers), Date)


def _modifier(seconds: int) -> str:
    return f"{seconds:+d} seconds"


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
