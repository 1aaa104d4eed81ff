"""activities keep the measurements derived from samples when the source lacks them

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 12:30:00

Elevation loss, average cadence, average and maximum power, and average and maximum speed:
the source's values, else what `domain.metrics` derives from the activity's samples. All
nullable, without a server default: activities stored before this revision keep NULL (read
as "not known") until they are written again (a re-sync or re-import); no backfill runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = (
    "elevation_loss_meters",
    "average_cadence_rpm",
    "average_power_watts",
    "max_power_watts",
    "average_speed_meters_per_second",
    "max_speed_meters_per_second",
)


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
