"""the hash chain's head: the newest audit record, kept apart from the records

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

A hash chain shows a record deleted from its middle (the next one names it), but nothing in the records shows the
newest deleted: `auditor evidence chain` said INTACT, and on SQLite the next audit took the deleted one's id and
linked to the record before it, hiding the deletion for good. The head (the newest record's id and digest) is now
kept in a table of its own, written with each record: a new record links to the head, and a chain whose newest
record is not the head is broken. Catalogs start from their newest record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("audit_id", sa.Integer, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
    )
    op.execute(
        "INSERT INTO chain_head (id, audit_id, record_sha256) SELECT 1, id, record_sha256 FROM audits "
        "WHERE record_sha256 IS NOT NULL AND id = (SELECT max(id) FROM audits)"
    )


def downgrade() -> None:
    op.drop_table("chain_head")
