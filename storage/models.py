"""SQLAlchemy models: the schema Alembic migrations create (a test checks they agree)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, on PostgreSQL and on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}


class AthleteRow(Base):
    __tablename__ = "athletes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1), default="")
    weight_kg: Mapped[float | None] = mapped_column(Float)
    max_heart_rate_bpm: Mapped[int | None] = mapped_column(Integer)
    resting_heart_rate_bpm: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Incremented by every update; the etag (AIP-154) is derived from it.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The domain.derived.VERSION the athlete's derived values were computed with.
    derived_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    create_time: Mapped[dt.datetime] = mapped_column(default=_now)
    update_time: Mapped[dt.datetime] = mapped_column(default=_now)

    __table_args__ = (Index(None, "create_time", "id"),)


class ActivityRow(Base):
    __tablename__ = "activities"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    athlete_id: Mapped[str] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sport_type: Mapped[str] = mapped_column(String(40))
    visibility: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[dt.datetime]
    time_zone: Mapped[str] = mapped_column(String(64))
    elapsed_seconds: Mapped[float] = mapped_column(Float)
    moving_seconds: Mapped[float | None] = mapped_column(Float)
    distance_meters: Mapped[float] = mapped_column(Float, default=0.0)
    elevation_gain_meters: Mapped[float] = mapped_column(Float, default=0.0)
    average_heart_rate_bpm: Mapped[float | None] = mapped_column(Float)
    max_heart_rate_bpm: Mapped[float | None] = mapped_column(Float)
    # The source's, else derived from the samples (domain.metrics); NULL when neither has
    # them, and for activities stored before 0009 until they are written again.
    elevation_loss_meters: Mapped[float | None] = mapped_column(Float)
    average_cadence_rpm: Mapped[float | None] = mapped_column(Float)
    average_power_watts: Mapped[float | None] = mapped_column(Float)
    max_power_watts: Mapped[float | None] = mapped_column(Float)
    average_speed_meters_per_second: Mapped[float | None] = mapped_column(Float)
    max_speed_meters_per_second: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))
    # Unique per (athlete, source); NULL for manual entries, so those never collide.
    external_id: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The job (sync, import) that created the activity; kept after the job expires.
    source_job_id: Mapped[str | None] = mapped_column(String(64))
    # The source's record (Strava JSON, file summary), kept to recompute derived fields.
    raw: Mapped[dict[str, Any] | None]
    sample_count: Mapped[int] = mapped_column(Integer, default=0)
    # TRIMP units (domain.training_load), computed whenever the activity or its samples are
    # written; NULL for activities stored before it was (until recomputed).
    training_load: Mapped[float | None] = mapped_column(Float)
    # The load was estimated without any heart rate.
    training_load_estimated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Incremented by every update; the etag (AIP-154) is derived from it.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    create_time: Mapped[dt.datetime] = mapped_column(default=_now)
    update_time: Mapped[dt.datetime] = mapped_column(default=_now)

    __table_args__ = (
        UniqueConstraint("athlete_id", "source", "external_id"),
        UniqueConstraint("athlete_id", "request_id"),
        # Keyset pages of ListActivities, and the range the training summary and the fitness
        # trend aggregate: on PostgreSQL the summed columns are included (index-only scans).
        Index(
            None,
            "athlete_id",
            "start_time",
            "id",
            postgresql_include=[
                "sport_type",
                "distance_meters",
                "moving_seconds",
                "elevation_gain_meters",
                "training_load",
                "training_load_estimated",
            ],
        ),
        Index(None, "athlete_id", "sport_type", "start_time"),
        Index(None, "athlete_id", "source_job_id", "start_time", "id"),
    )


class ActivityLinkRow(Base):
    """An imported item (a file's activity) found to be an activity the athlete already had
    (the duplicate rule): remembered so importing it again links again instead of storing
    it twice. Goes with the activity it points to."""

    __tablename__ = "activity_links"

    athlete_id: Mapped[str] = mapped_column(
        ForeignKey("athletes.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    activity_id: Mapped[str] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), index=True
    )
    create_time: Mapped[dt.datetime] = mapped_column(default=_now)


class ActivitySampleRow(Base):
    """One point of an activity's time series (a TimescaleDB hypertable when available)."""

    __tablename__ = "activity_samples"

    activity_id: Mapped[str] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    time: Mapped[dt.datetime] = mapped_column(primary_key=True)
    distance_meters: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    altitude_meters: Mapped[float | None] = mapped_column(Float)
    heart_rate_bpm: Mapped[int | None] = mapped_column(Integer)
    cadence_rpm: Mapped[int | None] = mapped_column(Integer)
    power_watts: Mapped[int | None] = mapped_column(Integer)
    speed_meters_per_second: Mapped[float | None] = mapped_column(Float)


class BestEffortRow(Base):
    """A run's fastest time over one standard distance (personal records are the fastest)."""

    __tablename__ = "activity_best_efforts"

    activity_id: Mapped[str] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    distance: Mapped[str] = mapped_column(String(16), primary_key=True)
    athlete_id: Mapped[str] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    sport_type: Mapped[str] = mapped_column(String(40))
    # The activity's start year in its own time zone (per-year records).
    local_year: Mapped[int] = mapped_column(Integer)
    # When the effort began.
    start_time: Mapped[dt.datetime]
    elapsed_seconds: Mapped[float] = mapped_column(Float)
    start_offset_seconds: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index(None, "athlete_id", "distance", "elapsed_seconds"),)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    athlete_id: Mapped[str | None] = mapped_column(ForeignKey("athletes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    resume_time: Mapped[dt.datetime | None]
    last_event_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[dt.datetime] = mapped_column(default=_now)
    start_time: Mapped[dt.datetime | None]
    end_time: Mapped[dt.datetime | None]
    # The worker whose task runs the job, and until when (the task renews it). A job that is
    # not ended and whose lease expired is re-enqueued by the sweeper; a QUEUED job's expiry
    # is the deadline for a worker to claim it (owner NULL).
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expire_time: Mapped[dt.datetime | None]
    # Where a re-run resumes (the task's own JSON: a page cursor, files done...).
    checkpoint: Mapped[dict[str, Any] | None]
    # What the job produced (counts, created resources' ids), set when it ends.
    result: Mapped[dict[str, Any] | None]
    # Runs started (leases claimed), including re-runs after a lost worker.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("athlete_id", "request_id"),
        Index(None, "athlete_id", "create_time"),
        Index(None, "create_time", "id"),
        # The sweeper: jobs in a given state whose lease expired.
        Index(None, "state", "lease_expire_time"),
        # Event retention: jobs that ended before a cutoff.
        Index(None, "end_time"),
    )


class JobEventRow(Base):
    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(default=_now)
    payload: Mapped[dict[str, Any]]


class DeadLetterRow(Base):
    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    args: Mapped[dict[str, Any]]
    error: Mapped[dict[str, Any]]
    attempts: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[dt.datetime] = mapped_column(default=_now, index=True)
    # The request and trace that enqueued the task ("" when unknown).
    request_id: Mapped[str] = mapped_column(String(200), default="", server_default="")
    trace_id: Mapped[str] = mapped_column(String(64), default="", server_default="")


class AccessTokenRow(Base):
    """Athlete bearer tokens, stored as SHA-256 digests only."""

    __tablename__ = "access_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    athlete_id: Mapped[str] = mapped_column(
        ForeignKey("athletes.id", ondelete="CASCADE"), index=True
    )
    display_name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token that created this one (None: created by the operator); revoking a token
    # revokes its descendants.
    parent_token_id: Mapped[str | None] = mapped_column(
        ForeignKey("access_tokens.id", ondelete="CASCADE"), index=True
    )
    expire_time: Mapped[dt.datetime | None]
    create_time: Mapped[dt.datetime] = mapped_column(default=_now)
    last_use_time: Mapped[dt.datetime | None]


class StravaConnectionRow(Base):
    """An athlete's Strava link; tokens are encrypted at rest."""

    __tablename__ = "strava_connections"

    athlete_id: Mapped[str] = mapped_column(
        ForeignKey("athletes.id", ondelete="CASCADE"), primary_key=True
    )
    strava_athlete_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    state: Mapped[str] = mapped_column(String(16))
    granted_scopes: Mapped[str] = mapped_column(String(200))
    access_token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    access_token_expire_time: Mapped[dt.datetime]
    connect_time: Mapped[dt.datetime] = mapped_column(default=_now)
    last_sync_time: Mapped[dt.datetime | None]
    # Start time of the newest activity seen, for incremental syncs.
    sync_cursor: Mapped[dt.datetime | None]
    update_time: Mapped[dt.datetime] = mapped_column(default=_now, onupdate=_now)
