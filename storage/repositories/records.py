"""SQL for best efforts and the personal records read from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from domain.best_efforts import BestEffort, Distance
from storage.changes import touch
from storage.models import BestEffortRow


@dataclass(frozen=True)
class StoredBest:
    """A best effort as stored, with what a record shows of its activity."""

    activity_id: str
    distance: Distance
    sport_type: str
    local_year: int
    start_time: dt.datetime
    elapsed_seconds: float
    start_offset_seconds: float


class BestEffortRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def replace(
        self,
        activity_id: str,
        athlete_id: str,
        sport_type: str,
        activity_start: dt.datetime,
        local_year: int,
        efforts: Mapping[Distance, BestEffort],
    ) -> None:
        """The activity's best efforts become `efforts` (none: it has none)."""
        touch(self.session, athlete_id)
        self.session.execute(delete(BestEffortRow).where(BestEffortRow.activity_id == activity_id))
        rows = [
            {
                "activity_id": activity_id,
                "distance": distance.value,
                "athlete_id": athlete_id,
                "sport_type": sport_type,
                "local_year": local_year,
                "start_time": activity_start + dt.timedelta(seconds=effort.start_offset_seconds),
                "elapsed_seconds": effort.elapsed_seconds,
                "start_offset_seconds": effort.start_offset_seconds,
            }
            for distance, effort in efforts.items()
        ]
        if rows:
            self.session.execute(insert(BestEffortRow), rows)

    def bests(
        self,
        athlete_id: str,
        *,
        per_year: bool,
        year: int | None = None,
        distances: Collection[Distance] = (),
        sport_types: Collection[str] = (),
    ) -> list[StoredBest]:
        """The fastest effort per distance (and per year with `per_year`), ties going to
        the earlier effort; one window query, served by the (athlete, distance, elapsed)
        index."""
        partition: list[Any] = [BestEffortRow.distance]
        if per_year:
            partition.append(BestEffortRow.local_year)
        rank = (
            func.row_number()
            .over(
                partition_by=partition,
                order_by=(BestEffortRow.elapsed_seconds, BestEffortRow.start_time),
            )
            .label("rank")
        )
        inner = select(BestEffortRow, rank).where(BestEffortRow.athlete_id == athlete_id)
        if year is not None:
            inner = inner.where(BestEffortRow.local_year == year)
        if distances:
            inner = inner.where(BestEffortRow.distance.in_([d.value for d in distances]))
        if sport_types:
            inner = inner.where(BestEffortRow.sport_type.in_(list(sport_types)))
        ranked = inner.subquery()
        rows = self.session.execute(select(ranked).where(ranked.c.rank == 1))
        return [
            StoredBest(
                activity_id=row.activity_id,
                distance=Distance(row.distance),
                sport_type=row.sport_type,
                local_year=row.local_year,
                start_time=_aware(row.start_time),
                elapsed_seconds=row.elapsed_seconds,
                start_offset_seconds=row.start_offset_seconds,
            )
            for row in rows
        ]


def _aware(value: dt.datetime) -> dt.datetime:
    # Through a subquery the column's type decorator still applies; SQLite returns naive UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
