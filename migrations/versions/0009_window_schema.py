"""carried windows: a window row keeps its schema and deep-check summary; an export, whether runs were joined (issue 10)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Between full sweeps an audit carries a settled window as the catalog last judged it (status, counts,
findings) instead of listing and re-reading its files, so the window row now also keeps the schema the
next window's is compared with, and how many of its data files were deep-checked and the oldest of
those checks (what the report's assurance adds up). Rows written before have none: every destination's
last full sweep is cleared, so the next audit of each lists in full and fills them in. An export row
also says whether its windows were last judged with their dataflow runs: when that changes, its
settled windows are judged again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("windows") as batch:
        batch.add_column(sa.Column("schema", sa.Text(), nullable=True))
        batch.add_column(sa.Column("deep_files", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("oldest_deep_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("runs_joined", sa.Boolean(), nullable=True))
    op.execute("UPDATE destinations SET last_full_sweep_at = NULL, last_full_sweep_audit_id = NULL")


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("runs_joined")
    with op.batch_alter_table("windows") as batch:
        batch.drop_column("oldest_deep_at")
        batch.drop_column("deep_files")
        batch.drop_column("schema")
