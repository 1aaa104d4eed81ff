"""activities remember the job that created them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 08:40:00

`activities.source_job_id` names the sync or import job that created an activity, so
`ListActivities(source_job=...)` pages through what a job produced. No foreign key: the
activity keeps the name after the job itself has expired.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("source_job_id", sa.String(length=64), nullable=True))
        batch.create_index(
            op.f("ix_activities_athlete_id_source_job_id_start_time_id"),
            ["athlete_id", "source_job_id", "start_time", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.drop_index(op.f("ix_activities_athlete_id_source_job_id_start_time_id"))
        batch.drop_column("source_job_id")
