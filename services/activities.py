"""Use cases for activities and their samples."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import names
from domain.activities import (
    Activity,
    ActivityEdit,
    ActivityFilter,
    Measurements,
    Sample,
    Source,
    validate_edit,
    validate_measurements,
)
from domain.errors import NotFound, Violations
from domain.validation import check_request_id
from services.athletes import RESOURCE as ATHLETE_RESOURCE
from services.paging import Paging
from storage.database import Database
from storage.repositories.activities import ActivityRepository, SampleRepository
from storage.repositories.athletes import AthleteRepository

RESOURCE = "stride.dev/Activity"


class ActivityService:
    def __init__(self, db: Database, paging: Paging) -> None:
        self.db = db
        self.paging = paging

    def create_manual(
        self,
        athlete_id: str,
        edit: ActivityEdit,
        measurements: Measurements,
        request_id: str,
        violations: Violations | None = None,
    ) -> Activity:
        """`violations` may carry problems the caller already found while decoding the request."""
        violations = violations or Violations()
        validate_edit(edit, violations, "activity")
        validate_measurements(measurements, violations, "activity", dt.datetime.now(dt.UTC))
        if request_id:
            check_request_id(violations, "request_id", request_id)
        violations.raise_if_any()
        try:
            with self.db.transaction() as session:
                athlete = AthleteRepository(session).get(athlete_id)
                if athlete is None:
                    raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
                repo = ActivityRepository(session)
                if request_id and (found := repo.get_by_request_id(athlete_id, request_id)):
                    return found
                if not measurements.time_zone:
                    measurements = dataclasses.replace(
                        measurements, time_zone=athlete.profile.time_zone
                    )
                return repo.add(
                    athlete_id,
                    edit,
                    measurements,
                    source=Source.MANUAL,
                    request_id=request_id or None,
                )
        except IntegrityError:
            with self.db.transaction() as session:
                found = ActivityRepository(session).get_by_request_id(athlete_id, request_id)
            if found is None:
                raise
            return found

    def get(self, athlete_id: str, activity_id: str) -> Activity:
        with self.db.transaction() as session:
            return _require(ActivityRepository(session), athlete_id, activity_id)

    def update(self, athlete_id: str, activity_id: str, changes: dict[str, Any]) -> Activity:
        """Apply `changes` (editable field -> value) and validate the result."""
        with self.db.transaction() as session:
            repo = ActivityRepository(session)
            current = _require(repo, athlete_id, activity_id)
            edit = dataclasses.replace(current.edit, **changes)
            violations = Violations()
            validate_edit(edit, violations, "activity")
            violations.raise_if_any()
            if edit == current.edit:
                return current
            updated = repo.update_edit(athlete_id, activity_id, edit)
            assert updated is not None
            return updated

    def delete(self, athlete_id: str, activity_id: str) -> None:
        with self.db.transaction() as session:
            if not ActivityRepository(session).delete(athlete_id, activity_id):
                raise NotFound(RESOURCE, names.activity_name(athlete_id, activity_id))

    def list_page(
        self, athlete_id: str, where: ActivityFilter, page_size: int, page_token: str
    ) -> tuple[list[Activity], str]:
        violations = Violations()
        size = self.paging.size(page_size, violations)
        if where.start_from and where.start_to and where.start_from >= where.start_to:
            violations.add("start_time_to", "must be after start_time_from")
        violations.raise_if_any()
        query = f"activities|{athlete_id}|{where!r}"
        after = self.paging.time_key(page_token, query)
        with self.db.read_only() as session:
            _require_athlete(session, athlete_id)
            rows = ActivityRepository(session).list(athlete_id, where, after, size + 1)
        token = self.paging.next_token(
            query, rows, size, lambda a: (a.measurements.start_time, a.id)
        )
        return rows[:size], token

    def check_readable(self, athlete_id: str, activity_id: str) -> Activity:
        """The activity, read where its samples will be read from (a replica if any)."""
        with self.db.read_only() as session:
            return _require(ActivityRepository(session), athlete_id, activity_id)

    def samples_after(
        self, activity_id: str, after: dt.datetime | None, limit: int
    ) -> list[Sample]:
        with self.db.read_only() as session:
            return SampleRepository(session).chunk(activity_id, after, limit)


def _require(repo: ActivityRepository, athlete_id: str, activity_id: str) -> Activity:
    activity = repo.get(athlete_id, activity_id)
    if activity is None:
        raise NotFound(RESOURCE, names.activity_name(athlete_id, activity_id))
    return activity


def _require_athlete(session: Session, athlete_id: str) -> None:
    if not AthleteRepository(session).exists(athlete_id):
        raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
