"""per-dataset full sweeps: the last live full listing that judged the windows of an export's dataset (issue 10)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

A destination's last full sweep was recorded when an audit covered every export its configuration
named there: an audit run with a configuration naming only some of them (a job auditing one export)
recorded it for all, and the others' settled windows went unlisted for another sweep period, a file
deleted in one of them unseen (as did one naming only some of an export's datasets). Each dataset of
an export now keeps the as-of time of the last live full listing that judged its windows, and a sweep
is due when the oldest of those in scope is due. Rows already there start from their destination's
last sweep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("last_full_sweep_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE datasets SET last_full_sweep_at = (SELECT destinations.last_full_sweep_at FROM exports JOIN destinations "
        "ON destinations.id = exports.destination_id WHERE exports.id = datasets.export_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("last_full_sweep_at")
