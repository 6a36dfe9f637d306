"""tamper evidence: each audit record carries the digest of the previous one and its own; restore points over time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Records written before this revision are chained as they are, in id order, so `auditor evidence
chain` checks everything from here on and every later change to an older record.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("prev_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("record_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "restore_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restorable_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["audit_id"], ["audits.id"], name=op.f("fk_restore_points_audit_id_audits")),
        sa.ForeignKeyConstraint(["export_id"], ["exports.id"], name=op.f("fk_restore_points_export_id_exports")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_points")),
    )
    op.create_index("ix_restore_points_dataset", "restore_points", ["export_id", "dataset_id", "as_of"])
    from auditor.evidence import GENESIS, ChainedRecord, sha256

    bind = op.get_bind()
    previous = GENESIS
    rows = bind.execute(sa.text("SELECT id, started_at, finished_at, as_of, status, deep, scope, live_exports, report, report_sha256 FROM audits ORDER BY id")).mappings().all()
    for row in rows:
        report_sha = row["report_sha256"] or (sha256(gzip.decompress(row["report"])) if row["report"] else None)
        record = ChainedRecord(
            row["id"], _time(row["started_at"]), _time(row["finished_at"]), _time(row["as_of"]) or datetime.min.replace(tzinfo=UTC), row["status"], bool(row["deep"]),
            tuple(_list(row["scope"])), tuple(_list(row["live_exports"] if row["live_exports"] is not None else row["scope"])), report_sha, previous,
        )
        digest = record.digest()
        bind.execute(sa.text("UPDATE audits SET prev_sha256 = :p, record_sha256 = :r, report_sha256 = :s WHERE id = :i"), {"p": previous, "r": digest, "s": report_sha, "i": row["id"]})
        previous = digest


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        import json

        return list(json.loads(value))
    return list(value)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def downgrade() -> None:
    op.drop_table("restore_points")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("record_sha256")
        batch.drop_column("prev_sha256")
