"""Use cases for athletes: validate, then run one unit of work."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import etags, names
from domain.athletes import Athlete, AthleteProfile, derived_inputs_changed, validate_profile
from domain.errors import Aborted, NotFound, StrideError, Violations
from domain.validation import check_request_id
from services.paging import Paging
from storage.database import Database
from storage.repositories.athletes import AthleteRepository

RESOURCE = "stride.dev/Athlete"
log = structlog.get_logger(__name__)


def require_athlete(session: Session, athlete_id: str) -> Athlete:
    """The athlete, read in the caller's unit of work; NotFound when there is none."""
    athlete = AthleteRepository(session).get(athlete_id)
    if athlete is None:
        raise NotFound(RESOURCE, names.athlete_name(athlete_id))
    return athlete


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AthleteService:
    def __init__(
        self,
        db: Database,
        paging: Paging,
        on_delete: Callable[[str], None] | None = None,
        on_profile_change: Callable[[Athlete, Athlete], None] | None = None,
    ) -> None:
        """`on_delete(athlete_id)` runs after an athlete's deletion commits (their tokens
        went with them: the token cache must forget them); `on_profile_change(before,
        after)` after an update that changed the profile commits (derived values)."""
        self.db = db
        self.paging = paging
        self._on_delete = on_delete
        self._on_profile_change = on_profile_change

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
            with self.db.read_primary() as session:
                existing = AthleteRepository(session).get_by_request_id(request_id)
            if existing is None:
                raise
            return existing

    def get(self, athlete_id: str) -> Athlete:
        with self.db.read_primary() as session:
            return require_athlete(session, athlete_id)

    def update(self, athlete_id: str, changes: dict[str, Any], etag: str = "") -> Athlete:
        """Apply `changes` (profile field -> value) and validate the merged profile.

        The row is locked before it is read, so concurrent updates merge one after the
        other; a non-empty `etag` that is not current raises Aborted (AIP-154)."""
        name = names.athlete_name(athlete_id)
        with self.db.transaction() as session:
            repo = AthleteRepository(session)
            current = repo.get(athlete_id, lock=True)
            if current is None:
                raise NotFound(RESOURCE, name)
            etags.check(etag, current.revision, RESOURCE, name)
            profile = dataclasses.replace(current.profile, **changes)
            violations = Violations()
            validate_profile(profile, violations, "athlete", _today())
            violations.raise_if_any()
            if profile == current.profile:
                return current
            updated = repo.update(current, profile)
            if updated is None:  # only if the lock did not hold: never a lost update
                raise _vanished_or_changed(repo.exists(athlete_id), name)
            if derived_inputs_changed(current.profile, profile):
                # Committed with the profile: whatever happens next, the periodic recompute
                # of stale athletes catches up.
                repo.mark_derived_stale(athlete_id)
        if self._on_profile_change is not None:
            try:
                self._on_profile_change(current, updated)
            except Exception:
                log.warning("recompute not started at once", athlete_id=athlete_id,
                            exc_info=True)  # fmt: skip
        return updated

    def delete(self, athlete_id: str, etag: str = "") -> None:
        """A non-empty `etag` that is not current raises Aborted (AIP-154)."""
        name = names.athlete_name(athlete_id)
        with self.db.transaction() as session:
            repo = AthleteRepository(session)
            revision = None
            if etag:
                current = repo.get(athlete_id, lock=True)
                if current is None:
                    raise NotFound(RESOURCE, name)
                etags.check(etag, current.revision, RESOURCE, name)
                revision = current.revision
            if not repo.delete(athlete_id, revision):
                raise _vanished_or_changed(revision is not None and repo.exists(athlete_id), name)
        if self._on_delete is not None:
            self._on_delete(athlete_id)

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


def _vanished_or_changed(exists: bool, name: str) -> StrideError:
    if not exists:
        return NotFound(RESOURCE, name)
    return Aborted(f"{name} was changed concurrently; retry", reason="CONCURRENT_MODIFICATION")
