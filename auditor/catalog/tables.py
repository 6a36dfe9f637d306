"""Catalog tables (SQLAlchemy Core: the ORM is never used, and importing it would cost every command
about 0.1 s); `metadata` is what Alembic compares against."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


metadata = MetaData(naming_convention=NAMING)
UTCDateTime = DateTime(timezone=True)


AUDITS = Table(
    "audits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("as_of", UTCDateTime, nullable=False),
    Column("status", String(32), nullable=True),
    Column("deep", Boolean, default=False, nullable=False),
    Column("bytes_read", BigInteger, default=0, nullable=False),
    Column("summary", JSON, nullable=True),
    Column("scope", JSON, nullable=True),  # the exports this audit covered
    Column("live_exports", JSON, nullable=True),  # of those, where it changed the present
    Column("report", LargeBinary, nullable=True),  # the JSON report, gzip-compressed
    Column("report_sha256", String(64), nullable=True),
    Column("prev_sha256", String(64), nullable=True),  # the previous record's digest: a hash chain
    Column("record_sha256", String(64), nullable=True),  # auditor.evidence.ChainedRecord.digest()
    Column("sample_key", String(64), nullable=True),  # the --sample rotation it took part in (auditor.audit.sample_key)
    Index("ix_audits_report_sha256", "report_sha256"),
    Index("ix_audits_sample_key", "sample_key"),
)


# The hash chain's head: the newest audit record's id and digest, kept apart from the records (one row, id 1), so that
# deleting the newest records is seen (auditor.evidence.check_chain) and a new record links to what was deleted.
CHAIN_HEAD = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("audit_id", Integer, nullable=False),
    Column("record_sha256", String(64), nullable=False),
)


DESTINATIONS = Table(
    "destinations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("url", Text, nullable=False),  # redacted: never credentials
    Column("last_full_sweep_at", DateTime(timezone=True), nullable=True),  # as-of time of the last live full listing
    Column("last_full_sweep_audit_id", Integer, nullable=True),
)


EXPORTS = Table(
    "exports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("destination_id", Integer, ForeignKey("destinations.id"), nullable=False),
    Column("format", String(16), nullable=False),
    Column("compression", String(16), nullable=False),
    Column("manifest", Boolean, nullable=False),
    Column("grace_seconds", Integer, nullable=False),
    Column("flow_id", String(64), nullable=True),
    Column("schedule", JSON, nullable=False),
    Column("folder_template", Text, nullable=False),
    Column("live_as_of", UTCDateTime, nullable=True),  # as-of time of its latest live audit
    Column("live_audit_id", Integer, nullable=True),
    Column("runs_joined", Boolean, nullable=True),  # its windows were last judged with its flow's runs
)


DATASETS = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("export_id", Integer, ForeignKey("exports.id"), nullable=False),
    Column("dataset_id", String(200), nullable=False),
    Column("restorable_until", UTCDateTime, nullable=True),
    Column("broken_at", UTCDateTime, nullable=True),
    Column("as_of", UTCDateTime, nullable=True),  # the live audit these values are from
    Column("active", Boolean, nullable=True),  # the schedule had not ended at that audit
    Column("last_full_sweep_at", UTCDateTime, nullable=True),  # as-of time of the last live full listing that judged its windows
    UniqueConstraint("export_id", "dataset_id"),
)


# A dataset's restore point as each live audit established it (the RPO trend).
POINTS = Table(
    "restore_points",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("export_id", Integer, ForeignKey("exports.id"), nullable=False),
    Column("dataset_id", String(200), nullable=False),
    Column("audit_id", Integer, ForeignKey("audits.id"), nullable=False),
    Column("as_of", UTCDateTime, nullable=False),
    Column("restorable_until", UTCDateTime, nullable=True),
    Index("ix_restore_points_dataset", "export_id", "dataset_id", "as_of"),
)


FOLDERS = Table(
    "export_folders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("destination_id", Integer, ForeignKey("destinations.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("dataset_id", String(200), nullable=False),
    Column("export_time", UTCDateTime, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    UniqueConstraint("destination_id", "key"),
)


FILES = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("destination_id", Integer, ForeignKey("destinations.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("folder_key", Text, nullable=True),
    Column("role", String(16), nullable=False),  # data | manifest
    Column("size", BigInteger, nullable=False),
    Column("etag", String(200), nullable=True),
    Column("modified", UTCDateTime, nullable=True),
    Column("level", Integer, nullable=False),  # auditor.validate.Level
    Column("validated_at", UTCDateTime, nullable=True),
    Column("deep_at", UTCDateTime, nullable=True),
    Column("records", BigInteger, nullable=True),
    Column("findings", JSON, nullable=False),
    Column("content", JSON, nullable=True),  # parsed manifest
    Column("schema", Text, nullable=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("gone_at", UTCDateTime, nullable=True),
    UniqueConstraint("destination_id", "key"), Index("ix_files_folder", "destination_id", "folder_key"),
)


# A dataflow run as the Flow Service reported it (what the exporter says happened).
RUNS = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("flow_id", String(64), index=True, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("records", BigInteger, nullable=True),
    Column("files", Integer, nullable=True),
    Column("dataset_records", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
)


# One alert condition (rule x window, or rule x dataset) from when it opened until it closed.
# one open episode per condition, whatever the number of processes (a partial unique index)
EPISODES = Table(
    "alert_episodes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(400), index=True, nullable=False),  # rule|export|dataset|scheduled
    Column("rule", String(200), nullable=False),
    Column("export", String(200), nullable=False),
    Column("dataset_id", String(200), nullable=False),
    Column("scheduled", UTCDateTime, nullable=True),
    Column("message", Text, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("opened_audit_id", Integer, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("closed_audit_id", Integer, nullable=True),
    Column("close_message", Text, nullable=True),
    Column("seen_at", UTCDateTime, nullable=True),  # the last live audit that found the condition holding (opened_at before one did)
    Index("uq_alert_episodes_open_key", "key", unique=True, sqlite_where=text("closed_at IS NULL"), postgresql_where=text("closed_at IS NULL")),
)


# One alert or recovery notice of an episode for one channel; claimed before it is sent.
NOTICES = Table(
    "notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("episode_id", Integer, ForeignKey("alert_episodes.id"), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # alert | recovery
    Column("message", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_holder", String(200), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    UniqueConstraint("episode_id", "channel", "kind"), Index("ix_notices_due", "state", "next_attempt_at"),
)


# Every delivery attempt and its outcome.
ATTEMPTS = Table(
    "notice_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("notice_id", Integer, ForeignKey("notices.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered | retry | failed
    Column("error", Text, nullable=True),
    Index("ix_notice_attempts_notice_id", "notice_id"),
)


# dataset + time -> windows: the unique constraint's index; counts by status: ix_windows_status alone
WINDOWS = Table(
    "windows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("export_id", Integer, ForeignKey("exports.id"), nullable=False),
    Column("dataset_id", String(200), nullable=False),
    Column("scheduled", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("known_status", String(16), nullable=True),  # the last status other than unknown
    Column("folder_key", Text, nullable=True),
    Column("files", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("records", BigInteger, nullable=True),
    Column("schema", Text, nullable=True),  # what the next window's Parquet schema is compared with
    Column("deep_files", Integer, nullable=True),  # of its data files, how many were deep-checked
    Column("oldest_deep_at", UTCDateTime, nullable=True),  # and the oldest of those checks
    Column("status_since", UTCDateTime, nullable=False),
    Column("last_audit_id", Integer, ForeignKey("audits.id"), nullable=False),
    UniqueConstraint("export_id", "dataset_id", "scheduled"), Index("ix_windows_status", "export_id", "dataset_id", "status"),
)


# A window's status as an audit saw it, kept in as-of order (`at` is the audit's as-of time).
HISTORY = Table(
    "window_status_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("window_id", Integer, ForeignKey("windows.id"), nullable=False),
    Column("audit_id", Integer, ForeignKey("audits.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("live", Boolean, default=True, server_default=true(), nullable=False),  # as migration 0004 added it
    Index("ix_window_status_history_at", "window_id", "at"),
)


FINDINGS = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("window_id", Integer, ForeignKey("windows.id"), nullable=False),
    Column("audit_id", Integer, ForeignKey("audits.id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_findings_window_id", "window_id"),
)


# A dashboard sign-in. Only the SHA-256 of the session id (the cookie's value) is stored, never the id or the token.
SESSIONS = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("token_name", String(200), nullable=False),  # the [service].tokens entry it signed in with
    Column("token_binding", String(64), nullable=False),  # HMAC-SHA256 of that token keyed by the session id: a changed token ends it
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),  # idle expiry counts from here
    Column("expires_at", UTCDateTime, nullable=False),  # absolute expiry
    Index("ix_sessions_expires_at", "expires_at"),
)


# Who audits a destination now, on SQLite (PostgreSQL: advisory locks held as a lease). A holder renews its row while it
# lives; a row not renewed for a lease is free to take, as is one whose holder had the lock file and has let go of it.
LEASES = Table(
    "audit_leases",
    metadata,
    Column("destination", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),  # host:pid:random of the process holding it
    Column("renewed_at", Float, nullable=False),  # this machine's clock (seconds since the epoch): SQLite leases are one machine's
    Column("flocked", Boolean, nullable=False),  # whether the holder also holds the lock file beside the database
)
