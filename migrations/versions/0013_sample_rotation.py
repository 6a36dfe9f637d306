"""sampled audits: which rotation of deep checks each one took part in

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

`--sample PCT` deep-checks the files whose turn it is, the turn being the number of audits recorded so far, modulo
the rotation's length: every audit counted, quick ones too, so an hourly quick audit beside a daily sample moved the
turn on and some files were never deep-checked. An audit now records the rotation it took part in (its length and
the exports in scope, as a digest), and the turn is the number of earlier audits of the same rotation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("sample_key", sa.String(64), nullable=True))
    op.create_index("ix_audits_sample_key", "audits", ["sample_key"])


def downgrade() -> None:
    op.drop_index("ix_audits_sample_key", table_name="audits")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("sample_key")
