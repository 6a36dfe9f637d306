"""the catalog is a ledger: audit scope and reports, live as-of per export, alert episodes and notices

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Alerts move from one row per (key, channel, kind) for the catalog's lifetime to episodes (a
condition from opening to closing) with one notice per channel and kind, and every delivery
attempt recorded. Existing alerts become episodes: an alert key with a resolution is a closed
episode, one without is open; its notices keep their state, attempts and errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("scope", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("live_exports", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("report", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("report_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("live_as_of", TZ, nullable=True))
        batch.add_column(sa.Column("live_audit_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("broken_at", TZ, nullable=True))
        batch.add_column(sa.Column("as_of", TZ, nullable=True))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=True))
    with op.batch_alter_table("window_status_history") as batch:
        batch.add_column(sa.Column("live", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.create_index("ix_window_status_history_at", ["window_id", "at"])
    with op.batch_alter_table("windows") as batch:
        batch.add_column(sa.Column("known_status", sa.String(length=16), nullable=True))
    op.execute("UPDATE windows SET known_status = status WHERE status <> 'unknown'")
    op.create_index("ix_files_folder", "files", ["destination_id", "folder_key"])

    # what the catalog knew before: each export's latest audit was its live one
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE exports SET live_as_of = (SELECT max(a.as_of) FROM windows w JOIN audits a ON a.id = w.last_audit_id WHERE w.export_id = exports.id),"
            " live_audit_id = (SELECT max(w.last_audit_id) FROM windows w WHERE w.export_id = exports.id)"
        )
    )
    bind.execute(sa.text("UPDATE datasets SET as_of = (SELECT e.live_as_of FROM exports e WHERE e.id = datasets.export_id)"))

    episodes = op.create_table(
        "alert_episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("export", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("scheduled", TZ, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("opened_audit_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("closed_audit_id", sa.Integer(), nullable=True),
        sa.Column("close_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_episodes")),
    )
    op.create_index("ix_alert_episodes_key", "alert_episodes", ["key"])
    op.create_index(
        "uq_alert_episodes_open_key", "alert_episodes", ["key"], unique=True, sqlite_where=sa.text("closed_at IS NULL"), postgresql_where=sa.text("closed_at IS NULL")
    )
    notices = op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_holder", sa.String(length=200), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["alert_episodes.id"], name=op.f("fk_notices_episode_id_alert_episodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint("episode_id", "channel", "kind", name=op.f("uq_notices_episode_id")),
    )
    op.create_index("ix_notices_due", "notices", ["state", "next_attempt_at"])
    op.create_table(
        "notice_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], name=op.f("fk_notice_attempts_notice_id_notices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_attempts")),
    )
    op.create_index("ix_notice_attempts_notice_id", "notice_attempts", ["notice_id"])
    _move_alerts(bind, episodes, notices)
    op.drop_table("alerts")


def _move_alerts(bind: Any, episodes: sa.Table, notices: sa.Table) -> None:
    rows = bind.execute(sa.text("SELECT key, rule, export, dataset_id, scheduled, channel, kind, message, payload, created_at, resolved_at, state, attempts, last_error, delivered_at FROM alerts ORDER BY id")).mappings().all()
    by_key: dict[str, list[Any]] = {}
    for row in rows:
        by_key.setdefault(row["key"], []).append(row)
    for key, group in by_key.items():
        alerts = [r for r in group if r["kind"] == "alert"] or group
        first = alerts[0]
        resolved = next((r["resolved_at"] for r in alerts if r["resolved_at"] is not None), None)
        recovery = next((r for r in group if r["kind"] == "recovery"), None)
        episode_id = bind.execute(
            episodes.insert().values(
                key=key, rule=first["rule"], export=first["export"], dataset_id=first["dataset_id"], scheduled=_time(first["scheduled"]), message=first["message"],
                opened_at=_time(first["created_at"]), closed_at=_time(resolved), close_message=recovery["message"] if recovery else None,
            )
        ).inserted_primary_key[0]
        for r in group:
            payload = r["payload"]
            bind.execute(
                notices.insert().values(
                    episode_id=episode_id, channel=r["channel"], kind=r["kind"], message=r["message"], payload=payload if isinstance(payload, dict) else _json(payload),
                    created_at=_time(r["created_at"]), state=r["state"], attempts=r["attempts"], next_attempt_at=_time(r["created_at"]), last_error=r["last_error"],
                    delivered_at=_time(r["delivered_at"]),
                )
            )


def _json(value: Any) -> dict[str, Any]:
    import json

    return dict(json.loads(value)) if value else {}


def _time(value: Any) -> datetime | None:
    """SQLite hands timestamps back as text; PostgreSQL as aware datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def downgrade() -> None:
    """Back to one alert row per (key, channel, kind): the newest episode of each key is kept."""
    bind = op.get_bind()
    alerts = op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("export", sa.String(length=200), nullable=False),
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("scheduled", TZ, nullable=True),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", "channel", "kind", name=op.f("uq_alerts_key")),
    )
    rows = bind.execute(
        sa.text(
            "SELECT e.key, e.rule, e.export, e.dataset_id, e.scheduled, e.closed_at, n.channel, n.kind, n.message, n.payload, n.created_at, n.state, n.attempts,"
            " n.last_error, n.delivered_at FROM notices n JOIN alert_episodes e ON e.id = n.episode_id ORDER BY e.id DESC, n.id"
        )
    ).mappings().all()
    seen: set[tuple[str, str, str]] = set()
    for r in rows:
        if (r["key"], r["channel"], r["kind"]) in seen:
            continue
        seen.add((r["key"], r["channel"], r["kind"]))
        payload = r["payload"] if isinstance(r["payload"], dict) else _json(r["payload"])
        bind.execute(
            alerts.insert().values(
                key=r["key"], rule=r["rule"], export=r["export"], dataset_id=r["dataset_id"], scheduled=_time(r["scheduled"]), channel=r["channel"], kind=r["kind"],
                message=r["message"], payload=payload, created_at=_time(r["created_at"]), resolved_at=_time(r["closed_at"]) if r["kind"] == "alert" else None,
                state=r["state"], attempts=r["attempts"], last_error=r["last_error"], delivered_at=_time(r["delivered_at"]),
            )
        )
    op.drop_table("notice_attempts")
    op.drop_table("notices")
    op.drop_table("alert_episodes")
    op.drop_index("ix_files_folder", table_name="files")
    with op.batch_alter_table("windows") as batch:
        batch.drop_column("known_status")
    with op.batch_alter_table("window_status_history") as batch:
        batch.drop_index("ix_window_status_history_at")
        batch.drop_column("live")
    with op.batch_alter_table("datasets") as batch:
        for column in ("active", "as_of", "broken_at"):
            batch.drop_column(column)
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("live_audit_id")
        batch.drop_column("live_as_of")
    with op.batch_alter_table("audits") as batch:
        for column in ("report_sha256", "report", "live_exports", "scope"):
            batch.drop_column(column)
