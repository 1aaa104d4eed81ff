"""Use cases for athletes: validate, then run one unit of work."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain import names
from domain.athletes import Athlete, AthleteProfile, validate_profile
from domain.errors import NotFound, Violations
from domain.validation import check_request_id
from services.paging import Paging
from storage.database import Database
from storage.repositories.athletes import AthleteRepository

RESOURCE = "stride.dev/Athlete"


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AthleteService:
    def __init__(self, db: Database, paging: Paging) -> None:
        self.db = db
        self.paging = paging

    def create(
        self, profile: AthleteProfile, request_id: str, violations: Violations | None = None
    ) -> Athlete:
        """`violations` may carry problems the caller already found while decoding the request."""
        violations = violations or Violations()
        validate_profile(profile, violations, "athlete", _today())
        if request_id:
            check_request_id(violations, "request_id", request_id)
        violations.raise_if_any()
        try:
            with self.db.transaction() as session:
                repo = AthleteRepository(session)
                existing = repo.get_by_request_id(request_id) if request_id else None
                return existing or repo.add(profile, request_id or None)
        except IntegrityError:
            # A concurrent retry with the same request_id won the insert: return its result.
            with self.db.transaction() as session:
                existing = AthleteRepository(session).get_by_request_id(request_id)
            if existing is None:
                raise
            return existing

    def get(self, athlete_id: str) -> Athlete:
        with self.db.transaction() as session:
            athlete = AthleteRepository(session).get(athlete_id)
        if athlete is None:
            raise NotFound(RESOURCE, names.athlete_name(athlete_id))
        return athlete

    def update(self, athlete_id: str, changes: dict[str, Any]) -> Athlete:
        """Apply `changes` (profile field -> value) and validate the merged profile."""
        with self.db.transaction() as session:
            repo = AthleteRepository(session)
            current = repo.get(athlete_id)
            if current is None:
                raise NotFound(RESOURCE, names.athlete_name(athlete_id))
            profile = dataclasses.replace(current.profile, **changes)
            violations = Violations()
            validate_profile(profile, violations, "athlete", _today())
            violations.raise_if_any()
            if profile == current.profile:
                return current
            updated = repo.update(athlete_id, profile)
            assert updated is not None
            return updated

    def delete(self, athlete_id: str) -> None:
        with self.db.transaction() as session:
            if not AthleteRepository(session).delete(athlete_id):
                raise NotFound(RESOURCE, names.athlete_name(athlete_id))

    def list_page(self, page_size: int, page_token: str) -> tuple[list[Athlete], str]:
        violations = Violations()
        size = self.paging.size(page_size, violations)
        violations.raise_if_any()
        query = "athletes"
        after = self.paging.time_key(page_token, query)
        with self.db.read_only() as session:
            rows = AthleteRepository(session).list(after, size + 1)
        token = self.paging.next_token(query, rows, size, lambda a: (a.create_time, a.id))
        return rows[:size], token
