"""Use cases for activities and their samples."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import derived, etags, names
from domain.activities import (
    Activity,
    ActivityEdit,
    ActivityFilter,
    Measurements,
    Sample,
    Source,
    validate_edit,
    validate_measurements,
    with_age_grade,
)
from domain.athletes import AthleteProfile
from domain.best_efforts import best_efforts, offsets_from_samples
from domain.errors import Aborted, NotFound, StrideError, Violations
from domain.metrics import fill_from_samples
from domain.sports import RUNNING_SPORTS
from domain.training_load import HeartRatePoint, Load, activity_load, heart_rate_points
from domain.validation import check_request_id
from services.athletes import RESOURCE as ATHLETE_RESOURCE
from services.athletes import require_athlete
from services.paging import Paging
from storage.database import Database, Reader
from storage.repositories.activities import ActivityRepository, SampleRepository
from storage.repositories.athletes import AthleteRepository
from storage.repositories.records import BestEffortRepository

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
                # Locked (FOR SHARE on PostgreSQL) so the athlete cannot be deleted before the
                # activity is in: a concurrent DeleteAthlete waits, then removes both.
                athlete = AthleteRepository(session).get(athlete_id, share=True)
                if athlete is None:
                    raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
                repo = ActivityRepository(session)
                if request_id and (found := repo.get_by_request_id(athlete_id, request_id)):
                    return with_age_grade(found, athlete.profile)
                if not measurements.time_zone:
                    measurements = dataclasses.replace(
                        measurements, time_zone=athlete.profile.time_zone
                    )
                added = repo.add(
                    athlete_id,
                    edit,
                    measurements,
                    source=Source.MANUAL,
                    request_id=request_id or None,
                    load=training_load(athlete.profile, measurements, []),
                )
                return with_age_grade(added, athlete.profile)
        except IntegrityError:
            # A concurrent retry with the same request_id won the insert: return its result.
            # Anything else (the athlete deleted meanwhile) answers ABORTED (server/errors.py).
            if not request_id:
                raise
            with self.db.read_primary() as session:
                found = ActivityRepository(session).get_by_request_id(athlete_id, request_id)
                if found is None:
                    raise
                return with_age_grade(found, require_athlete(session, athlete_id).profile)

    def get(self, athlete_id: str, activity_id: str) -> Activity:
        with self.db.read_primary() as session:
            activity = _require(ActivityRepository(session), athlete_id, activity_id)
            return with_age_grade(activity, require_athlete(session, athlete_id).profile)

    def update(
        self, athlete_id: str, activity_id: str, changes: dict[str, Any], etag: str = ""
    ) -> Activity:
        """Apply `changes` (editable field -> value) and validate the result.

        The row is locked before it is read, so concurrent updates merge one after the
        other; a non-empty `etag` that is not current raises Aborted (AIP-154)."""
        name = names.activity_name(athlete_id, activity_id)
        with self.db.transaction() as session:
            repo = ActivityRepository(session)
            current = _require(repo, athlete_id, activity_id, lock=True)
            etags.check(etag, current.revision, RESOURCE, name)
            edit = dataclasses.replace(current.edit, **changes)
            violations = Violations()
            validate_edit(edit, violations, "activity")
            violations.raise_if_any()
            profile = require_athlete(session, athlete_id).profile
            if edit == current.edit:
                return with_age_grade(current, profile)
            updated = repo.update_edit(current, edit)
            if updated is None:  # only if the lock did not hold: never a lost update
                raise _vanished_or_changed(repo.get(athlete_id, activity_id) is not None, name)
            if edit.sport_type != current.edit.sport_type:  # a run now, or no run any more
                _keep_best_efforts(session, updated, updated.measurements, edit.sport_type,
                                   None, profile.time_zone)  # fmt: skip
            return with_age_grade(updated, profile)

    def delete(self, athlete_id: str, activity_id: str, etag: str = "") -> None:
        """A non-empty `etag` that is not current raises Aborted (AIP-154)."""
        name = names.activity_name(athlete_id, activity_id)
        with self.db.transaction() as session:
            repo = ActivityRepository(session)
            revision = None
            if etag:
                current = _require(repo, athlete_id, activity_id, lock=True)
                etags.check(etag, current.revision, RESOURCE, name)
                revision = current.revision
            if not repo.delete(athlete_id, activity_id, revision):
                exists = revision is not None and repo.get(athlete_id, activity_id) is not None
                raise _vanished_or_changed(exists, name)

    def list_page(
        self,
        athlete_id: str,
        where: ActivityFilter,
        page_size: int,
        page_token: str,
        *,
        primary: bool = False,
    ) -> tuple[list[Activity], str]:
        """`primary`: read the primary, not a replica (a page that is cached must not be
        older than the writes before it)."""
        violations = Violations()
        size = self.paging.size(page_size, violations)
        if where.start_from and where.start_to and where.start_from >= where.start_to:
            violations.add("start_time_to", "must be after start_time_from")
        violations.raise_if_any()
        query = f"activities|{athlete_id}|{where!r}"
        after = self.paging.time_key(page_token, query)
        with self.db.read_primary() if primary else self.db.read_only() as session:
            profile = require_athlete(session, athlete_id).profile
            rows = ActivityRepository(session).list(athlete_id, where, after, size + 1)
        token = self.paging.next_token(
            query, rows, size, lambda a: (a.measurements.start_time, a.id)
        )
        return [with_age_grade(a, profile) for a in rows[:size]], token

    def open_samples(self, athlete_id: str, activity_id: str) -> SampleReader:
        """A reader of the activity's samples, pinned to one replica (or the primary) for the
        whole stream; raises NotFound when the activity is not there."""
        reader = self.db.reader()
        with reader.session() as session:
            _require(ActivityRepository(session), athlete_id, activity_id)
        return SampleReader(reader, activity_id)


class SampleReader:
    """Reads one activity's samples chunk by chunk, every chunk from the same database."""

    def __init__(self, reader: Reader, activity_id: str) -> None:
        self._reader = reader
        self.activity_id = activity_id

    def after(self, after: dt.datetime | None, limit: int) -> list[Sample]:
        with self._reader.session() as session:
            return SampleRepository(session).chunk(self.activity_id, after, limit)


