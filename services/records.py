"""Personal records: the fastest stored best effort per distance, all-time or per year,
each with its age grade (absent when there is none)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from domain import agegrade
from domain.agegrade import GradedPerformance
from domain.athletes import Athlete
from domain.best_efforts import Distance
from domain.errors import Violations
from services.athletes import require_athlete
from services.paging import Paging
from storage.database import Database
from storage.repositories.records import BestEffortRepository, StoredBest

ORDER = {distance: index for index, distance in enumerate(Distance)}


@dataclass(frozen=True)
class PersonalRecord:
    best: StoredBest
    # The calendar year, for per-year records; None for all-time ones.
    year: int | None
    # None when there is no grade (birth date or sex unknown, age or distance not graded).
    graded: GradedPerformance | None

    @property
    def record_id(self) -> str:
        return f"{self.best.distance.value}-{'all' if self.year is None else self.year}"


class PersonalRecordService:
    def __init__(self, db: Database, paging: Paging) -> None:
        self.db = db
        self.paging = paging

    def list_page(
        self,
        athlete_id: str,
        *,
        per_year: bool,
        year: int | None,
        distances: Collection[Distance],
        sport_types: Collection[str],
        page_size: int,
        page_token: str,
    ) -> tuple[list[PersonalRecord], str]:
        """All-time records, or each year's newest first; then by distance, shortest first.
        The token binds the filters."""
        violations = Violations()
        if year is not None and not per_year:
            violations.add("year", "is only allowed with RECORD_PERIOD_YEAR")
        size = self.paging.size(page_size, violations)
        violations.raise_if_any()
        query = "|".join(
            [
                "records",
                athlete_id,
                "year" if per_year else "all",
                "" if year is None else str(year),
                ",".join(sorted(d.value for d in distances)),
                ",".join(sorted(sport_types)),
            ]
        )
        position = self.paging.tokens.decode(page_token, query)
        with self.db.read_only() as session:
            athlete = require_athlete(session, athlete_id)
            bests = BestEffortRepository(session).bests(
                athlete_id,
                per_year=per_year,
                year=year,
                distances=distances,
                sport_types=sport_types,
            )
        # A handful per distance and year: ordered and paged here, after the window query.
        keyed = sorted(((_key(b, per_year), b) for b in bests), key=lambda pair: pair[0])
        if position is not None:
            after = (int(position[0]), int(position[1]))
            keyed = [pair for pair in keyed if pair[0] > after]
        page = [_record(athlete, best, per_year) for _, best in keyed[:size]]
        token = ""
        if len(keyed) > size:
            token = self.paging.tokens.encode(query, list(keyed[size - 1][0]))
        return page, token


def _key(best: StoredBest, per_year: bool) -> tuple[int, int]:
    """Newest year first (all-time records share one period), then shortest distance."""
    return (-best.local_year if per_year else 0, ORDER[best.distance])


def _record(athlete: Athlete, best: StoredBest, per_year: bool) -> PersonalRecord:
    profile = athlete.profile
    day = best.start_time.astimezone(ZoneInfo(profile.time_zone or "UTC")).date()
    graded = agegrade.grade_for(profile, day, best.distance.meters, best.elapsed_seconds)
    return PersonalRecord(best, best.local_year if per_year else None, graded)


__all__ = ["PersonalRecord", "PersonalRecordService"]
