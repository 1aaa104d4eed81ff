"""SQL for activities and their samples."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.activities import (
    Activity,
    ActivityEdit,
    ActivityFilter,
    Measurements,
    Sample,
    Source,
    Visibility,
)
from domain.training_load import HeartRatePoint, Load
from storage.changes import touch
from storage.models import ActivityRow, ActivitySampleRow
from storage.repositories.keyset import after_position

# Measurements stored under their own names, each a nullable column (migration 0009).
SAMPLE_METRICS = (
    "elevation_loss_meters",
    "average_cadence_rpm",
    "average_power_watts",
    "max_power_watts",
    "average_speed_meters_per_second",
    "max_speed_meters_per_second",
)

# Every column but `raw`, which only re-computation reads; lists load plain rows, not ORM objects.
_COLUMNS = [column for column in ActivityRow.__table__.columns if column.name != "raw"]


def _sample_metrics(m: Measurements) -> dict[str, float | None]:
    return {name: getattr(m, name) for name in SAMPLE_METRICS}


def _to_domain(row: ActivityRow | Row[Any]) -> Activity:
    return Activity(
        id=row.id,
        athlete_id=row.athlete_id,
        edit=ActivityEdit(
            title=row.title,
            sport_type=row.sport_type,
            description=row.description,
            visibility=Visibility(row.visibility),
        ),
        measurements=Measurements(
            start_time=row.start_time,
            elapsed=dt.timedelta(seconds=row.elapsed_seconds),
            time_zone=row.time_zone,
            moving=None if row.moving_seconds is None else dt.timedelta(seconds=row.moving_seconds),
            distance_meters=row.distance_meters,
            elevation_gain_meters=row.elevation_gain_meters,
            average_heart_rate_bpm=row.average_heart_rate_bpm,
            max_heart_rate_bpm=row.max_heart_rate_bpm,
            **{name: getattr(row, name) for name in SAMPLE_METRICS},
        ),
        source=Source(row.source),
        external_id=row.external_id or "",
        sample_count=row.sample_count,
        create_time=row.create_time,
        update_time=row.update_time,
        revision=row.revision,
        source_job_id=row.source_job_id,
    )


class ActivityRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        athlete_id: str,
        edit: ActivityEdit,
        measurements: Measurements,
        *,
        source: Source,
        external_id: str | None = None,
        request_id: str | None = None,
        raw: dict[str, Any] | None = None,
        source_job_id: str | None = None,
        load: Load | None = None,
    ) -> Activity:
        touch(self.session, athlete_id)
        now = dt.datetime.now(dt.UTC)
        m = measurements
        row = ActivityRow(
            id=uuid.uuid4().hex,
            athlete_id=athlete_id,
            title=edit.title,
            description=edit.description,
            sport_type=edit.sport_type,
            visibility=edit.visibility.value,
            start_time=m.start_time,
            time_zone=m.time_zone,
            elapsed_seconds=m.elapsed.total_seconds(),
            moving_seconds=None if m.moving is None else m.moving.total_seconds(),
            distance_meters=m.distance_meters,
            elevation_gain_meters=m.elevation_gain_meters,
            average_heart_rate_bpm=m.average_heart_rate_bpm,
            max_heart_rate_bpm=m.max_heart_rate_bpm,
            **_sample_metrics(m),
            source=source.value,
            external_id=external_id,
            request_id=request_id,
            raw=raw,
            source_job_id=source_job_id,
            sample_count=0,
            training_load=None if load is None else load.value,
            training_load_estimated=load is not None and load.estimated,
            revision=1,
            create_time=now,
            update_time=now,
        )
        self.session.add(row)
        self.session.flush()
        return _to_domain(row)

    def get(self, athlete_id: str, activity_id: str, *, lock: bool = False) -> Activity | None:
        """`lock`: hold the row (FOR UPDATE on PostgreSQL) until the unit of work ends, so
        what is merged into it cannot change meanwhile; None when it does not exist (or was
        deleted while we waited for the lock)."""
        query = select(ActivityRow).where(
            ActivityRow.id == activity_id, ActivityRow.athlete_id == athlete_id
        )
        if lock:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return _to_domain(row) if row is not None else None

    def get_by_request_id(self, athlete_id: str, request_id: str) -> Activity | None:
        query = select(ActivityRow).where(
            ActivityRow.athlete_id == athlete_id, ActivityRow.request_id == request_id
        )
        row = self.session.scalars(query).first()
        return _to_domain(row) if row is not None else None

    def update_edit(self, current: Activity, edit: ActivityEdit) -> Activity | None:
        """Write `edit` over `current` (read with `lock=True` in this unit of work) and
        increment its revision; None when the row is gone or at another revision."""
        touch(self.session, current.athlete_id)
        now = dt.datetime.now(dt.UTC)
        result = self.session.execute(
            update(ActivityRow)
            .where(ActivityRow.id == current.id, ActivityRow.revision == current.revision)
            .values(
                title=edit.title,
                description=edit.description,
                sport_type=edit.sport_type,
                visibility=edit.visibility.value,
                revision=current.revision + 1,
                update_time=now,
            )
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return dataclasses.replace(
            current, edit=edit, revision=current.revision + 1, update_time=now
        )

    def set_training_load(self, athlete_id: str, activity_id: str, load: Load) -> None:
        """Store a derived value: neither the revision nor the update time changes."""
        touch(self.session, athlete_id)
        self.session.execute(
            update(ActivityRow)
            .where(ActivityRow.id == activity_id)
            .values(training_load=load.value, training_load_estimated=load.estimated)
            .execution_options(synchronize_session=False)
        )

    def training_load(self, activity_id: str) -> Load | None:
        """The stored load; None when not computed (or no such activity)."""
        found = self.session.execute(
            select(ActivityRow.training_load, ActivityRow.training_load_estimated).where(
                ActivityRow.id == activity_id
            )
        ).first()
        if found is None or found[0] is None:
            return None
        return Load(float(found[0]), bool(found[1]))

    def delete(self, athlete_id: str, activity_id: str, revision: int | None = None) -> bool:
        """With `revision`, only that revision is deleted."""
        touch(self.session, athlete_id)
        query = delete(ActivityRow).where(
            ActivityRow.id == activity_id, ActivityRow.athlete_id == athlete_id
        )
        if revision is not None:
            query = query.where(ActivityRow.revision == revision)
        result = self.session.execute(query)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def get_external(
        self, athlete_id: str, source: Source, external_id: str, *, lock: bool = False
    ) -> tuple[Activity, dict[str, Any] | None] | None:
        """The activity `source` knows as `external_id`, with its raw record."""
        query = select(ActivityRow).where(
            ActivityRow.athlete_id == athlete_id,
            ActivityRow.source == source.value,
            ActivityRow.external_id == external_id,
        )
        if lock:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return None if row is None else (_to_domain(row), row.raw)

    def raw_by_external_id(
        self, athlete_id: str, source: Source, external_ids: Sequence[str]
    ) -> dict[str, dict[str, Any] | None]:
        """The raw records of those of `external_ids` that are stored (a page's worth)."""
        if not external_ids:
            return {}
        query = select(ActivityRow.external_id, ActivityRow.raw).where(
            ActivityRow.athlete_id == athlete_id,
            ActivityRow.source == source.value,
            ActivityRow.external_id.in_(list(external_ids)),
        )
        return {str(external_id): raw for external_id, raw in self.session.execute(query)}

    def external_ids(self, athlete_id: str, source: Source) -> list[str]:
        query = select(ActivityRow.external_id).where(
            ActivityRow.athlete_id == athlete_id, ActivityRow.source == source.value
        )
        return [str(value) for value in self.session.scalars(query) if value is not None]

    def upsert_external(
        self,
        athlete_id: str,
        edit: ActivityEdit,
        measurements: Measurements,
        *,
        source: Source,
        external_id: str,
        raw: dict[str, Any],
        source_job_id: str | None,
    ) -> tuple[Activity, bool]:
        """Insert the activity `source` knows as `external_id`, or overwrite the stored copy
        (a new revision); True when created. Concurrent writers of one external id (a sync
        and a webhook job) serialise on the row: the insert never fails on the unique key."""
        touch(self.session, athlete_id)
        m = measurements
        now = dt.datetime.now(dt.UTC)
        values: dict[str, Any] = {
            "title": edit.title,
            "description": edit.description,
            "sport_type": edit.sport_type,
            "visibility": edit.visibility.value,
            "start_time": m.start_time,
            "time_zone": m.time_zone,
            "elapsed_seconds": m.elapsed.total_seconds(),
            "moving_seconds": None if m.moving is None else m.moving.total_seconds(),
            "distance_meters": m.distance_meters,
            "elevation_gain_meters": m.elevation_gain_meters,
            "average_heart_rate_bpm": m.average_heart_rate_bpm,
            "max_heart_rate_bpm": m.max_heart_rate_bpm,
            **_sample_metrics(m),
            "raw": raw,
            "update_time": now,
        }
        new_id = uuid.uuid4().hex
        on_postgresql = self.session.get_bind().dialect.name == "postgresql"
        dialect_insert = postgresql.insert if on_postgresql else sqlite.insert
        inserted = self.session.execute(
            dialect_insert(ActivityRow)
            .values(
                id=new_id,
                athlete_id=athlete_id,
                source=source.value,
                external_id=external_id,
                source_job_id=source_job_id,
                sample_count=0,
                revision=1,
                create_time=now,
                **values,
            )
            .on_conflict_do_nothing(index_elements=["athlete_id", "source", "external_id"])
            .returning(ActivityRow.id)  # rowcount is not reliable here (psycopg reports -1)
        )
        created = inserted.scalar() is not None
        if not created:
            current = self.get_external(athlete_id, source, external_id, lock=True)
            assert current is not None  # the conflicting row exists and we hold its lock
            self.session.execute(
                update(ActivityRow)
                .where(ActivityRow.id == current[0].id)
                .values(revision=ActivityRow.revision + 1, **values)
                .execution_options(synchronize_session=False)
            )
        stored = self.get_external(athlete_id, source, external_id)
        assert stored is not None
        return stored[0], created

    def delete_external(
        self, athlete_id: str, source: Source, external_ids: Sequence[str] | None = None
    ) -> int:
        """Delete what came from `source` (only `external_ids` when given), samples too."""
        touch(self.session, athlete_id)
        query = delete(ActivityRow).where(
            ActivityRow.athlete_id == athlete_id, ActivityRow.source == source.value
        )
        if external_ids is not None:
            query = query.where(ActivityRow.external_id.in_(list(external_ids)))
        result = self.session.execute(query)
        return int(result.rowcount)  # type: ignore[attr-defined]

    def list(
        self,
        athlete_id: str,
        where: ActivityFilter,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[Activity]:
        query = select(*_COLUMNS).where(ActivityRow.athlete_id == athlete_id)
        if where.start_from is not None:
            query = query.where(ActivityRow.start_time >= where.start_from)
        if where.start_to is not None:
            query = query.where(ActivityRow.start_time < where.start_to)
        if where.sport_types:
            query = query.where(ActivityRow.sport_type.in_(where.sport_types))
        if where.source_job_id is not None:
            query = query.where(ActivityRow.source_job_id == where.source_job_id)
        if where.descending:
            query = query.order_by(ActivityRow.start_time.desc(), ActivityRow.id.desc())
        else:
            query = query.order_by(ActivityRow.start_time, ActivityRow.id)
        if after is not None:
            query = query.where(
                after_position(ActivityRow.start_time, ActivityRow.id, after, where.descending)
            )
        return [_to_domain(row) for row in self.session.execute(query.limit(limit))]


_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SAMPLE_COLUMNS = (
    "distance_meters",
    "latitude",
    "longitude",
    "altitude_meters",
    "heart_rate_bpm",
    "cadence_rpm",
    "power_watts",
    "speed_meters_per_second",
)


class SampleRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def replace(self, activity_id: str, samples: Sequence[Sample]) -> int:
        """Store an activity's samples, replacing earlier ones (re-imports stay idempotent).
        The caller wrote the activity in the same unit of work (which touched its athlete)."""
        self.session.execute(
            delete(ActivitySampleRow).where(ActivitySampleRow.activity_id == activity_id)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            self._copy(activity_id, samples)
        elif samples:
            # One executemany of plain tuples: building a parameter dict per sample through
            # Core costs more than the insert itself. Times as SQLAlchemy's SQLite DateTime
            # stores them (naive UTC, microseconds always written), so they compare alike.
            columns = ", ".join(("activity_id", "time", *_SAMPLE_COLUMNS))
            marks = ", ".join("?" * (2 + len(_SAMPLE_COLUMNS)))
            rows = [
                (
                    activity_id,
                    s.time.astimezone(dt.UTC).strftime(_SQLITE_TIME),
                    *(getattr(s, column) for column in _SAMPLE_COLUMNS),
                )
                for s in samples
            ]
            self.session.connection().exec_driver_sql(
                f"INSERT INTO activity_samples ({columns}) VALUES ({marks})", rows
            )
        count = self.session.scalar(
            select(func.count()).where(ActivitySampleRow.activity_id == activity_id)
        )
        # New samples are a new version of the activity: its etag changes.
        self.session.execute(
            update(ActivityRow)
            .where(ActivityRow.id == activity_id)
            .values(sample_count=count, revision=ActivityRow.revision + 1)
        )
        return int(count or 0)

    def _copy(self, activity_id: str, samples: Sequence[Sample]) -> None:
        """PostgreSQL's COPY: several times faster than multi-row INSERTs for a long track."""
        if not samples:
            return
        columns = ", ".join(("activity_id", "time", *_SAMPLE_COLUMNS))
        connection: Any = self.session.connection().connection.driver_connection  # psycopg
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY activity_samples ({columns}) FROM STDIN") as copy,
        ):
            for s in samples:
                copy.write_row(
                    (activity_id, s.time, *(getattr(s, column) for column in _SAMPLE_COLUMNS))
                )

    def heart_rate_points(self, activity_id: str, start_time: dt.datetime) -> list[HeartRatePoint]:
        """Every sample as (seconds since `start_time`, heart rate), for the training load:
        two narrow columns, time order."""
        query = (
            select(ActivitySampleRow.time, ActivitySampleRow.heart_rate_bpm)
            .where(ActivitySampleRow.activity_id == activity_id)
            .order_by(ActivitySampleRow.time)
        )
        return [
            ((time - start_time).total_seconds(), heart_rate)
            for time, heart_rate in self.session.execute(query)
        ]

    def chunk(self, activity_id: str, after: dt.datetime | None, limit: int) -> list[Sample]:
        query = (
            select(ActivitySampleRow)
            .where(ActivitySampleRow.activity_id == activity_id)
            .order_by(ActivitySampleRow.time)
            .limit(limit)
        )
        if after is not None:
            query = query.where(ActivitySampleRow.time > after)
        return [
            Sample(time=row.time, **{column: getattr(row, column) for column in _SAMPLE_COLUMNS})
            for row in self.session.scalars(query)
        ]
