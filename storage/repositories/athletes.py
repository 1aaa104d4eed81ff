"""SQL for athletes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sqlalchemy import Select, case, delete, select, update
from sqlalchemy.orm import Session

from domain import derived
from domain.athletes import Athlete, AthleteProfile, Sex
from domain.connections import ConnectionState
from storage.changes import touch
from storage.models import AthleteRow, StravaConnectionRow
from storage.repositories.keyset import after_position


def _to_domain(row: AthleteRow, strava_state: str | None) -> Athlete:
    return Athlete(
        id=row.id,
        profile=AthleteProfile(
            display_name=row.display_name,
            time_zone=row.time_zone,
            birth_date=row.birth_date,
            sex=Sex(row.sex),
            weight_kg=row.weight_kg,
            max_heart_rate_bpm=row.max_heart_rate_bpm,
            resting_heart_rate_bpm=row.resting_heart_rate_bpm,
        ),
        strava_state=ConnectionState(strava_state or ConnectionState.NOT_CONNECTED),
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
    )


def _select() -> Select[AthleteRow, str]:
    return select(AthleteRow, StravaConnectionRow.state).outerjoin(
        StravaConnectionRow, StravaConnectionRow.athlete_id == AthleteRow.id
    )


class AthleteRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, profile: AthleteProfile, request_id: str | None) -> Athlete:
        now = dt.datetime.now(dt.UTC)
        row = AthleteRow(
            id=uuid.uuid4().hex,
            request_id=request_id,
            create_time=now,
            update_time=now,
            revision=1,
            derived_version=derived.VERSION,  # nothing to derive yet
            **_columns(profile),
        )
        self.session.add(row)
        self.session.flush()
        touch(self.session, row.id)
        return _to_domain(row, None)

    def get(self, athlete_id: str, *, lock: bool = False, share: bool = False) -> Athlete | None:
        """None when the athlete does not exist (or was deleted while we waited for a lock).

        The locks hold until the unit of work ends (PostgreSQL; on SQLite a write unit of
        work holds the whole database). `lock` (FOR NO KEY UPDATE): for read-merge-write, so
        what is merged into cannot change meanwhile. `share` (FOR KEY SHARE): for work that
        adds rows under the athlete, who then cannot be deleted meanwhile; neither blocks
        the other, so adding activities never waits for a profile update."""
        query = _select().where(AthleteRow.id == athlete_id)
        if lock or share:
            query = query.with_for_update(of=AthleteRow, read=share and not lock, key_share=True)
        found = self.session.execute(query).first()
        return _to_domain(found[0], found[1]) if found else None

    def stale_derived(self, version: int, limit: int) -> list[str]:
        """Athletes whose derived values were computed with a version before `version`."""
        query = (
            select(AthleteRow.id)
            .where(AthleteRow.derived_version < version)
            .order_by(AthleteRow.id)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def derived_version(self, athlete_id: str) -> int | None:
        return self.session.scalar(
            select(AthleteRow.derived_version).where(AthleteRow.id == athlete_id)
        )

    def set_derived_version(
        self, athlete_id: str, version: int, *, expected: int | None = None
    ) -> bool:
        """With `expected`, only if the version is still that (no profile change since);
        True when set."""
        touch(self.session, athlete_id)
        query = update(AthleteRow).where(AthleteRow.id == athlete_id)
        if expected is not None:
            query = query.where(AthleteRow.derived_version == expected)
        result = self.session.execute(query.values(derived_version=version))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def mark_derived_stale(self, athlete_id: str) -> None:
        """Derived values no longer reflect the profile: a new negative version each time,
        so a recompute that began before this change cannot mark them current."""
        touch(self.session, athlete_id)
        current = AthleteRow.derived_version
        self.session.execute(
            update(AthleteRow)
            .where(AthleteRow.id == athlete_id)
            .values(derived_version=case((current > 0, -1), else_=current - 1))
        )

    def exists(self, athlete_id: str, *, share: bool = False) -> bool:
        """`share`: as for `get`."""
        query = select(AthleteRow.id).where(AthleteRow.id == athlete_id)
        if share:
            query = query.with_for_update(read=True, key_share=True)
        return self.session.execute(query).first() is not None

    def get_by_request_id(self, request_id: str) -> Athlete | None:
        found = self.session.execute(_select().where(AthleteRow.request_id == request_id)).first()
        return _to_domain(found[0], found[1]) if found else None

    def update(self, current: Athlete, profile: AthleteProfile) -> Athlete | None:
        """Write `profile` over `current` (read with `lock=True` in this unit of work) and
        increment its revision; None when the row is gone."""
        touch(self.session, current.id)
        now = dt.datetime.now(dt.UTC)
        result = self.session.execute(
            update(AthleteRow)
            .where(AthleteRow.id == current.id, AthleteRow.revision == current.revision)
            .values(revision=current.revision + 1, update_time=now, **_columns(profile))
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return dataclasses.replace(
            current, profile=profile, revision=current.revision + 1, update_time=now
        )

    def delete(self, athlete_id: str, revision: int | None = None) -> bool:
        """Activities, samples, tokens and jobs go with the athlete (ON DELETE CASCADE).
        With `revision`, only that revision is deleted."""
        touch(self.session, athlete_id)
        query = delete(AthleteRow).where(AthleteRow.id == athlete_id)
        if revision is not None:
            query = query.where(AthleteRow.revision == revision)
        result = self.session.execute(query)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def list(self, after: tuple[dt.datetime, str] | None, limit: int) -> list[Athlete]:
        query = _select().order_by(AthleteRow.create_time, AthleteRow.id).limit(limit)
        if after is not None:
            query = query.where(after_position(AthleteRow.create_time, AthleteRow.id, after))
        return [_to_domain(row, state) for row, state in self.session.execute(query).all()]


def _columns(profile: AthleteProfile) -> dict[str, object]:
    return {
        "display_name": profile.display_name,
        "time_zone": profile.time_zone,
        "birth_date": profile.birth_date,
        "sex": profile.sex.value,
        "weight_kg": profile.weight_kg,
        "max_heart_rate_bpm": profile.max_heart_rate_bpm,
        "resting_heart_rate_bpm": profile.resting_heart_rate_bpm,
    }
