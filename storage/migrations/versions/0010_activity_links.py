"""imported items that turned out to be activities the athlete already had are linked to them

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 13:00:00

A file import that finds an activity matching the duplicate rule (start and distance close
to one already stored, whatever its source) records (athlete, source, external id) ->
activity here instead of storing a second copy, so importing the same file again links
again. A link goes with its activity.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity_links",
        sa.Column("athlete_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("activity_id", sa.String(64), nullable=False),
        sa.Column("create_time", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name="fk_activity_links_athlete_id_athletes",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name="fk_activity_links_activity_id_activities",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("athlete_id", "source", "external_id", name="pk_activity_links"),
    )
    op.create_index("ix_activity_links_activity_id", "activity_links", ["activity_id"])


def downgrade() -> None:
    op.drop_table("activity_links")
