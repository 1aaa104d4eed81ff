"""job leases, checkpoints, results and attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00

Jobs survive a dead worker: the running task holds a lease (owner and expiry) that it
renews, a sweeper re-enqueues jobs whose lease expired (found through the index on state
and lease expiry), and the re-run resumes from the stored checkpoint. `attempts` counts the
runs started; `result` holds what the job produced. Event retention finds ended jobs by
`end_time`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("lease_expire_time", storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index(
            op.f("ix_jobs_state_lease_expire_time"), ["state", "lease_expire_time"], unique=False
        )
        batch.create_index(op.f("ix_jobs_end_time"), ["end_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(op.f("ix_jobs_end_time"))
        batch.drop_index(op.f("ix_jobs_state_lease_expire_time"))
        batch.drop_column("attempts")
        batch.drop_column("result")
        batch.drop_column("checkpoint")
        batch.drop_column("lease_expire_time")
        batch.drop_column("lease_owner")
