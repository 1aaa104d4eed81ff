"""What a file import asks of storage besides writing activities: which of its items are
already stored or linked, and which stored activities start near a new one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from domain.activities import Source
from storage.changes import touch
from storage.models import ActivityLinkRow, ActivityRow


@dataclass(frozen=True)
class Candidate:
    """A stored activity a new one might duplicate."""

    activity_id: str
    start_time: dt.datetime
    distance_meters: float
    source: str
    external_id: str | None


class ImportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def known(self, athlete_id: str, source: Source, external_ids: Sequence[str]) -> set[str]:
        """Those of `external_ids` already stored as activities or linked to one."""
        if not external_ids:
            return set()
        ids = list(external_ids)
        stored = select(ActivityRow.external_id).where(
            ActivityRow.athlete_id == athlete_id,
            ActivityRow.source == source.value,
            ActivityRow.external_id.in_(ids),
        )
        linked = select(ActivityLinkRow.external_id).where(
            ActivityLinkRow.athlete_id == athlete_id,
            ActivityLinkRow.source == source.value,
            ActivityLinkRow.external_id.in_(ids),
        )
        found = set(self.session.scalars(stored)) | set(self.session.scalars(linked))
        return {str(value) for value in found}

    def starting_between(
        self, athlete_id: str, earliest: dt.datetime, latest: dt.datetime
    ) -> list[Candidate]:
        """The athlete's activities starting in [earliest, latest] (the (athlete, start)
        index serves it)."""
        query = select(
            ActivityRow.id,
            ActivityRow.start_time,
            ActivityRow.distance_meters,
            ActivityRow.source,
            ActivityRow.external_id,
        ).where(
            ActivityRow.athlete_id == athlete_id,
            ActivityRow.start_time >= earliest,
            ActivityRow.start_time <= latest,
        )
        return [
            Candidate(
                str(row.id),
                row.start_time,
                float(row.distance_meters or 0.0),
                str(row.source),
                row.external_id,
            )
            for row in self.session.execute(query)
        ]

    def link(self, athlete_id: str, source: Source, external_id: str, activity_id: str) -> None:
        touch(self.session, athlete_id)
        self.session.execute(
            insert(ActivityLinkRow).values(
                athlete_id=athlete_id,
                source=source.value,
                external_id=external_id,
                activity_id=activity_id,
                create_time=dt.datetime.now(dt.UTC),
            )
        )
