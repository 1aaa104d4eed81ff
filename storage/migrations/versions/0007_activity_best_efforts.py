"""activities keep their best efforts (personal records are the fastest of them)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 10:50:00

One row per (activity, standard distance) for runs with distance samples, written with the
samples. `local_year` is the year of the activity's start in its time zone (per-year
records); `start_time` is when the effort began. Records are read with a window over
(athlete, distance[, year]) ordered by time, which the (athlete, distance, elapsed) index
serves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity_best_efforts",
        sa.Column("activity_id", sa.String(64), nullable=False),
        sa.Column("distance", sa.String(16), nullable=False),
        sa.Column("athlete_id", sa.String(64), nullable=False),
        sa.Column("sport_type", sa.String(40), nullable=False),
        sa.Column("local_year", sa.Integer(), nullable=False),
        sa.Column("start_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("elapsed_seconds", sa.Float(), nullable=False),
        sa.Column("start_offset_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name="fk_activity_best_efforts_activity_id_activities",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name="fk_activity_best_efforts_athlete_id_athletes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activity_id", "distance", name="pk_activity_best_efforts"),
    )
    op.create_index(
        "ix_activity_best_efforts_athlete_id_distance_elapsed_seconds",
        "activity_best_efforts",
        ["athlete_id", "distance", "elapsed_seconds"],
    )


def downgrade() -> None:
    op.drop_table("activity_best_efforts")