def training_load(
    profile: AthleteProfile, measurements: Measurements, samples: list[HeartRatePoint]
) -> Load:
    """An activity's load (domain.training_load) for the athlete's profile, on the day it
    started in the athlete's time zone (the day the age-predicted maximum is taken on)."""
    zone = ZoneInfo(profile.time_zone or "UTC")
    day = measurements.start_time.astimezone(zone).date()
    return activity_load(measurements, samples, profile, day)


def _require(
    repo: ActivityRepository, athlete_id: str, activity_id: str, *, lock: bool = False
) -> Activity:
    activity = repo.get(athlete_id, activity_id, lock=lock)
    if activity is None:
        raise NotFound(RESOURCE, names.activity_name(athlete_id, activity_id))
    return activity


def _vanished_or_changed(exists: bool, name: str) -> StrideError:
    if not exists:
        return NotFound(RESOURCE, name)
    return Aborted(f"{name} was changed concurrently; retry", reason="CONCURRENT_MODIFICATION")


def _keep_best_efforts(
    session: Session,
    activity: Activity,
    measurements: Measurements,
    sport_type: str,
    samples: list[Sample] | None,
    athlete_zone: str,
) -> None:
    """A run's best efforts follow its samples (personal records are read from them); an
    edit that leaves the recording alone keeps them, unless the activity is no run now. The
    year a record counts for is the calendar year in the athlete's time zone. The activity
    row is held, so two writers (a sync, a recompute) of one activity's efforts take turns."""
    activities = ActivityRepository(session)
    if activities.get(activity.athlete_id, activity.id, lock=True) is None:
        return  # deleted meanwhile
    if sport_type not in RUNNING_SPORTS:
        samples = []
    elif samples is None:
        if not activity.sample_count:
            return
        samples = SampleRepository(session).chunk(activity.id, None, activity.sample_count)
    start = measurements.start_time
    efforts = best_efforts(offsets_from_samples(start, samples)) if samples else {}
    year = start.astimezone(ZoneInfo(athlete_zone or "UTC")).year
    BestEffortRepository(session).replace(
        activity.id, activity.athlete_id, sport_type, start, year, efforts
    )


