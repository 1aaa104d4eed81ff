"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 19:00:07.530384
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "athletes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("max_heart_rate_bpm", sa.Integer(), nullable=True),
        sa.Column("resting_heart_rate_bpm", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_athletes")),
        sa.UniqueConstraint("request_id", name=op.f("uq_athletes_request_id")),
    )
    op.create_index(
        op.f("ix_athletes_create_time_id"), "athletes", ["create_time", "id"], unique=False
    )
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("athlete_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expire_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_use_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name=op.f("fk_access_tokens_athlete_id_athletes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_access_tokens_athlete_id"), "access_tokens", ["athlete_id"], unique=False
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("athlete_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sport_type", sa.String(length=40), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("start_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("elapsed_seconds", sa.Float(), nullable=False),
        sa.Column("moving_seconds", sa.Float(), nullable=True),
        sa.Column("distance_meters", sa.Float(), nullable=False),
        sa.Column("elevation_gain_meters", sa.Float(), nullable=False),
        sa.Column("average_heart_rate_bpm", sa.Float(), nullable=True),
        sa.Column("max_heart_rate_bpm", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("update_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name=op.f("fk_activities_athlete_id_athletes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
        sa.UniqueConstraint(
            "athlete_id", "request_id", name=op.f("uq_activities_athlete_id_request_id")
        ),
        sa.UniqueConstraint(
            "athlete_id",
            "source",
            "external_id",
            name=op.f("uq_activities_athlete_id_source_external_id"),
        ),
    )
    op.create_index(
        op.f("ix_activities_athlete_id_sport_type_start_time"),
        "activities",
        ["athlete_id", "sport_type", "start_time"],
        unique=False,
    )
    op.create_index(
        op.f("ix_activities_athlete_id_start_time_id"),
        "activities",
        ["athlete_id", "start_time", "id"],
        unique=False,
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("athlete_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("resume_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("start_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name=op.f("fk_jobs_athlete_id_athletes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("athlete_id", "request_id", name=op.f("uq_jobs_athlete_id_request_id")),
    )
    op.create_index(
        op.f("ix_jobs_athlete_id_create_time"), "jobs", ["athlete_id", "create_time"], unique=False
    )
    op.create_index(op.f("ix_jobs_create_time_id"), "jobs", ["create_time", "id"], unique=False)
    op.create_table(
        "strava_connections",
        sa.Column("athlete_id", sa.String(length=64), nullable=False),
        sa.Column("strava_athlete_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("granted_scopes", sa.String(length=200), nullable=False),
        sa.Column("access_token_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column(
            "access_token_expire_time", storage.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("connect_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_sync_time", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sync_cursor", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("update_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name=op.f("fk_strava_connections_athlete_id_athletes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("athlete_id", name=op.f("pk_strava_connections")),
        sa.UniqueConstraint(
            "strava_athlete_id", name=op.f("uq_strava_connections_strava_athlete_id")
        ),
    )
    op.create_table(
        "activity_samples",
        sa.Column("activity_id", sa.String(length=64), nullable=False),
        sa.Column("time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("distance_meters", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("altitude_meters", sa.Float(), nullable=True),
        sa.Column("heart_rate_bpm", sa.Integer(), nullable=True),
        sa.Column("cadence_rpm", sa.Integer(), nullable=True),
        sa.Column("power_watts", sa.Integer(), nullable=True),
        sa.Column("speed_meters_per_second", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_samples_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activity_id", "time", name=op.f("pk_activity_samples")),
    )
    _make_samples_hypertable()
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_dead_letters_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_create_time"), "dead_letters", ["create_time"], unique=False
    )
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "sequence", name=op.f("pk_job_events")),
    )


def _make_samples_hypertable() -> None:
    """On TimescaleDB, samples become a compressed hypertable segmented by activity.

    Detection needs no privilege beyond owning the database (`shared_preload_libraries` is
    readable only by superusers). The extension is used when this database has it; else it is
    created when TimescaleDB's library is preloaded (its settings then appear in pg_settings,
    which never lists mere placeholders), inside a savepoint so a refusal (say, a role not
    allowed to create it) leaves a plain table. Creating it without the preload would end the
    session (TimescaleDB raises FATAL), hence the check before trying.
    """
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    installed = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    ).first()
    if installed is None:
        preloaded = bind.execute(
            sa.text(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
                " AND EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'timescaledb.%')"
            )
        ).first()
        if preloaded is None:
            return
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
        except sa.exc.DBAPIError as exc:
            logging.getLogger(__name__).warning(
                "cannot enable TimescaleDB (%s); activity_samples stays a plain table",
                str(exc.orig or exc).strip().partition("\n")[0],
            )
            return
    op.execute(
        "SELECT create_hypertable('activity_samples', 'time',"
        " chunk_time_interval => INTERVAL '30 days', if_not_exists => TRUE)"
    )
    op.execute(
        "ALTER TABLE activity_samples SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'activity_id', timescaledb.compress_orderby = 'time')"
    )
    op.execute("SELECT add_compression_policy('activity_samples', INTERVAL '60 days')")


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_index(op.f("ix_dead_letters_create_time"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("activity_samples")
    op.drop_table("strava_connections")
    op.drop_index(op.f("ix_jobs_create_time_id"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_athlete_id_create_time"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_activities_athlete_id_start_time_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_athlete_id_sport_type_start_time"), table_name="activities")
    op.drop_table("activities")
    op.drop_index(op.f("ix_access_tokens_athlete_id"), table_name="access_tokens")
    op.drop_table("access_tokens")
    op.drop_index(op.f("ix_athletes_create_time_id"), table_name="athletes")
    op.drop_table("athletes")
