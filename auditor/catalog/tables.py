"""Catalog tables (SQLAlchemy 2.0 declarative); `metadata` is what Alembic compares against."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata
UTCDateTime = DateTime(timezone=True)


class AuditRow(Base):
    __tablename__ = "audits"
    __table_args__ = (Index("ix_audits_report_sha256", "report_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(32))
    deep: Mapped[bool] = mapped_column(Boolean, default=False)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scope: Mapped[list[str] | None] = mapped_column(JSON)  # the exports this audit covered
    live_exports: Mapped[list[str] | None] = mapped_column(JSON)  # of those, where it changed the present
    report: Mapped[bytes | None] = mapped_column(LargeBinary)  # the JSON report, gzip-compressed
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    prev_sha256: Mapped[str | None] = mapped_column(String(64))  # the previous record's digest: a hash chain
    record_sha256: Mapped[str | None] = mapped_column(String(64))  # auditor.evidence.ChainedRecord.digest()


class DestinationRow(Base):
    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)  # redacted: never credentials
    last_full_sweep_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # as-of time of the last live full listing
    last_full_sweep_audit_id: Mapped[int | None] = mapped_column(Integer)


class ExportRow(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"))
    format: Mapped[str] = mapped_column(String(16))
    compression: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[bool] = mapped_column(Boolean)
    grace_seconds: Mapped[int] = mapped_column(Integer)
    flow_id: Mapped[str | None] = mapped_column(String(64))
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    folder_template: Mapped[str] = mapped_column(Text)
    live_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)  # as-of time of its latest live audit
    live_audit_id: Mapped[int | None] = mapped_column(Integer)


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("export_id", "dataset_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"))
    dataset_id: Mapped[str] = mapped_column(String(200))
    restorable_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    broken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the live audit these values are from
    active: Mapped[bool | None] = mapped_column(Boolean)  # the schedule had not ended at that audit


class RestorePointRow(Base):
    """A dataset's restore point as each live audit established it (the RPO trend)."""

    __tablename__ = "restore_points"
    __table_args__ = (Index("ix_restore_points_dataset", "export_id", "dataset_id", "as_of"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"))
    dataset_id: Mapped[str] = mapped_column(String(200))
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    restorable_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FolderRow(Base):
    __tablename__ = "export_folders"
    __table_args__ = (UniqueConstraint("destination_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"))
    key: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[str] = mapped_column(String(200))
    export_time: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class FileRow(Base):
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("destination_id", "key"), Index("ix_files_folder", "destination_id", "folder_key"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id"))
    key: Mapped[str] = mapped_column(Text)
    folder_key: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # data | manifest
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(200))
    modified: Mapped[datetime | None] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer)  # auditor.validate.Level
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deep_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    records: Mapped[int | None] = mapped_column(BigInteger)
    findings: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # parsed manifest
    schema: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunRow(Base):
    """A dataflow run as the Flow Service reported it (what the exporter says happened)."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    records: Mapped[int | None] = mapped_column(BigInteger)
    files: Mapped[int | None] = mapped_column(Integer)
    dataset_records: Mapped[dict[str, int]] = mapped_column(JSON)
    errors: Mapped[list[list[str]]] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class EpisodeRow(Base):
    """One alert condition (rule x window, or rule x dataset) from when it opened until it closed."""

    __tablename__ = "alert_episodes"
    # one open episode per condition, whatever the number of processes (a partial unique index)
    __table_args__ = (Index("uq_alert_episodes_open_key", "key", unique=True, sqlite_where=text("closed_at IS NULL"), postgresql_where=text("closed_at IS NULL")),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400), index=True)  # rule|export|dataset|scheduled
    rule: Mapped[str] = mapped_column(String(200))
    export: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(String(200))
    scheduled: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_audit_id: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_audit_id: Mapped[int | None] = mapped_column(Integer)
    close_message: Mapped[str | None] = mapped_column(Text)


class NoticeRow(Base):
    """One alert or recovery notice of an episode for one channel; claimed before it is sent."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("episode_id", "channel", "kind"), Index("ix_notices_due", "state", "next_attempt_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("alert_episodes.id"))
    channel: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # alert | recovery
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NoticeAttemptRow(Base):
    """Every delivery attempt and its outcome."""

    __tablename__ = "notice_attempts"
    __table_args__ = (Index("ix_notice_attempts_notice_id", "notice_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    holder: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | failed
    error: Mapped[str | None] = mapped_column(Text)


class WindowRow(Base):
    __tablename__ = "windows"
    # dataset + time -> windows: the unique constraint's index; counts by status: ix_windows_status alone
    __table_args__ = (UniqueConstraint("export_id", "dataset_id", "scheduled"), Index("ix_windows_status", "export_id", "dataset_id", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("exports.id"))
    dataset_id: Mapped[str] = mapped_column(String(200))
    scheduled: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    known_status: Mapped[str | None] = mapped_column(String(16))  # the last status other than unknown
    folder_key: Mapped[str | None] = mapped_column(Text)
    files: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int | None] = mapped_column(BigInteger)
    schema: Mapped[str | None] = mapped_column(Text)  # what the next window's Parquet schema is compared with
    status_since: Mapped[datetime] = mapped_column(UTCDateTime)
    last_audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))


class WindowHistoryRow(Base):
    """A window's status as an audit saw it, kept in as-of order (`at` is the audit's as-of time)."""

    __tablename__ = "window_status_history"
    __table_args__ = (Index("ix_window_status_history_at", "window_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"))
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    live: Mapped[bool] = mapped_column(Boolean, default=True)


class FindingRow(Base):
    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_window_id", "window_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"))
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)


class SessionRow(Base):
    """A dashboard sign-in. Only the SHA-256 of the session id (the cookie's value) is stored, never the id or the token."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_expires_at", "expires_at"),)
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_name: Mapped[str] = mapped_column(String(200))  # the [service].tokens entry it signed in with
    token_binding: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 of that token keyed by the session id: a changed token ends it
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)  # idle expiry counts from here
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # absolute expiry