class ExternalActivities:
    """Activities that mirror another system's (Strava; later file imports): written by
    jobs, keyed by (athlete, source, external id), so writing one twice stores it once."""

    def __init__(self, db: Database, source: Source) -> None:
        self.db = db
        self.source = source

    def stored_raw(self, athlete_id: str, external_ids: list[str]) -> dict[str, Any]:
        """The source records stored for those of `external_ids` that exist."""
        with self.db.read_primary() as session:
            return ActivityRepository(session).raw_by_external_id(
                athlete_id, self.source, external_ids
            )

    def stored_ids(self, athlete_id: str) -> set[str]:
        with self.db.read_primary() as session:
            return set(ActivityRepository(session).external_ids(athlete_id, self.source))

    def write(
        self,
        athlete_id: str,
        external_id: str,
        edit: ActivityEdit,
        measurements: Measurements,
        raw: dict[str, Any],
        samples: list[Sample] | None,
        job_id: str | None,
        *,
        derived: bool = False,
    ) -> tuple[Activity, bool, int]:
        """Store the activity and (unless `samples` is None) replace its samples, and its
        training load (from the samples given, else those stored), in one unit of work;
        (activity, created, samples written). What the source left empty in `measurements`
        (elevation loss, moving time, averages...) is filled from the same samples
        (domain.metrics.fill_from_samples), so an update without samples (a title edit)
        keeps what the stored ones say; `derived`: the caller already did so from `samples`
        (a file import), and they are not summarized twice."""
        with self.db.transaction() as session:
            # Held (FOR KEY SHARE) so the athlete is not deleted under the write; its
            # profile weighs the training load.
            athlete = AthleteRepository(session).get(athlete_id, share=True)
            if athlete is None:
                raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
            if not measurements.time_zone:  # the source did not say: the athlete's own
                zone = athlete.profile.time_zone
                measurements = dataclasses.replace(measurements, time_zone=zone)
            activities = ActivityRepository(session)
            sample_repo = SampleRepository(session)
            if samples is not None:
                if not derived:
                    measurements = fill_from_samples(measurements, samples)
            elif (stored := activities.get_external(athlete_id, self.source, external_id)) and (
                count := stored[0].sample_count
            ):
                kept = sample_repo.chunk(stored[0].id, None, count)
                measurements = fill_from_samples(measurements, kept)
            activity, created = activities.upsert_external(
                athlete_id,
                edit,
                measurements,
                source=self.source,
                external_id=external_id,
                raw=raw,
                source_job_id=job_id,
            )
            written = 0
            start = measurements.start_time
            if samples is not None:
                written = sample_repo.replace(activity.id, samples)
                points = heart_rate_points(samples, start)
            elif activity.sample_count:
                points = sample_repo.heart_rate_points(activity.id, start)
            else:
                points = []
            load = training_load(athlete.profile, measurements, points)
            activities.set_training_load(athlete_id, activity.id, load)
            _keep_best_efforts(session, activity, measurements, edit.sport_type, samples,
                               athlete.profile.time_zone)  # fmt: skip
        return activity, created, written

    def delete(self, athlete_id: str, external_ids: list[str] | None = None) -> int:
        """Delete what came from the source (only `external_ids` when given)."""
        with self.db.transaction() as session:
            return ActivityRepository(session).delete_external(
                athlete_id, self.source, external_ids
            )


class DerivedValues:
    """What is computed from an activity and the athlete's profile (training load, best
    efforts), brought up to date for stored activities: after a profile change that weighs
    in (birth date, sex, heart rates), or a change of the algorithms. A page at a time,
    each its own unit of work, so a recompute job checkpoints between pages."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def recompute_page(
        self, athlete_id: str, after: tuple[dt.datetime, str] | None, limit: int
    ) -> tuple[int, tuple[dt.datetime, str] | None]:
        """Recompute up to `limit` activities after `after` (start time, id), oldest first;
        (how many, where the next page starts; None when none were left)."""
        with self.db.transaction() as session:
            athlete = AthleteRepository(session).get(athlete_id, share=True)
            if athlete is None:
                raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
            activities = ActivityRepository(session)
            page = activities.list(athlete_id, ActivityFilter(), after, limit)
            samples = SampleRepository(session)
            for activity in page:
                m = activity.measurements
                points = (
                    samples.heart_rate_points(activity.id, m.start_time)
                    if (activity.sample_count)
                    else []
                )
                activities.set_training_load(
                    athlete_id, activity.id, training_load(athlete.profile, m, points)
                )
                _keep_best_efforts(session, activity, m, activity.edit.sport_type, None,
                                   athlete.profile.time_zone)  # fmt: skip
        if not page:
            return 0, None
        last = page[-1]
        return len(page), (last.measurements.start_time, last.id)

    def version_of(self, athlete_id: str) -> int:
        """The derived-values version the athlete is at (before a recompute starts)."""
        with self.db.read_primary() as session:
            version = AthleteRepository(session).derived_version(athlete_id)
        if version is None:
            raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
        return version

    def mark_current(self, athlete_id: str, expected: int) -> bool:
        """The athlete's derived values reflect this version of the algorithms, unless the
        version moved from `expected` (a profile change since the recompute began)."""
        with self.db.transaction() as session:
            return AthleteRepository(session).set_derived_version(
                athlete_id, derived.VERSION, expected=expected
            )

    def stale(self, limit: int) -> list[str]:
        """Athletes whose derived values reflect an older version of the algorithms."""
        with self.db.read_only() as session:
            return AthleteRepository(session).stale_derived(derived.VERSION, limit)
