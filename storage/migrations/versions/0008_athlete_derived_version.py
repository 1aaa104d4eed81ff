"""athletes remember which version of the derived-value algorithms their data reflects

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 11:00:00

`athletes.derived_version` is the `domain.derived.VERSION` their activities' training loads
and best efforts were last computed with. Existing athletes start at 0, so after this
revision every one of them is recomputed once (which also fills the loads and best efforts
of activities stored before 0006 and 0007); new athletes start current.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("athletes") as batch:
        batch.add_column(
            sa.Column("derived_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("athletes") as batch:
        batch.drop_column("derived_version")
