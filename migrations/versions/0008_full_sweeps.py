"""full sweeps: when each destination was last listed in full (incremental listing, issue 10)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Audits list only the prefixes that can still change; a full sweep of the whole destination runs on
its own schedule (`full_sweep_every`). The destination row keeps the as-of time and the audit of its
last live full sweep. A catalog upgraded from an earlier release has none, so its next audit sweeps.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("last_full_sweep_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_full_sweep_audit_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("last_full_sweep_audit_id")
        batch.drop_column("last_full_sweep_at")
