"""repair: the columns migration 0009 gained after its first version shipped, where a catalog lacks them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

Migration 0009 was first written with `windows.schema` only; `windows.deep_files`, `windows.oldest_deep_at` and
`exports.runs_joined` were added to it afterwards. A catalog stamped 0009 by that first version never got them, and
once upgraded no audit could be recorded ("no such column"). They are added here where they are missing, and the
last full sweeps are forgotten there, so that the next audit lists in full and fills them in (as 0009 does).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LATE = {
    "windows": [sa.Column("deep_files", sa.Integer(), nullable=True), sa.Column("oldest_deep_at", sa.DateTime(timezone=True), nullable=True)],
    "exports": [sa.Column("runs_joined", sa.Boolean(), nullable=True)],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    repaired = False
    for table, columns in LATE.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c.name not in present]
        if missing:
            repaired = True
            with op.batch_alter_table(table) as batch:
                for column in missing:
                    batch.add_column(column)
    if repaired:
        op.execute("UPDATE destinations SET last_full_sweep_at = NULL, last_full_sweep_audit_id = NULL")
        op.execute("UPDATE datasets SET last_full_sweep_at = NULL")


def downgrade() -> None:
    pass  # the columns belong to 0009 (which drops them)
