"""audit leases: on SQLite, the lock on a destination is a lease row its holder renews (issue 10)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

On SQLite the right to audit a destination was an exclusive lock on a file beside the database: a process
frozen while it held it (a terminal's Ctrl-Z, a debugger) kept it for as long as it was frozen, and no
other process audited the destination. The lock is now a row its holder renews, taken from a holder that
has not renewed it for a lease, as PostgreSQL's advisory locks are (held as a lease, they need no table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_leases",
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("renewed_at", sa.Float(), nullable=False),
        sa.Column("flocked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_audit_leases")),
    )


def downgrade() -> None:
    op.drop_table("audit_leases")
