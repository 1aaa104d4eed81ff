"""activities keep their training load

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:40:00

`activities.training_load` (TRIMP units, see AnalyticsService) is computed whenever an
activity or its samples are written; `training_load_estimated` says it was estimated
without heart rate. NULL for activities stored before this revision until the recompute
job reaches them (summaries and the fitness trend count them with no load).

The summary and the fitness trend read an athlete's activities in a start-time range:
`ix_activities_athlete_id_start_time_id` already serves that range. On PostgreSQL it now
also carries the columns they sum (INCLUDE), so the aggregation is an index-only scan
and never visits the table's pages; SQLite has no INCLUDE and keeps the plain index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "ix_activities_athlete_id_start_time_id"
COVERED = [
    "sport_type",
    "distance_meters",
    "moving_seconds",
    "elevation_gain_meters",
    "training_load",
    "training_load_estimated",
]


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("training_load", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column(
                "training_load_estimated",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="activities")
        op.create_index(
            INDEX,
            "activities",
            ["athlete_id", "start_time", "id"],
            unique=False,
            postgresql_include=COVERED,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="activities")
        op.create_index(INDEX, "activities", ["athlete_id", "start_time", "id"], unique=False)
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("training_load_estimated")
        batch.drop_column("training_load")
