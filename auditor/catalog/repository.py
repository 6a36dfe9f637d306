"""Catalog: the only module that runs SQL; takes and returns domain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast, overload

from sqlalchemy import Connection, Engine, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from auditor.audit import AuditOptions, FileRecord
from auditor.catalog.engine import ensure_schema, make_engine
from auditor.catalog.tables import (
    AlertRow,
    AuditRow,
    DatasetRow,
    DestinationRow,
    ExportRow,
    FileRow,
    FindingRow,
    FolderRow,
    RunRow,
    WindowHistoryRow,
    WindowRow,
)
from auditor.config import Settings
from auditor.errors import CatalogError
from auditor.findings import Finding
from auditor.flows.models import Run
from auditor.reconcile import Status
from auditor.report import AuditReport, iso
from auditor.storage.base import redact, scrub

DESTINATIONS = cast(Table, DestinationRow.__table__)
EXPORTS = cast(Table, ExportRow.__table__)
DATASETS = cast(Table, DatasetRow.__table__)
FOLDERS = cast(Table, FolderRow.__table__)
FILES = cast(Table, FileRow.__table__)
WINDOWS = cast(Table, WindowRow.__table__)
HISTORY = cast(Table, WindowHistoryRow.__table__)
RUNS = cast(Table, RunRow.__table__)
ALERTS = cast(Table, AlertRow.__table__)
FINDINGS = cast(Table, FindingRow.__table__)
AUDITS = cast(Table, AuditRow.__table__)


def open_catalog(url: str) -> Catalog:
    """Connect to the catalog, upgrading a SQLite schema by itself."""
    engine = make_engine(url)
    ensure_schema(engine)
    return Catalog(engine)


class Catalog:
    """Reads and writes the catalog; every database failure becomes a CatalogError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def known_files(self, destination: str) -> dict[str, FileRecord]:
        query = (
            select(FILES)
            .join(DESTINATIONS, FILES.c.destination_id == DESTINATIONS.c.id)
            .where(DESTINATIONS.c.name == destination, FILES.c.gone_at.is_(None))
        )
        with self._connect() as conn:
            return {row.key: _file_record(row) for row in conn.execute(query)}

    def audit_count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AUDITS)).scalar_one())

    def window_states(self, export: str) -> dict[tuple[str, datetime], dict[str, Any]]:
        """The last recorded status of each window of an export."""
        query = select(WINDOWS).join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id).where(EXPORTS.c.name == export)
        with self._connect() as conn:
            return {(row.dataset_id, _utc(row.scheduled)): row._asdict() for row in conn.execute(query)}

    def window_history(self, export: str, dataset: str, scheduled: datetime) -> list[tuple[datetime, str]]:
        query = (
            select(HISTORY.c.at, HISTORY.c.status)
            .join(WINDOWS, HISTORY.c.window_id == WINDOWS.c.id)
            .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export, WINDOWS.c.dataset_id == dataset, WINDOWS.c.scheduled == scheduled)
            .order_by(HISTORY.c.id)
        )
        with self._connect() as conn:
            return [(_utc(at), status) for at, status in conn.execute(query)]

    def table_counts(self) -> dict[str, int]:
        tables = (AUDITS, DESTINATIONS, EXPORTS, DATASETS, FOLDERS, FILES, WINDOWS, HISTORY, FINDINGS, RUNS)
        with self._connect() as conn:
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}

    def runs_of(self, flow_ids: Iterable[str]) -> dict[str, list[Run]]:
        """The runs recorded for these flows (what is known when the Flow Service cannot be reached)."""
        wanted = list(flow_ids)
        found: dict[str, list[Run]] = {f: [] for f in wanted}
        with self._connect() as conn:
            for row in conn.execute(select(RUNS).where(RUNS.c.flow_id.in_(wanted))):
                found[row.flow_id].append(
                    Run(row.id, row.flow_id, row.status, _utc(row.created_at), _utc(row.started_at), _utc(row.completed_at), row.records, row.files,
                        dict(row.dataset_records or {}), tuple((str(c), str(m)) for c, m in row.errors or []))
                )
        return found

    # -- alerts --------------------------------------------------------------

    def alert_keys(self) -> tuple[set[str], set[str]]:
        """(keys ever alerted, keys alerted and not yet resolved)."""
        with self._connect() as conn:
            rows = conn.execute(select(ALERTS.c.key, ALERTS.c.resolved_at).where(ALERTS.c.kind == "alert")).all()
        return {k for k, _ in rows}, {k for k, resolved in rows if resolved is None}

    def add_notices(self, notices: Sequence[Mapping[str, Any]]) -> None:
        """Queue notices; a (key, channel, kind) that exists already is left alone (exactly once)."""
        with self._connect() as conn, conn.begin():
            _upsert(conn, ALERTS, [dict(n) for n in notices], ["key", "channel", "kind"], [])

    def resolve(self, key: str, when: datetime) -> None:
        with self._connect() as conn, conn.begin():
            conn.execute(update(ALERTS).where(ALERTS.c.key == key, ALERTS.c.kind == "alert", ALERTS.c.resolved_at.is_(None)).values(resolved_at=when))

    def pending_notices(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return [row._asdict() for row in conn.execute(select(ALERTS).where(ALERTS.c.state == "pending").order_by(ALERTS.c.id))]

    def record_delivery(self, notice_id: int, *, attempts: int, error: str | None, permanent: bool, when: datetime, give_up_after: int = 20) -> None:
        """Record one delivery outcome; a notice that keeps failing is given up after `give_up_after` attempts."""
        with self._connect() as conn, conn.begin():
            total = int(conn.execute(select(ALERTS.c.attempts).where(ALERTS.c.id == notice_id)).scalar_one()) + attempts
            state = "delivered" if error is None else ("failed" if permanent or total >= give_up_after else "pending")
            conn.execute(update(ALERTS).where(ALERTS.c.id == notice_id).values(state=state, attempts=total, last_error=error, delivered_at=when if error is None else None))

    def notices(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest notices first."""
        with self._connect() as conn:
            return [_plain(row._asdict()) for row in conn.execute(select(ALERTS).order_by(ALERTS.c.id.desc()).limit(limit))]

    # -- reads for the service ---------------------------------------------------

    def deep_coverage(self) -> tuple[int, int]:
        """(data files present, of which deep-verified)."""
        present = (FILES.c.role == "data") & FILES.c.gone_at.is_(None)
        with self._connect() as conn:
            files = int(conn.execute(select(func.count()).select_from(FILES).where(present)).scalar_one())
            verified = int(conn.execute(select(func.count()).select_from(FILES).where(present & FILES.c.deep_at.is_not(None))).scalar_one())
        return files, verified

    def audits(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return [_plain(row._asdict()) for row in conn.execute(select(AUDITS).order_by(AUDITS.c.id.desc()).limit(limit))]

    def export_rows(self) -> list[dict[str, Any]]:
        """Every export and dataset with its restore point and window counts by status."""
        query = (
            select(EXPORTS.c.name, DATASETS.c.dataset_id, DATASETS.c.restorable_until, WINDOWS.c.status, func.count(WINDOWS.c.id))
            .join(DATASETS, DATASETS.c.export_id == EXPORTS.c.id)
            .join(WINDOWS, (WINDOWS.c.export_id == EXPORTS.c.id) & (WINDOWS.c.dataset_id == DATASETS.c.dataset_id), isouter=True)
            .group_by(EXPORTS.c.name, DATASETS.c.dataset_id, DATASETS.c.restorable_until, WINDOWS.c.status)
        )
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        with self._connect() as conn:
            for name, dataset, until, status, count in conn.execute(query):
                row = rows.setdefault((name, dataset), {"name": name, "dataset_id": dataset, "restorable_until": iso(_utc(until)), "windows": {}})
                if status:
                    row["windows"][status] = int(count)
        return sorted(rows.values(), key=lambda r: (r["name"], r["dataset_id"]))

    def window_rows(self, export: str, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        query = select(WINDOWS).join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id).where(EXPORTS.c.name == export)
        if start is not None:
            query = query.where(WINDOWS.c.scheduled >= start)
        if end is not None:
            query = query.where(WINDOWS.c.scheduled <= end)
        with self._connect() as conn:
            return [_plain(row._asdict()) for row in conn.execute(query.order_by(WINDOWS.c.scheduled))]

    def window_findings(self, export: str, dataset: str, scheduled: datetime) -> list[dict[str, Any]]:
        query = (
            select(FINDINGS.c.code, FINDINGS.c.severity, FINDINGS.c.path, FINDINGS.c.message)
            .join(WINDOWS, FINDINGS.c.window_id == WINDOWS.c.id)
            .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export, WINDOWS.c.dataset_id == dataset, WINDOWS.c.scheduled == scheduled)
            .order_by(FINDINGS.c.id)
        )
        with self._connect() as conn:
            return [row._asdict() for row in conn.execute(query)]

    def folder_files(self, destination: str, folder_keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The data files present in each of these export folders, in one query."""
        found: dict[str, list[dict[str, Any]]] = {k: [] for k in folder_keys}
        query = (
            select(FILES.c.folder_key, FILES.c.key, FILES.c.size, FILES.c.etag, FILES.c.records)
            .join(DESTINATIONS, FILES.c.destination_id == DESTINATIONS.c.id)
            .where(DESTINATIONS.c.name == destination, FILES.c.folder_key.in_(list(folder_keys)), FILES.c.role == "data", FILES.c.gone_at.is_(None))
            .order_by(FILES.c.key)
        )
        with self._connect() as conn:
            for row in conn.execute(query):
                values = row._asdict()
                found[values.pop("folder_key")].append(values)
        return found

    def record_audit(
        self,
        settings: Settings,
        report: AuditReport,
        files: Mapping[str, list[FileRecord]],
        *,
        listed: Mapping[str, set[str]],
        started: datetime,
        options: AuditOptions,
        runs: Mapping[str, Sequence[Run]] | None = None,
    ) -> int:
        """Store one audit: exports, folders, files, windows with history, findings; idempotent."""
        with self._connect() as conn, conn.begin():
            audit_id = conn.execute(
                AUDITS.insert().values(
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    as_of=report.as_of,
                    status=report.status,
                    deep=options.deep,
                    bytes_read=report.assurance.bytes_read,
                    summary={
                        "counts": {s.value: n for s, n in report.counts().items()},
                        "unexpected": len(report.unexpected),
                        "errors": [{"destination": e.destination, "message": e.message} for e in report.errors],
                    },
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            destination_ids = self._sync_config(conn, settings, report)
            for name, records in files.items():
                self._record_files(conn, destination_ids[name], records, report.as_of, present=listed.get(name))
            self._record_windows(conn, report, destination_ids, audit_id)
            self._record_runs(conn, runs or {}, report.as_of)
            return int(audit_id)

    def _record_runs(self, conn: Connection, runs: Mapping[str, Sequence[Run]], now: datetime) -> None:
        rows = [
            {
                "id": r.id, "flow_id": r.flow_id, "status": r.status, "created_at": r.created_at, "started_at": r.started_at, "completed_at": r.completed_at,
                "records": r.records, "files": r.files, "dataset_records": dict(r.dataset_records), "errors": [list(e) for e in r.errors], "first_seen": now, "last_seen": now,
            }
            for flow_runs in runs.values()
            for r in flow_runs
        ]
        columns = ["status", "created_at", "started_at", "completed_at", "records", "files", "dataset_records", "errors", "last_seen"]
        _upsert(conn, RUNS, rows, ["id"], columns)

    # -- writing -------------------------------------------------------------

    def _sync_config(self, conn: Connection, settings: Settings, report: AuditReport) -> dict[str, int]:
        _upsert(conn, DESTINATIONS, [{"name": d.name, "url": redact(d.url)} for d in settings.destinations], ["name"], ["url"])
        destination_ids = {name: id_ for id_, name in conn.execute(select(DESTINATIONS.c.id, DESTINATIONS.c.name))}
        rows = [
            {
                "name": e.name,
                "destination_id": destination_ids[e.destination],
                "format": e.format,
                "compression": e.compression,
                "manifest": e.manifest,
                "grace_seconds": int(e.grace.total_seconds()),
                "flow_id": e.flow_id,
                "schedule": _schedule_json(e.schedule),
                "folder_template": e.layout.template,
            }
            for e in settings.exports
        ]
        _upsert(conn, EXPORTS, rows, ["name"], [k for k in rows[0] if k != "name"] if rows else [])
        export_ids = self._export_ids(conn)
        restorable = {(r.name, r.dataset_id): r.restore.restorable_until for r in report.exports}
        dataset_rows = [
            {"export_id": export_ids[e.name], "dataset_id": d, "restorable_until": restorable.get((e.name, d))}
            for e in settings.exports
            for d in e.datasets
        ]
        _upsert(conn, DATASETS, dataset_rows, ["export_id", "dataset_id"], ["restorable_until"])
        return destination_ids

    def _export_ids(self, conn: Connection) -> dict[str, int]:
        return {name: id_ for id_, name in conn.execute(select(EXPORTS.c.id, EXPORTS.c.name))}

    def _record_files(self, conn: Connection, destination_id: int, records: Sequence[FileRecord], now: datetime, *, present: set[str] | None) -> None:
        """Upsert the checked files; with a successful listing, mark files it no longer holds as gone."""
        rows = [
            {
                "destination_id": destination_id,
                "key": r.key,
                "folder_key": r.folder_key,
                "role": r.role,
                "size": r.size,
                "etag": r.etag,
                "modified": r.modified,
                "level": r.level,
                "validated_at": r.validated_at,
                "deep_at": r.deep_at,
                "records": r.records,
                "findings": [f.as_dict() for f in r.findings],
                "content": r.content,
                "schema": r.schema,
                "first_seen": now,
                "last_seen": now,
                "gone_at": None,
            }
            for r in records
        ]
        update_columns = [k for k in (rows[0] if rows else {}) if k not in ("destination_id", "key", "first_seen")]
        _upsert(conn, FILES, rows, ["destination_id", "key"], update_columns)
        if present is not None:
            current = conn.execute(select(FILES.c.id, FILES.c.key).where(FILES.c.destination_id == destination_id, FILES.c.gone_at.is_(None)))
            gone = [id_ for id_, key in current if key not in present]
            for chunk in _chunks(gone):
                conn.execute(update(FILES).where(FILES.c.id.in_(chunk)).values(gone_at=now))

    def _record_windows(self, conn: Connection, report: AuditReport, destination_ids: Mapping[str, int], audit_id: int) -> None:
        export_ids = self._export_ids(conn)
        folder_rows = {}
        for export in report.exports:
            for result in export.windows:
                folder = result.folder
                if folder is not None and folder.landed:
                    folder_rows[(destination_ids[export.destination], folder.key)] = {
                        "destination_id": destination_ids[export.destination],
                        "key": folder.key,
                        "dataset_id": export.dataset_id,
                        "export_time": folder.export_time,
                        "first_seen": report.as_of,
                        "last_seen": report.as_of,
                    }
        _upsert(conn, FOLDERS, list(folder_rows.values()), ["destination_id", "key"], ["last_seen"])
        for export in report.exports:
            export_id = export_ids[export.name]
            existing = {
                (row.dataset_id, _utc(row.scheduled)): row
                for row in conn.execute(select(WINDOWS).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == export.dataset_id))
            }
            rows, changed = [], []
            for result in export.windows:
                key = (export.dataset_id, result.window.scheduled)
                old = existing.get(key)
                status = result.status.value
                landed = result.folder is not None and result.folder.landed
                evidence = {
                    "folder_key": result.folder.key if result.folder is not None and landed else None,
                    "files": result.files,
                    "bytes": result.bytes,
                    "records": result.records,
                }
                if result.status is Status.UNKNOWN and old is not None:  # could not look: keep what it knew
                    evidence = {"folder_key": old.folder_key, "files": old.files, "bytes": old.bytes, "records": old.records}
                row = {
                    "export_id": export_id,
                    "dataset_id": export.dataset_id,
                    "scheduled": result.window.scheduled,
                    "status": status,
                    **evidence,
                    "status_since": old.status_since if old is not None and old.status == status else report.as_of,
                    "last_audit_id": audit_id,
                }
                rows.append(row)
                if old is None or old.status != status:
                    changed.append((key, status))
            _upsert(conn, WINDOWS, rows, ["export_id", "dataset_id", "scheduled"], ["status", "folder_key", "files", "bytes", "records", "status_since", "last_audit_id"])
            ids = {
                (row.dataset_id, _utc(row.scheduled)): row.id
                for row in conn.execute(select(WINDOWS.c.id, WINDOWS.c.dataset_id, WINDOWS.c.scheduled).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == export.dataset_id))
            }
            if changed:
                conn.execute(HISTORY.insert(), [{"window_id": ids[k], "audit_id": audit_id, "status": s, "at": report.as_of} for k, s in changed])
            replaced = [ids[(export.dataset_id, r.window.scheduled)] for r in export.windows if r.status is not Status.UNKNOWN]
            for chunk in _chunks(replaced):
                conn.execute(delete(FINDINGS).where(FINDINGS.c.window_id.in_(chunk)))
            finding_rows = [
                {"window_id": ids[(export.dataset_id, r.window.scheduled)], "audit_id": audit_id, **f.as_dict()}
                for r in export.windows
                if r.status is not Status.UNKNOWN
                for f in r.findings
            ]
            if finding_rows:
                conn.execute(FINDINGS.insert(), finding_rows)

    def _connect(self) -> _Guarded:
        return _Guarded(self.engine)


class _Guarded:
    """A connection whose database errors surface as CatalogError."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self._conn = self._engine.connect()
        except SQLAlchemyError as e:
            raise CatalogError(f"cannot reach the catalog: {_reason(e)}") from e
        return self._conn

    def __exit__(self, kind: object, value: BaseException | None, _tb: object) -> None:
        assert self._conn is not None
        try:
            self._conn.close()
        except SQLAlchemyError:
            pass
        if isinstance(value, SQLAlchemyError):
            raise CatalogError(f"catalog operation failed: {_reason(value)}") from value


def _reason(error: SQLAlchemyError) -> str:
    return scrub(str(getattr(error, "orig", None) or error)).splitlines()[0][:300]


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    if columns:
        statement = insert.on_conflict_do_update(index_elements=keys, set_={c: insert.excluded[c] for c in columns})
    else:
        statement = insert.on_conflict_do_nothing(index_elements=keys)
    for chunk in _chunks(rows, 500):
        conn.execute(statement, chunk)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _file_record(row: Any) -> FileRecord:
    return FileRecord(
        key=row.key,
        folder_key=row.folder_key,
        role=row.role,
        size=row.size,
        etag=row.etag,
        modified=_utc(row.modified),
        level=row.level,
        validated_at=_utc(row.validated_at),
        deep_at=_utc(row.deep_at),
        records=row.records,
        findings=tuple(Finding.from_dict(f) for f in row.findings or []),
        content=row.content,
        schema=row.schema,
    )


def _schedule_json(schedule: Any) -> dict[str, Any]:
    return {
        "exportMode": schedule.export_mode.value,
        "timeUnit": schedule.time_unit,
        "interval": schedule.interval,
        "startTime": iso(schedule.start),
        "endTime": iso(schedule.end),
    }


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON: datetimes as ISO-8601 UTC."""
    return {k: iso(_utc(v)) if isinstance(v, datetime) else v for k, v in row.items()}
