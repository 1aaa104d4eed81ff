"""revision counters (etags) and access-token lineage

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 07:00:00

Athletes and activities get a `revision` that every update increments: their etag
(AIP-154) is derived from it. Access tokens record the token that created them, so
revoking a token revokes every token minted through it (ON DELETE CASCADE).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("athletes", "activities"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("revision", sa.Integer(), nullable=False, server_default="1")
            )
    with op.batch_alter_table("access_tokens") as batch:
        batch.add_column(sa.Column("parent_token_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_access_tokens_parent_token_id_access_tokens"),
            "access_tokens",
            ["parent_token_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(
            op.f("ix_access_tokens_parent_token_id"), ["parent_token_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("access_tokens") as batch:
        batch.drop_index(op.f("ix_access_tokens_parent_token_id"))
        batch.drop_constraint(
            op.f("fk_access_tokens_parent_token_id_access_tokens"), type_="foreignkey"
        )
        batch.drop_column("parent_token_id")
    for table in ("activities", "athletes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("revision")
