"""alert episodes: when a live audit last found an open episode's condition holding

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

Two configurations on one catalog with different alert rules (serve's, and a compliance job's) closed each
other's open episodes as "no longer monitored" at every audit, and the condition, still holding, was alerted
again by the next audit of the configuration that names the rule: a missing window paged once per audit of
the other. An episode of a rule a configuration does not name is now closed only once no live audit has found
its condition holding for a while: each audit that finds it holding again records when. Open episodes start
from when they opened.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_episodes") as batch:
        batch.add_column(sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE alert_episodes SET seen_at = opened_at")


def downgrade() -> None:
    with op.batch_alter_table("alert_episodes") as batch:
        batch.drop_column("seen_at")
