"""dead letters remember the request and trace that enqueued their task

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 08:50:00

`dead_letters.request_id` and `dead_letters.trace_id` (AdminService's DeadLetter exposes
both) let an operator find the failed task's log lines. Empty for letters stored before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(
            sa.Column("request_id", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("trace_id", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("trace_id")
        batch.drop_column("request_id")
