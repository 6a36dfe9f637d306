"""Catalog: the only module that runs SQL; takes and returns domain values (auditor.ledger).

The catalog is a ledger. Every audit is stored with its scope and its report; an audit is *live*
for an export when its as-of time is not earlier than that export's latest live audit, and only
then changes the present (window states, restore points, alert state), only for the exports it
covered. Historical audits add to each window's history, which is kept in as-of order.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, cast, overload

from sqlalchemy import Connection, Engine, Select, String, Table, Text, and_, bindparam, delete, func, or_, select, text, type_coerce, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import SQLAlchemyError

from auditor.audit import CLOCK_TOLERANCE, LOCK_LOST, AuditOptions, FileRecord, clock_ahead, packed, sample_key
from auditor.catalog.engine import ensure_schema, make_engine
from auditor.catalog.tables import (
    ATTEMPTS,
    AUDITS,
    CHAIN_HEAD,
    DATASETS,
    DESTINATIONS,
    EPISODES,
    EXPORTS,
    FILES,
    FINDINGS,
    FOLDERS,
    HISTORY,
    LEASES,
    NOTICES,
    POINTS,
    RUNS,
    WINDOWS,
    UTCDateTime,
)
from auditor.chain import rpo_seconds
from auditor.config import DestinationSettings, ExportSettings, Settings
from auditor.errors import CatalogError, CatalogUnreachable
from auditor.evidence import GENESIS, ChainedRecord, ChainHead, canonical
from auditor.findings import Finding, Severity
from auditor.flows.models import Run
from auditor.ledger import AuditRecord, DatasetState, DestinationState, Episode, FileState, FindingState, HistoryEntry, Notice, WindowState
from auditor.listing import GOOD, UNSETTLED_FINDINGS, StoredWindow, SweepState, starts_with
from auditor.reconcile import Status
from auditor.report import AuditError, AuditReport, ExportResult, iso
from auditor.storage.base import redact, scrub
from auditor.validate import Level

log = logging.getLogger(__name__)
CHAIN_LOCK = 0x61756469746F72  # pg_advisory_xact_lock key for extending the audit hash chain
LOCK_LEASE = timedelta(minutes=2)  # [catalog] lock_lease's default


@dataclass(frozen=True)
class Recorded:
    """What recording an audit did: its id, and the exports for which it was live."""

    audit_id: int
    live: frozenset[str]
    live_datasets: frozenset[tuple[str, str]] = frozenset()
    problems: tuple[AuditError, ...] = ()  # why it is history: its clock runs ahead of the catalog's, its lock ran out


def open_catalog(url: str) -> Catalog:
    """Connect to the catalog, upgrading a SQLite schema by itself."""
    engine = make_engine(url)
    ensure_schema(engine)
    return Catalog(engine)


class Catalog:
    """Reads and writes the catalog; every database failure becomes a CatalogError."""

    def __init__(self, engine: Engine, *, lock_lease: timedelta = LOCK_LEASE) -> None:
        self.engine = engine
        self.lock_lease = lock_lease
        self._leases: dict[str, _Lease | _RowLease] = {}  # destination -> the lease this process holds on it
        self._stale_leases: dict[str, tuple[str, float, float]] = {}  # SQLite: leases of others this process has seen stale

    def close(self) -> None:
        """Give every pooled connection back (the composition root calls this once, on exit)."""
        self.engine.dispose()

    # -- what the audit needs ---------------------------------------------------

    def known_files(self, destination: str, prefixes: Sequence[str] | None = None) -> dict[str, FileRecord]:
        """What the catalog knows about the files present at `destination` (with `prefixes`: only those in the
        export folders whose keys start with one of them): narrow queries read as plain tuples (times and JSON
        converted here, not per value by SQLAlchemy; identical findings are decoded once)."""
        destination_id = select(DESTINATIONS.c.id).where(DESTINATIONS.c.name == destination).scalar_subquery()
        query = select(*_KNOWN_COLUMNS).where(FILES.c.destination_id == destination_id, FILES.c.gone_at.is_(None))
        known: dict[str, FileRecord] = {}
        with self._connect() as conn:
            # each row becomes its record as it comes (a server-side cursor on PostgreSQL): the rows of an estate's
            # million files are never all held beside their records (204,400 files: 243 MiB, streamed 122 MiB)
            if prefixes is None:
                known.update((row[0], _file_record(row)) for row in conn.execute(_streamed(conn, query)))
            else:  # by folder (ix_files_folder): a key prefix is not an index range under every collation
                under = starts_with(prefixes)
                folders = [key for (key,) in conn.execute(select(FOLDERS.c.key).where(FOLDERS.c.destination_id == destination_id)) if under(key)]
                for chunk in _chunks(folders):
                    known.update((row[0], _file_record(row)) for row in conn.execute(_streamed(conn, query.where(FILES.c.folder_key.in_(chunk)))))
        return known

    def gone_since(self, destination: str, since: datetime) -> set[str]:
        """The files an audit as of a time after `since` found gone from `destination` (and not back since)."""
        destination_id = select(DESTINATIONS.c.id).where(DESTINATIONS.c.name == destination).scalar_subquery()
        query = select(FILES.c.key).where(FILES.c.destination_id == destination_id, FILES.c.gone_at > since)
        with self._connect() as conn:
            return {key for (key,) in conn.execute(query)}

    def sweep_state(self, destination: DestinationSettings, exports: Sequence[ExportSettings], runs: Mapping[str, Sequence[Run]] | None = None) -> SweepState:
        """What planning `destination`'s listing needs: its last full sweep, each dataset's latest live
        as-of time, the exports configured otherwise than when their windows were last judged (`runs`: the
        run evidence this audit has), and the windows whose current status is good, each as the catalog last
        judged it (what an incremental audit carries): narrow queries read as plain tuples."""
        names = sorted({e.name for e in exports})
        good_windows = (EXPORTS.c.name.in_(names), WINDOWS.c.status.in_(sorted(GOOD)))
        with self._connect() as conn:
            url = conn.execute(select(DESTINATIONS.c.url).where(DESTINATIONS.c.name == destination.name)).scalar_one_or_none()
            # the last sweep of the datasets in scope: the oldest of theirs (none while one has none), not the destination's,
            # which an audit under a configuration naming only some of its exports (or of an export's datasets) recorded for all
            sweeps = {
                (name, dataset): at
                for name, dataset, at in conn.execute(
                    select(EXPORTS.c.name, DATASETS.c.dataset_id, DATASETS.c.last_full_sweep_at).join(EXPORTS, DATASETS.c.export_id == EXPORTS.c.id).where(EXPORTS.c.name.in_(names))
                ).all()
            }
            scope = [(e.name, dataset) for e in exports for dataset in e.datasets]
            last = None if not scope or any(sweeps.get(key) is None for key in scope) else min(_utc(sweeps[key]) for key in scope)
            live = _live_as_of(conn, names)
            recorded = {
                name: (where, dict(zip(_CONFIG_COLUMNS, values, strict=True)))
                for name, where, *values in conn.execute(
                    select(EXPORTS.c.name, DESTINATIONS.c.name, *(EXPORTS.c[c] for c in _CONFIG_COLUMNS))
                    .join(DESTINATIONS, EXPORTS.c.destination_id == DESTINATIONS.c.id)
                    .where(EXPORTS.c.name.in_(names))
                )
            }
            moved = url is not None and url != redact(destination.url)  # the same name for another place: nothing recorded holds there
            changed = frozenset(
                e.name for e in exports if e.name in recorded and (moved or recorded[e.name] != (e.destination, _export_config(e, runs_joined=_runs_joined(e, runs))))
            )
            # each folder once: exports of one dataset to one destination share its folders (a window of each)
            per_folder = (
                select(WINDOWS.c.folder_key, func.max(WINDOWS.c.files).label("files"))
                .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
                .where(EXPORTS.c.name.in_(names), WINDOWS.c.folder_key.is_not(None))
                .group_by(WINDOWS.c.folder_key)
                .subquery()
            )
            files, folders = conn.execute(select(func.coalesce(func.sum(per_folder.c.files), 0), func.count())).one()
            found: dict[int, list[Finding]] = {}
            for window_id, code, severity, path, message in conn.execute(
                select(FINDINGS.c.window_id, FINDINGS.c.code, FINDINGS.c.severity, FINDINGS.c.path, FINDINGS.c.message)
                .join(WINDOWS, FINDINGS.c.window_id == WINDOWS.c.id)
                .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
                .where(*good_windows)
                .order_by(FINDINGS.c.id)
            ):
                found.setdefault(window_id, []).append(Finding(code, Severity(severity), path, message))
            stored: dict[tuple[str, str, datetime], StoredWindow] = {}
            shared: dict[str, str] = {}
            for window_id, name, dataset, at, status, folder_key, files_, bytes_, records, schema, deep_files, oldest_deep_at in conn.execute(
                select(WINDOWS.c.id, EXPORTS.c.name, WINDOWS.c.dataset_id, type_coerce(WINDOWS.c.scheduled, String), *_CARRIED_COLUMNS)
                .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
                .where(*good_windows)
            ):
                findings = tuple(found.get(window_id, ()))
                if any(f.code in UNSETTLED_FINDINGS for f in findings):
                    continue  # its run evidence can still change: judged again at each audit
                # each row brings its own copies of texts that a destination's windows share (its exports' names, a
                # dataset's id, its schema): one copy of each is kept
                key = (shared.setdefault(name, name), shared.setdefault(dataset, dataset), cast(datetime, _time(at)))
                schema = None if schema is None else shared.setdefault(schema, schema)
                stored[key] = StoredWindow(shared.setdefault(status, status), folder_key, files_, bytes_, records, schema, deep_files or 0, _time(oldest_deep_at), findings)
        # files: data files plus a manifest per landed folder, near enough for the cost of a full listing
        return SweepState(_utc(last), live, stored, files=int(files) + int(folders), folders=int(folders), changed=changed)

    def destinations(self) -> list[DestinationState]:
        """Every destination the catalog knows, with its last live full sweep."""
        columns = (DESTINATIONS.c.name, DESTINATIONS.c.url, DESTINATIONS.c.last_full_sweep_at, DESTINATIONS.c.last_full_sweep_audit_id)
        with self._connect() as conn:
            rows = conn.execute(select(*columns).order_by(DESTINATIONS.c.name)).all()
        return [DestinationState(name, url, _utc(at), audit_id) for name, url, at, audit_id in rows]

    def audit_count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AUDITS)).scalar_one())

    def sampled_audits(self, key: str) -> int:
        """How many audits took part in the --sample rotation `key` (auditor.audit.sample_key)."""
        with self._connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AUDITS).where(AUDITS.c.sample_key == key)).scalar_one())

    def latest_audit_id(self) -> int | None:
        """The newest audit's id: one primary-key index lookup (a health check: the catalog answers, its schema is there)."""
        with self._connect() as conn:
            found = conn.execute(select(func.max(AUDITS.c.id))).scalar_one()
        return None if found is None else int(found)

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

    def datasets_live_as_of(self) -> dict[tuple[str, str], datetime | None]:
        """Each (export, dataset)'s latest live as-of time."""
        with self._connect() as conn:
            return _live_as_of(conn, None)

    def live_as_of(self) -> dict[str, datetime | None]:
        """Each export's latest live as-of time (when the present state was last brought up to date)."""
        with self._connect() as conn:
            return {name: _utc(at) for name, at in conn.execute(select(EXPORTS.c.name, EXPORTS.c.live_as_of))}

    # -- reads for people and the service ----------------------------------------

    def table_counts(self) -> dict[str, int]:
        tables = (AUDITS, DESTINATIONS, EXPORTS, DATASETS, FOLDERS, FILES, WINDOWS, HISTORY, FINDINGS, RUNS, EPISODES, NOTICES)
        with self._connect() as conn:
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}

    def datasets(self, export: str | None = None, dataset: str | None = None, *, counts: bool = True) -> list[DatasetState]:
        """Every export and dataset (or one) with its restore point and window counts by status (`counts`
        off: without them, as a restore lookup needs it: no window is read)."""
        found: dict[tuple[str, str], dict[str, int]] = {}
        count_query, query = _dataset_queries(export is not None, dataset is not None)
        parameters = {"export": export, "dataset": dataset}
        with self._connect() as conn:
            if counts:
                for name, dataset_id, status, count in conn.execute(count_query, parameters):
                    found.setdefault((name, dataset_id), {})[status] = int(count)
            rows = conn.execute(query, parameters).all()
        return [
            DatasetState(
                r.name, r.destination, r.dataset_id, (r.schedule or {}).get("exportMode", "FIRST_FULL_THEN_INCREMENTAL") != "DAILY_FULL_EXPORT",
                _utc(r.restorable_until), _utc(r.broken_at), _utc(r.as_of), r.live_audit_id, bool(r.active) if r.active is not None else True,
                found.get((r.name, r.dataset_id), {}),
            )
            for r in rows
        ]

    def windows(self, export: str, dataset: str | None = None, start: datetime | None = None, end: datetime | None = None, *, known: bool = False) -> list[WindowState]:
        """Windows of an export in schedule order; `known`: an unknown window shows its last known status."""
        query = (
            select(WINDOWS, EXPORTS.c.name)
            .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export)
            .order_by(WINDOWS.c.dataset_id, WINDOWS.c.scheduled)
        )
        if dataset is not None:
            query = query.where(WINDOWS.c.dataset_id == dataset)
        if start is not None:
            query = query.where(WINDOWS.c.scheduled >= start)
        if end is not None:
            query = query.where(WINDOWS.c.scheduled <= end)
        with self._connect() as conn:
            return [
                WindowState(
                    r.name, r.dataset_id, _utc(r.scheduled), (r.known_status or r.status) if known else r.status, r.folder_key, r.files, r.bytes, r.records,
                    _utc(r.status_since), r.last_audit_id,
                )
                for r in conn.execute(query)
            ]

    def restore_windows(self, export: str, dataset: str, end: datetime) -> list[tuple[WindowState, str | None]]:
        """One dataset's windows up to `end` in schedule order, each with the last status other than unknown
        an audit established for it (one indexed range read: export, dataset, scheduled)."""
        with self._connect() as conn:
            return [
                (WindowState(r.name, r.dataset_id, _utc(r.scheduled), r.status, r.folder_key, r.files, r.bytes, r.records, _utc(r.status_since), r.last_audit_id), r.known_status)
                for r in conn.execute(_RESTORE_WINDOWS, {"export": export, "dataset": dataset, "end": end}).all()  # (all at once: fetchall, not a fetch per row)
            ]

    def window_history(self, export: str, dataset: str, scheduled: datetime) -> list[HistoryEntry]:
        """Every recorded status of one window in as-of order (live and historical audits)."""
        query = (
            select(HISTORY.c.at, HISTORY.c.status, HISTORY.c.audit_id, HISTORY.c.live)
            .join(WINDOWS, HISTORY.c.window_id == WINDOWS.c.id)
            .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export, WINDOWS.c.dataset_id == dataset, WINDOWS.c.scheduled == scheduled)
            .order_by(HISTORY.c.at, HISTORY.c.id)
        )
        with self._connect() as conn:
            return [HistoryEntry(_utc(at), status, audit_id, bool(live)) for at, status, audit_id, live in conn.execute(query)]

    def status_at(self, export: str, dataset: str, scheduled: datetime, when: datetime) -> HistoryEntry | None:
        """What the catalog knew about one window as of `when`."""
        known = [h for h in self.window_history(export, dataset, scheduled) if h.at <= when]
        return known[-1] if known else None

    def rpo_trend(self, export: str, dataset: str, limit: int = 60) -> list[tuple[datetime, int | None]]:
        """(as-of, RPO seconds) of the newest live audits of one dataset, oldest first."""
        query = (
            select(POINTS.c.as_of, POINTS.c.restorable_until)
            .join(EXPORTS, POINTS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export, POINTS.c.dataset_id == dataset)
            .order_by(POINTS.c.as_of.desc(), POINTS.c.id.desc())
            .limit(limit)
        )
        with self._connect() as conn:
            rows = [(_utc(at), _utc(until)) for at, until in conn.execute(query)]
        return [(at, rpo_seconds(at, until)) for at, until in reversed(rows)]

    def window_findings(self, export: str, dataset: str, scheduled: datetime) -> list[FindingState]:
        query = (
            select(FINDINGS.c.code, FINDINGS.c.severity, FINDINGS.c.path, FINDINGS.c.message)
            .join(WINDOWS, FINDINGS.c.window_id == WINDOWS.c.id)
            .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
            .where(EXPORTS.c.name == export, WINDOWS.c.dataset_id == dataset, WINDOWS.c.scheduled == scheduled)
            .order_by(FINDINGS.c.id)
        )
        with self._connect() as conn:
            return [FindingState(*row) for row in conn.execute(query)]

    def folder_files(self, destination: str, folder_keys: Sequence[str], *, manifests: bool = False) -> dict[str, list[FileState]]:
        """The data files present in each of these export folders (by key), with their manifests if asked, in one query.

        No ORDER BY in SQL: sorting by key there tempts SQLite, without table statistics, to walk the
        destination's whole (destination_id, key) index instead of seeking ix_files_folder per folder.
        """
        found: dict[str, list[FileState]] = {k: [] for k in folder_keys}
        with self._connect() as conn:
            query = _FOLDER_FILES_AND_MANIFESTS if manifests else _FOLDER_FILES
            for folder, key, size, etag, records, level, findings, role, root in conn.execute(query, {"destination": destination, "folders": list(folder_keys)}).all():
                # findings as their stored text, parsed only when there are any (most files have none)
                doubtful = level < Level.SIZED or (findings not in (None, "[]") and _has_error(findings))
                found[folder].append(FileState(key, f"{root.rstrip('/')}/{key}", size, etag, records, doubtful, role))
        for files in found.values():
            files.sort(key=lambda f: f.key)
        return found

    def manifest_documents(self, destination: str, keys: Sequence[str]) -> dict[str, tuple[datetime | None, Any]]:
        """(modification time, parsed content or None) of each of these manifests (by key) that is present."""
        query = (
            select(FILES.c.key, FILES.c.modified, sql_cast(FILES.c.content, Text))
            .join(DESTINATIONS, FILES.c.destination_id == DESTINATIONS.c.id)
            .where(DESTINATIONS.c.name == destination, FILES.c.key.in_(list(keys)), FILES.c.role == "manifest", FILES.c.gone_at.is_(None))
        )
        found: dict[str, tuple[datetime | None, Any]] = {}
        with self._connect() as conn:
            for key, modified, content in conn.execute(query).all():
                try:
                    document = json.loads(content) if content is not None else None
                except ValueError:
                    document = None
                found[key] = (_utc(modified), document)
        return found

    def audits(self, limit: int = 50) -> list[AuditRecord]:
        """The newest audits first."""
        with self._connect() as conn:
            return [_audit_record(row) for row in conn.execute(select(*_AUDIT_COLUMNS).order_by(AUDITS.c.id.desc()).limit(limit))]

    def answering_audit(self, export: str, dataset: str) -> AuditRecord | None:
        """The live audit the present state of `export`'s `dataset` comes from (None: not audited yet), in one read."""
        with self._connect() as conn:
            row = conn.execute(_ANSWERING_AUDIT, {"export": export, "dataset": dataset}).one_or_none()
        return None if row is None else _audit_record(row)

    def audit(self, audit_id: int) -> AuditRecord | None:
        with self._connect() as conn:
            row = conn.execute(_AUDIT_BY_ID, {"id": audit_id}).one_or_none()
        return None if row is None else _audit_record(row)

    def audit_report(self, audit_id: int) -> dict[str, Any] | None:
        """The JSON report an audit produced, exactly as recorded (historical audits included)."""
        with self._connect() as conn:
            blob = conn.execute(select(AUDITS.c.report).where(AUDITS.c.id == audit_id)).scalar_one_or_none()
        if blob is None:
            return None
        try:
            return cast(dict[str, Any], json.loads(gzip.decompress(blob)))
        except (OSError, EOFError, zlib.error, ValueError) as e:
            raise CatalogError(f"the stored report of audit {audit_id} cannot be read ({type(e).__name__}): `auditor evidence chain` says more") from e

    def deep_coverage(self) -> tuple[int, int]:
        """(data files present, of which deep-verified)."""
        present = (FILES.c.role == "data") & FILES.c.gone_at.is_(None)
        with self._connect() as conn:
            files = int(conn.execute(select(func.count()).select_from(FILES).where(present)).scalar_one())
            verified = int(conn.execute(select(func.count()).select_from(FILES).where(present & FILES.c.deep_at.is_not(None))).scalar_one())
        return files, verified

    # -- recording an audit -------------------------------------------------------

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
        scope: Iterable[str] | None = None,
        swept: Iterable[str] = (),
        known: Mapping[str, Mapping[str, FileRecord]] | None = None,
    ) -> Recorded:
        """Store one audit with its scope and report; change the present only where it is live.

        `swept`: the destinations this audit listed in full; where it is live, that is their last full sweep.
        `known`: per destination, what `known_files` returned to this audit, read while the audit held that
        destination's lock (so still current): the file rows are then not read a second time.
        """
        covered = sorted(set(scope) if scope is not None else {e.name for e in report.exports})
        lock_problem: AuditError | None = None
        with self._connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":  # one writer extends the hash chain at a time (SQLite: the write lock does it)
                # a writer frozen in here would hold the chain lock, and every other writer, for as long as its session
                # lived: PostgreSQL ends it (and this transaction) once it has been idle in it for a lease
                # (Python's pauses between statements grow with the files recorded: about 1 µs each measured, 10 allowed)
                idle = max(self.lock_lease, timedelta(microseconds=10 * sum(len(records) for records in files.values())))
                conn.execute(text("SELECT set_config('idle_in_transaction_session_timeout', :t, true)"), {"t": _milliseconds(idle)})
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})
            lost = self._lost_locks(conn, {*files, *(e.destination for e in report.exports)})
            if lost:  # another process may have audited them since, trusting file rows it read under the lock: touch none
                lock_problem = AuditError(", ".join(sorted(lost)), f"{LOCK_LOST}: this process did not renew its lock for longer than "
                                          f"lock_lease ({self.lock_lease}), so another process may have audited it since; this audit is "
                                          "history, and its file rows are not written", code=LOCK_LOST)
                log.warning("lost the audit lock on %s: %s", lock_problem.destination, lock_problem.message)
                files = {name: records for name, records in files.items() if name not in lost}
                report = replace(report, errors=(*report.errors, lock_problem))
            # an audit of now (options.present) is held to the catalog's clock (PostgreSQL's own; on SQLite this host's):
            # one as of later than that is made by a clock that runs ahead, and is history (its stored report says so);
            # a present recorded later than that was made by one that ran ahead, and gives way to it (left standing,
            # every audit until then would be history). Audits of a chosen time (--as-of, simulations) are as before.
            clock = _catalog_clock(conn) if options.present else None
            ahead = clock + CLOCK_TOLERANCE if clock is not None else None
            problem = clock_ahead(report.as_of, report.as_of - clock) if clock is not None and report.as_of > clock + CLOCK_TOLERANCE else None
            if problem is not None:
                report = replace(report, errors=(*report.errors, problem))
            problems = tuple(p for p in (lock_problem, problem) if p is not None)
            body = canonical(report.to_json())
            destination_ids = self._sync_config(conn, settings)
            # live is decided per export and dataset (a dataset added later is live at its first audit);
            # the rows are locked (PostgreSQL) so two writers cannot both think they are live
            latest = _live_as_of(conn, covered, lock=True)
            live_datasets = frozenset(
                (e.name, e.dataset_id)
                for e in report.exports
                if not problems and e.name in covered and _live(latest.get((e.name, e.dataset_id)), report.as_of, ahead)
            )
            live = frozenset(name for name, _ in live_datasets)
            ahead_of_it = sorted(k for k in live_datasets if (latest.get(k) or report.as_of) > report.as_of)  # live by replacing a present from ahead
            audit_id = int(
                conn.execute(
                    AUDITS.insert().values(
                        started_at=started,
                        finished_at=datetime.now(UTC),
                        as_of=report.as_of,
                        status=report.status,
                        deep=options.deep,
                        bytes_read=report.assurance.bytes_read,
                        scope=covered,
                        live_exports=sorted(live),
                        report=gzip.compress(body, mtime=0),
                        report_sha256=hashlib.sha256(body).hexdigest(),
                        sample_key=_sample_key(report),
                        summary={
                            "counts": {s.value: n for s, n in report.counts().items()},
                            "unexpected": len(report.unexpected),
                            "errors": [{"destination": e.destination, "message": e.message} for e in report.errors],
                        },
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            self._chain(conn, audit_id)
            current = {e.destination for e in report.exports if e.name in live}  # the destinations this audit brings up to date
            for name, records in files.items():
                # a back-dated audit learns what the bytes are, but says nothing about when files were last seen or went
                here = name in current
                self._record_files(
                    conn, destination_ids[name], records, report.as_of, present=listed.get(name) if here else None, historical=not here, known=(known or {}).get(name)
                )
            if ahead_of_it:
                for export, dataset in ahead_of_it:
                    log.warning("the present of export %s, dataset %s was recorded as of %s, ahead of this audit's clock (as of %s): "
                                "a clock ran ahead; this audit replaces it", export, dataset, latest[(export, dataset)], report.as_of)
                self._forget_ahead(conn, ahead_of_it, report.as_of)
            self._record_windows(conn, report, destination_ids, audit_id, live_datasets, _deep_summaries(files))
            self._record_runs(conn, runs or {}, report.as_of)
            whole = {d.name for d in settings.destinations if all(e.name in covered for e in settings.exports if e.destination == d.name)}
            listed_in_full = set(swept) & set(listed) & current
            full = sorted(listed_in_full & whole)  # a sweep for some exports re-checked only theirs
            def later(sweep: Any) -> Any:  # a sweep time moves forward only (or back from ahead: a clock that ran ahead)
                return or_(sweep.is_(None), sweep <= report.as_of, *((sweep > ahead,) if ahead is not None else ()))

            if full:
                conn.execute(
                    update(DESTINATIONS).where(DESTINATIONS.c.name.in_(full), later(DESTINATIONS.c.last_full_sweep_at)).values(last_full_sweep_at=report.as_of, last_full_sweep_audit_id=audit_id)
                )
            judged_in_full = sorted({(e.name, e.dataset_id) for e in report.exports if (e.name, e.dataset_id) in live_datasets and e.destination in listed_in_full})
            if judged_in_full:  # each dataset whose windows this live full listing judged (whatever the configuration names besides)
                export_ids = self._export_ids(conn)
                for name, dataset in judged_in_full:
                    where = (DATASETS.c.export_id == export_ids[name], DATASETS.c.dataset_id == dataset, later(DATASETS.c.last_full_sweep_at))
                    conn.execute(update(DATASETS).where(*where).values(last_full_sweep_at=report.as_of))
            if live:
                self._record_config(conn, settings, live, destination_ids, runs)
                conn.execute(update(EXPORTS).where(EXPORTS.c.name.in_(sorted(live))).values(live_as_of=report.as_of, live_audit_id=audit_id))
            return Recorded(audit_id, live, live_datasets, problems)

    def _chain(self, conn: Connection, audit_id: int) -> None:
        """Link a new audit record to the chain's head (auditor.evidence): the newest record written, deleted or not (a
        catalog from before the head: the newest record there is), and make it the head."""
        row = conn.execute(select(AUDITS).where(AUDITS.c.id == audit_id)).one()
        head = conn.execute(select(CHAIN_HEAD.c.record_sha256).where(CHAIN_HEAD.c.id == 1)).scalar_one_or_none()
        if head is None:
            previous = conn.execute(select(AUDITS.c.record_sha256).where(AUDITS.c.id < audit_id).order_by(AUDITS.c.id.desc()).limit(1)).one_or_none()
            head = GENESIS if previous is None else (previous[0] or GENESIS)
        digest = replace(_chained(row), prev_sha256=head).digest()
        conn.execute(update(AUDITS).where(AUDITS.c.id == audit_id).values(prev_sha256=head, record_sha256=digest))
        _upsert(conn, CHAIN_HEAD, [{"id": 1, "audit_id": audit_id, "record_sha256": digest}], ["id"], ["audit_id", "record_sha256"])

    def chain_head(self) -> ChainHead | None:
        """The chain's head: the newest audit record as it was written (None: no audit recorded since the head was kept)."""
        with self._connect() as conn:
            row = conn.execute(select(CHAIN_HEAD.c.audit_id, CHAIN_HEAD.c.record_sha256).where(CHAIN_HEAD.c.id == 1)).one_or_none()
        return None if row is None else ChainHead(row.audit_id, row.record_sha256)

    def chain_records(self, *, with_reports: bool = True) -> list[ChainedRecord]:
        """Every audit record as the hash chain sees it (with its stored report bytes to check)."""
        with self._connect() as conn:
            return [_chained(row, with_report=with_reports) for row in conn.execute(select(AUDITS).order_by(AUDITS.c.id))]

    def find_report(self, digest: str) -> AuditRecord | None:
        """The audit whose report has this SHA-256, if the catalog recorded one."""
        with self._connect() as conn:
            row = conn.execute(select(*_AUDIT_COLUMNS).where(AUDITS.c.report_sha256 == digest).order_by(AUDITS.c.id).limit(1)).one_or_none()
        return None if row is None else _audit_record(row)

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

    def _sync_config(self, conn: Connection, settings: Settings) -> dict[str, int]:
        """Destinations, exports and datasets as configured, added where new; never touches what audits found.

        An export's (or a destination's) recorded configuration is what its windows were last judged under:
        it changes only through a live audit of that export (_record_config), never through an audit of others.
        """
        _upsert(conn, DESTINATIONS, [{"name": d.name, "url": redact(d.url)} for d in settings.destinations], ["name"], [])
        destination_ids = {name: id_ for id_, name in conn.execute(select(DESTINATIONS.c.id, DESTINATIONS.c.name))}
        rows = [{"name": e.name, "destination_id": destination_ids[e.destination], **_export_config(e, runs_joined=False)} for e in settings.exports]
        _upsert(conn, EXPORTS, rows, ["name"], [])
        export_ids = self._export_ids(conn)
        dataset_rows = [{"export_id": export_ids[e.name], "dataset_id": d} for e in settings.exports for d in e.datasets]
        _upsert(conn, DATASETS, dataset_rows, ["export_id", "dataset_id"], [])
        return destination_ids

    def _record_config(self, conn: Connection, settings: Settings, live: frozenset[str], destination_ids: Mapping[str, int], runs: Mapping[str, Sequence[Run]] | None) -> None:
        """The configuration the exports this audit was live for were judged under (and their destinations' URLs)."""
        exports = [e for e in settings.exports if e.name in live]
        rows = [
            {"name": e.name, "destination_id": destination_ids[e.destination], **_export_config(e, runs_joined=_runs_joined(e, runs))} for e in exports
        ]
        _upsert(conn, EXPORTS, rows, ["name"], [k for k in rows[0] if k != "name"] if rows else [])
        mine = {e.destination for e in exports}
        _upsert(conn, DESTINATIONS, [{"name": d.name, "url": redact(d.url)} for d in settings.destinations if d.name in mine], ["name"], ["url"])

    def _export_ids(self, conn: Connection) -> dict[str, int]:
        return {name: id_ for id_, name in conn.execute(select(EXPORTS.c.id, EXPORTS.c.name))}

    def _record_files(
        self,
        conn: Connection,
        destination_id: int,
        records: Sequence[FileRecord],
        now: datetime,
        *,
        present: set[str] | None,
        historical: bool = False,
        known: Mapping[str, FileRecord] | None = None,
    ) -> None:
        """Write the checked files that are new or changed, in batches of INSERT … ON CONFLICT; with a successful
        listing, mark the files it no longer holds as gone.

        A row that would stay as it is is not rewritten (its `last_seen` is then the as-of time of the audit
        that last wrote it: first seen, changed, checked again, or back after it had gone). What a file's row
        says changes only through a check, which stamps `validated_at`, so comparing the columns a check or a
        move sets (one narrow query, plain tuples) tells a changed row from an unchanged one.
        """
        if known is not None:  # the present rows as this audit read them: unchanged is the same record, or the same state
            present_rows = known

            def unchanged(r: FileRecord) -> bool:
                old = present_rows.get(r.key)
                return old is not None and (old is r or _record_state(old) == _record_state(r))

            here_now: Iterable[str] = known.keys()
        else:
            stored: dict[str, tuple[bool, tuple[Any, ...]]] = {}  # key -> (present, what a check or a move sets)
            state = select(FILES.c.gone_at.is_(None), *_STATE_COLUMNS).where(FILES.c.destination_id == destination_id)
            for here, key, *values in conn.execute(_streamed(conn, state)):
                stored[key] = (bool(here), _stored_state(values))

            def unchanged(r: FileRecord) -> bool:
                old = stored.get(r.key)
                return old is not None and (old[0] or historical) and old[1] == _record_state(r)  # a historical audit never brings a gone file back

            here_now = [key for key, (here, _state) in stored.items() if here]
        def row(r: FileRecord) -> dict[str, Any]:
            return {
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
                "content": _content(r.content),
                "schema": r.schema,
                "first_seen": now,
                "last_seen": now,
                "gone_at": None,
            }

        # a batch of rows at a time: a first audit's rows, all built at once, were the largest thing it held
        changed = (r for r in records if not unchanged(r))
        skipped = ("destination_id", "key", "first_seen", *(("last_seen", "gone_at") if historical else ()))
        while batch := [row(r) for r in itertools.islice(changed, _FILE_BATCH)]:
            _upsert(conn, FILES, batch, ["destination_id", "key"], [k for k in batch[0] if k not in skipped])
        if present is not None:
            gone = [key for key in here_now if key not in present]
            for chunk in _chunks(gone):
                conn.execute(update(FILES).where(FILES.c.destination_id == destination_id, FILES.c.key.in_(chunk)).values(gone_at=now))

    def _forget_ahead(self, conn: Connection, datasets: Sequence[tuple[str, str]], as_of: datetime) -> None:
        """Take out of the present of `datasets` what audits as of after `as_of` put there, which were made while a
        clock ran ahead (they stay in the ledger): the statuses they recorded, their restore points, the windows they
        judged before their time (with their findings) and the windows only they had judged; a window judged before
        them gets back the status it had then, since when it had it. The audit of `as_of` then records the present."""
        export_ids = self._export_ids(conn)
        for export, dataset in datasets:
            export_id = export_ids[export]
            mine = select(WINDOWS.c.id).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == dataset)
            conn.execute(delete(HISTORY).where(HISTORY.c.window_id.in_(mine), HISTORY.c.at > as_of))
            conn.execute(delete(POINTS).where(POINTS.c.export_id == export_id, POINTS.c.dataset_id == dataset, POINTS.c.as_of > as_of))
            judged = conn.execute(
                select(WINDOWS.c.id, WINDOWS.c.scheduled).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == dataset, or_(WINDOWS.c.scheduled > as_of, WINDOWS.c.status_since > as_of))
            ).all()
            last: dict[int, tuple[str, datetime]] = {}  # window -> (status, since when) by its live history up to as_of
            known: dict[int, str] = {}  # window -> its last status other than unknown, by the same history
            for window_id, status, at in conn.execute(
                select(HISTORY.c.window_id, HISTORY.c.status, HISTORY.c.at).where(HISTORY.c.window_id.in_([w for w, _ in judged]), HISTORY.c.live).order_by(HISTORY.c.at, HISTORY.c.id)
            ):
                if window_id not in last or last[window_id][0] != status:
                    last[window_id] = (status, _utc(at))
                if status != Status.UNKNOWN.value:
                    known[window_id] = status
            gone = [w for w, scheduled in judged if _utc(scheduled) > as_of or w not in last]
            for chunk in _chunks(gone):
                conn.execute(delete(FINDINGS).where(FINDINGS.c.window_id.in_(chunk)))
                conn.execute(delete(HISTORY).where(HISTORY.c.window_id.in_(chunk)))
                conn.execute(delete(WINDOWS).where(WINDOWS.c.id.in_(chunk)))
            for window_id, _scheduled in judged:
                if window_id not in gone:
                    status, since = last[window_id]
                    conn.execute(update(WINDOWS).where(WINDOWS.c.id == window_id).values(status=status, known_status=known.get(window_id), status_since=since))

    def _record_windows(
        self,
        conn: Connection,
        report: AuditReport,
        destination_ids: Mapping[str, int],
        audit_id: int,
        live: frozenset[tuple[str, str]],
        deep: Mapping[tuple[str, str], tuple[int, datetime | None]],
    ) -> None:
        export_ids = self._export_ids(conn)
        folder_rows = {}
        for export in report.exports:
            for result in export.windows:
                folder = result.folder
                if folder is not None and folder.landed and not result.carried:  # a carried window's folder row is there
                    folder_rows[(destination_ids[export.destination], folder.key)] = {
                        "destination_id": destination_ids[export.destination],
                        "key": folder.key,
                        "dataset_id": export.dataset_id,
                        "export_time": folder.export_time,
                        "first_seen": report.as_of,
                        "last_seen": report.as_of,
                    }
        # a folder row says where and what: written once, when first seen (not rewritten by every audit)
        if folder_rows:
            ids = sorted({d for d, _key in folder_rows})
            for d, key in conn.execute(select(FOLDERS.c.destination_id, FOLDERS.c.key).where(FOLDERS.c.destination_id.in_(ids))).all():
                folder_rows.pop((d, key), None)
        _upsert(conn, FOLDERS, list(folder_rows.values()), ["destination_id", "key"], [])
        for export in report.exports:
            export_id = export_ids[export.name]
            existing = {
                _utc(row.scheduled): row
                for row in conn.execute(select(WINDOWS).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == export.dataset_id))
            }
            if (export.name, export.dataset_id) in live:
                self._record_live(conn, export, export_id, existing, audit_id, report.as_of, deep)
            else:
                self._record_historical(conn, export, export_id, existing, audit_id, report.as_of)

    def _record_live(
        self,
        conn: Connection,
        export: ExportResult,
        export_id: int,
        existing: Mapping[datetime, Any],
        audit_id: int,
        as_of: datetime,
        deep: Mapping[tuple[str, str], tuple[int, datetime | None]],
    ) -> None:
        """Bring the present up to date: window states, current findings, the dataset's restore point."""
        rows, changed, judged = [], [], []  # judged: windows whose row changes only in the audit that last judged them
        for result in export.windows:
            if result.carried:
                continue  # taken from its row as it stands, not judged again (auditor.listing): nothing to write
            old = existing.get(result.window.scheduled)
            status = result.status.value
            folder_key = result.folder.key if result.folder is not None and result.folder.landed else None
            checked, oldest = deep.get((export.destination, folder_key), (0, None)) if folder_key is not None else (0, None)
            evidence: dict[str, Any] = {
                "folder_key": folder_key,
                "files": result.files,
                "bytes": result.bytes,
                "records": result.records,
                "schema": result.schema,
                "deep_files": checked,
                "oldest_deep_at": oldest,
            }
            if result.status is Status.UNKNOWN and old is not None:  # could not look: keep what it knew
                evidence = {k: getattr(old, k) for k in evidence}
            known = (old.known_status if old is not None else None) if result.status is Status.UNKNOWN else status
            if old is not None and old.status == status and old.known_status == known and all(_same(getattr(old, k), v) for k, v in evidence.items()):
                judged.append(old.id)
                continue
            rows.append(
                {
                    "export_id": export_id,
                    "dataset_id": export.dataset_id,
                    "scheduled": result.window.scheduled,
                    "status": status,
                    "known_status": known,
                    **evidence,
                    "status_since": old.status_since if old is not None and old.status == status else as_of,
                    "last_audit_id": audit_id,
                }
            )
            if old is None or old.status != status:
                changed.append((result.window.scheduled, status))
        columns = ["status", "known_status", "folder_key", "files", "bytes", "records", "schema", "deep_files", "oldest_deep_at", "status_since", "last_audit_id"]
        _upsert(conn, WINDOWS, rows, ["export_id", "dataset_id", "scheduled"], columns)
        for chunk in _chunks(judged):
            conn.execute(update(WINDOWS).where(WINDOWS.c.id.in_(chunk)).values(last_audit_id=audit_id))
        if any(r.window.scheduled not in existing for r in export.windows):
            ids = self._window_ids(conn, export_id, export.dataset_id)
        else:  # no new window: the ids are known
            ids = {scheduled: row.id for scheduled, row in existing.items()}
        if changed:
            _upsert(conn, HISTORY, [{"window_id": ids[k], "audit_id": audit_id, "status": s, "at": as_of, "live": True} for k, s in changed], None, ())
        # a window's current findings are replaced only where they changed (a finding row keeps the audit that first found
        # it, while later audits find it again); a window an audit could not look at keeps them as they were
        stored: dict[int, list[tuple[Any, ...]]] = {}
        for window_id, *finding in conn.execute(_WINDOW_FINDINGS, {"export_id": export_id, "dataset": export.dataset_id}):
            stored.setdefault(window_id, []).append(tuple(finding))
        replaced, finding_rows = [], []
        for r in export.windows:
            if r.status is Status.UNKNOWN or r.carried:
                continue
            window_id = ids[r.window.scheduled]
            found = [f.as_dict() for f in r.findings]
            if stored.get(window_id, []) == [(f["code"], f["severity"], f["path"], f["message"]) for f in found]:
                continue
            if window_id in stored:
                replaced.append(window_id)
            finding_rows += [{"window_id": window_id, "audit_id": audit_id, **f} for f in found]
        for chunk in _chunks(replaced):
            conn.execute(delete(FINDINGS).where(FINDINGS.c.window_id.in_(chunk)))
        _upsert(conn, FINDINGS, finding_rows, None, ())
        restore: dict[str, Any] = {"as_of": as_of, "active": export.active}
        if not any(r.status is Status.UNKNOWN for r in export.windows):  # an audit that could not look does not move restore points
            broken = export.restore.broken_at
            restore |= {"restorable_until": export.restore.restorable_until, "broken_at": broken.window.scheduled if broken else None}
        where = (DATASETS.c.export_id == export_id) & (DATASETS.c.dataset_id == export.dataset_id)
        conn.execute(update(DATASETS).where(where).values(**restore))
        until = conn.execute(select(DATASETS.c.restorable_until).where(where)).scalar_one_or_none()
        conn.execute(POINTS.insert().values(export_id=export_id, dataset_id=export.dataset_id, audit_id=audit_id, as_of=as_of, restorable_until=_utc(until)))

    def _record_historical(self, conn: Connection, export: ExportResult, export_id: int, existing: Mapping[datetime, Any], audit_id: int, as_of: datetime) -> None:
        """An audit as of a past time: its view joins each window's history, in as-of order; the present stays.

        History records changes. When this view differs from the status in effect at its as-of time,
        the status that the next live audit confirmed is written again at that audit's as-of time, so
        "what did we know at T" stays right for every T after it.
        """
        ids = {k: v for k, v in self._window_ids(conn, export_id, export.dataset_id).items() if k in existing}  # never a new window
        if not ids:
            return
        entries: dict[int, list[tuple[datetime, int, str]]] = {}
        for window_id, at, id_, status in conn.execute(select(HISTORY.c.window_id, HISTORY.c.at, HISTORY.c.id, HISTORY.c.status).where(HISTORY.c.window_id.in_(list(ids.values())))):
            entries.setdefault(window_id, []).append((_utc(at), id_, status))
        next_live = conn.execute(
            select(POINTS.c.as_of, POINTS.c.audit_id)
            .where(POINTS.c.export_id == export_id, POINTS.c.dataset_id == export.dataset_id, POINTS.c.as_of > as_of)
            .order_by(POINTS.c.as_of, POINTS.c.id)
            .limit(1)
        ).one_or_none()
        rows = []
        for result in export.windows:
            window_id = ids.get(result.window.scheduled)
            if window_id is None:
                continue
            ordered = sorted(entries.get(window_id, []))
            before = [e for e in ordered if e[0] <= as_of]
            after = [e for e in ordered if e[0] > as_of]
            in_effect = before[-1][2] if before else None
            if in_effect == result.status.value:
                continue
            rows.append({"window_id": window_id, "audit_id": audit_id, "status": result.status.value, "at": as_of, "live": False})
            if in_effect is not None and next_live is not None and (not after or _utc(next_live[0]) < after[0][0]):
                rows.append({"window_id": window_id, "audit_id": next_live[1], "status": in_effect, "at": _utc(next_live[0]), "live": True})
        _upsert(conn, HISTORY, rows, None, ())

    def _window_ids(self, conn: Connection, export_id: int, dataset: str) -> dict[datetime, int]:
        query = select(WINDOWS.c.id, WINDOWS.c.scheduled).where(WINDOWS.c.export_id == export_id, WINDOWS.c.dataset_id == dataset)
        return {_utc(scheduled): id_ for id_, scheduled in conn.execute(query)}

    # -- alert episodes and their notices --------------------------------------------

    def open_episodes(self, exports: Iterable[str] | None = None) -> dict[str, Episode]:
        """The episodes still open, by condition key (only those of `exports` when given)."""
        query = select(EPISODES).where(EPISODES.c.closed_at.is_(None))
        if exports is not None:
            query = query.where(EPISODES.c.export.in_(list(exports)))
        with self._connect() as conn:
            return {row.key: _episode(row) for row in conn.execute(query)}

    def episodes(self, limit: int = 200) -> list[Episode]:
        with self._connect() as conn:
            return [_episode(row) for row in conn.execute(select(EPISODES).order_by(EPISODES.c.id.desc()).limit(limit))]

    def open_episode(self, key: str, *, rule: str, export: str, dataset: str, scheduled: datetime | None, message: str, payload: Mapping[str, Any],
                     channels: Sequence[str], now: datetime, audit_id: int | None, queued_at: datetime | None = None) -> bool:
        """Open an episode and queue one alert per channel (due from `queued_at`, else `now`), unless one is open for
        `key` already: then record that its condition still holds as of `now`."""
        values = {"key": key, "rule": rule, "export": export, "dataset_id": dataset, "scheduled": scheduled, "message": message, "opened_at": now,
                  "opened_audit_id": audit_id, "seen_at": now}
        with self._connect() as conn, conn.begin():
            insert = _dialect_insert(conn.dialect, EPISODES).values(**values)
            statement = insert.on_conflict_do_nothing(index_elements=["key"], index_where=EPISODES.c.closed_at.is_(None)).returning(EPISODES.c.id)
            episode_id = conn.execute(statement).scalar_one_or_none()
            if episode_id is None:
                still = (EPISODES.c.key == key) & EPISODES.c.closed_at.is_(None) & or_(EPISODES.c.seen_at.is_(None), EPISODES.c.seen_at < now)
                conn.execute(update(EPISODES).where(still).values(seen_at=now))
                return False
            self._queue(conn, episode_id, "alert", message, payload, channels, queued_at or now)
            return True

    def close_episode(self, key: str, *, message: str, payload: Mapping[str, Any], channels: Sequence[str], now: datetime, audit_id: int | None,
                      queued_at: datetime | None = None) -> bool:
        """Close the open episode of `key` and queue one recovery (once, whoever closes it) to each channel of `channels`
        that its alert went to or is still going to: not to one that joined the rule since (it had no alert), nor to one
        whose alert was given up; and to one the rule no longer names, whose alert was sent (it is owed the end)."""
        with self._connect() as conn, conn.begin():
            episode_id = conn.execute(
                update(EPISODES)
                .where(EPISODES.c.key == key, EPISODES.c.closed_at.is_(None))
                .values(closed_at=now, closed_audit_id=audit_id, close_message=message)
                .returning(EPISODES.c.id)
            ).scalar_one_or_none()
            if episode_id is None:
                return False
            if channels:
                alerted = select(NOTICES.c.channel).where(NOTICES.c.episode_id == episode_id, NOTICES.c.kind == "alert", NOTICES.c.state != "failed")
                owed = sorted(set(conn.execute(alerted).scalars()))
                self._queue(conn, episode_id, "recovery", message, payload, owed, queued_at or now)
            return True

    def _queue(self, conn: Connection, episode_id: int, kind: str, message: str, payload: Mapping[str, Any], channels: Sequence[str], now: datetime) -> None:
        rows = [
            {"episode_id": episode_id, "channel": c, "kind": kind, "message": message, "payload": dict(payload), "created_at": now, "state": "pending",
             "attempts": 0, "next_attempt_at": now, "lease_holder": None, "lease_until": None, "last_error": None, "delivered_at": None}
            for c in channels
        ]
        _upsert(conn, NOTICES, rows, ["episode_id", "channel", "kind"], [])

    def notices(self, limit: int = 200, *, state: str | None = None) -> list[Notice]:
        """The newest notices first (`state`: only pending, delivered or failed ones)."""
        query = select(NOTICES, EPISODES.c.key, EPISODES.c.rule, EPISODES.c.export, EPISODES.c.dataset_id, EPISODES.c.scheduled).join(EPISODES, NOTICES.c.episode_id == EPISODES.c.id)
        if state is not None:
            query = query.where(NOTICES.c.state == state)
        with self._connect() as conn:
            return [_notice(row) for row in conn.execute(query.order_by(NOTICES.c.id.desc()).limit(limit))]

    def claim_notices(self, now: datetime, *, holder: str, lease: timedelta, limit: int = 10, channels: Iterable[str] | None = None,
                      others_after: timedelta | None = None) -> list[Notice]:
        """Claim notices due at `now` for sending: each is handed to one claimer until its lease runs out. With `channels`,
        only notices to those channels (another configuration on the catalog may name others), and with `others_after`
        also a notice to another channel that has been due that long without an attempt: no process that names its
        channel delivers it (one that does retries at least hourly, which moves its next attempt on).

        Leases are kept in wall-clock time (whatever clock `now` is on), so a slow audit before the
        claim cannot shorten them. PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: a conditional UPDATE.
        """
        wall = datetime.now(UTC)
        due = and_(NOTICES.c.state == "pending", NOTICES.c.next_attempt_at <= now, or_(NOTICES.c.lease_until.is_(None), NOTICES.c.lease_until < wall))
        if channels is not None:
            known = NOTICES.c.channel.in_(sorted(set(channels)))
            due = and_(due, or_(known, NOTICES.c.next_attempt_at <= now - others_after) if others_after is not None else known)
        claimed: list[int] = []
        with self._connect() as conn, conn.begin():
            candidates = select(NOTICES.c.id).where(due).order_by(NOTICES.c.id).limit(limit)
            if conn.dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            for (notice_id,) in conn.execute(candidates).all():
                result = conn.execute(update(NOTICES).where(NOTICES.c.id == notice_id, due).values(lease_holder=holder, lease_until=wall + lease))
                if result.rowcount == 1:
                    claimed.append(notice_id)
        if not claimed:
            return []
        query = (
            select(NOTICES, EPISODES.c.key, EPISODES.c.rule, EPISODES.c.export, EPISODES.c.dataset_id, EPISODES.c.scheduled)
            .join(EPISODES, NOTICES.c.episode_id == EPISODES.c.id)
            .where(NOTICES.c.id.in_(claimed))
            .order_by(NOTICES.c.id)
        )
        with self._connect() as conn:
            return [_notice(row) for row in conn.execute(query)]

    def renew_lease(self, notice_id: int, *, holder: str, lease: timedelta) -> bool:
        """Extend this holder's lease just before sending; False when the notice is no longer this holder's to send."""
        wall = datetime.now(UTC)
        with self._connect() as conn, conn.begin():
            mine = (NOTICES.c.id == notice_id) & (NOTICES.c.lease_holder == holder) & (NOTICES.c.state == "pending") & (NOTICES.c.lease_until >= wall)
            return bool(conn.execute(update(NOTICES).where(mine).values(lease_until=wall + lease)).rowcount == 1)

    def record_attempt(self, notice_id: int, *, holder: str, now: datetime, error: str | None, permanent: bool, retry_at: datetime | None) -> str:
        """Record one delivery attempt; `retry_at` None with an error gives the notice up. Returns its new state,
        or "lost" when the lease had passed to another holder (the attempt is recorded as such)."""
        state = "delivered" if error is None else ("failed" if permanent or retry_at is None else "pending")
        values: dict[str, Any] = {"state": state, "attempts": NOTICES.c.attempts + 1, "last_error": error, "lease_holder": None, "lease_until": None}
        if state == "delivered":
            values["delivered_at"] = now
        if state == "pending":
            values["next_attempt_at"] = retry_at
        with self._connect() as conn, conn.begin():
            changed = conn.execute(update(NOTICES).where(NOTICES.c.id == notice_id, NOTICES.c.lease_holder == holder).values(**values)).rowcount
            outcome = {"delivered": "delivered", "failed": "failed", "pending": "retry"}[state] if changed == 1 else "lost-lease"
            conn.execute(ATTEMPTS.insert().values(notice_id=notice_id, at=now, holder=holder, outcome=outcome, error=error))
        return state if changed == 1 else "lost"

    def attempts(self, notice_id: int) -> list[tuple[datetime, str, str | None]]:
        with self._connect() as conn:
            query = select(ATTEMPTS.c.at, ATTEMPTS.c.outcome, ATTEMPTS.c.error).where(ATTEMPTS.c.notice_id == notice_id).order_by(ATTEMPTS.c.id)
            return [(_utc(at), outcome, error) for at, outcome, error in conn.execute(query)]

    # -- one auditor at a time per destination -----------------------------------------

    @contextmanager
    def destination_locks(self, destinations: Iterable[str], *, wait: bool) -> Iterator[bool]:
        """Hold the right to audit every one of `destinations` (yields False, holding none, when another process
        has one of them and `wait` is off). Taken in name order, so two waiting processes cannot deadlock.

        Both are leases: released if the process dies, and taken from it one lease after it stops answering (frozen,
        its host cut off). PostgreSQL: session advisory locks on one connection of their own (_Lease). SQLite: a row
        per destination its holder renews, with an exclusive lock on a file beside the database that tells a holder
        gone at once (_RowLease; one machine's processes); an in-memory database lives in one process: no lock.
        """
        names = sorted(set(destinations))
        if self.engine.dialect.name == "postgresql":
            with self._connect() as conn:
                yield from self._holding(_Lease(conn, names, self.lock_lease), wait)
        elif self._in_memory():  # lives in one process
            yield True
        else:
            yield from self._holding(_RowLease(self.engine, names, self.lock_lease, self._lock_path, self._stale_leases), wait)

    def _holding(self, lease: _Lease | _RowLease, wait: bool) -> Iterator[bool]:
        try:
            got = lease.take(wait=wait)
            if got:
                for name in lease.names:
                    self._leases[name] = lease
            yield got
        finally:
            for name in lease.names:
                if self._leases.get(name) is lease:
                    del self._leases[name]
            lease.release()

    def _lost_locks(self, conn: Connection, destinations: Iterable[str]) -> set[str]:
        """Those of `destinations` locked by this process whose lock the catalog no longer sees held (its lease ran out).
        On SQLite the answer holds the write lock until the transaction ends: no lease can change hands before it does."""
        leases = {name: self._leases[name] for name in destinations if name in self._leases}
        if not leases:
            return set()
        if conn.dialect.name != "postgresql":
            lost: set[str] = set()
            for name, lease in leases.items():
                assert isinstance(lease, _RowLease)
                if not lease.confirm(conn, name):
                    lost.add(name)
            return lost
        query = text("SELECT pid, (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND pid = ANY(:pids)")
        sessions = {name: cast(_Lease, lease) for name, lease in leases.items()}
        held = {(int(pid), int(key)) for pid, key in conn.execute(query, {"pids": sorted({lease.pid for lease in sessions.values()})})}
        return {name for name, lease in sessions.items() if lease.lost is not None or (lease.pid, _lock_key(name)) not in held}

    def _lock_path(self, destination: str) -> Path | None:
        """The lock file of a destination beside a SQLite database file (None for a database in memory)."""
        if self._in_memory():
            return None
        database = str(self.engine.url.database)
        folder = Path(database).expanduser().resolve().parent / f".{Path(database).name}.locks"
        folder.mkdir(exist_ok=True)
        return folder / f"{zlib.crc32(destination.encode()):08x}-{hashlib.sha256(destination.encode()).hexdigest()[:16]}.lock"

    def _in_memory(self) -> bool:
        """A SQLite database in memory (or a URI), which one process holds: no lock file, no lease."""
        database = self.engine.url.database
        return not database or database == ":memory:" or database.startswith("file:")

    def _connect(self) -> AbstractContextManager[Connection]:
        return _Guarded(self.engine)

    @contextmanager
    def reading(self) -> Iterator[Catalog]:
        """This catalog for reads on one connection, checked out of the pool once: a restore lookup makes
        four reads, so one checkout and one pre-ping instead of four. For reads only: on PostgreSQL the
        connection autocommits, so no BEGIN and no ROLLBACK travel (each read is its own snapshot, as each
        is under READ COMMITTED anyway): 5 round trips per lookup where one checkout per read made 16."""
        with self._connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield _OnOneConnection(self.engine, conn)

    def on(self, conn: Connection) -> Catalog:
        """This catalog's reads on a connection the caller holds and closes (LoopReads: an asyncio engine's
        connection seen through run_sync)."""
        return _OnOneConnection(self.engine, conn)

    # -- dashboard sessions: only the SHA-256 of a session id is stored ------------------

    def create_session(self, id_sha256: str, *, token_name: str, token_binding: str, role: str, now: datetime, expires_at: datetime) -> None:
        """Record a sign-in (`expires_at`: its absolute end; idle expiry counts from its last use)."""
        values = {"id_sha256": id_sha256, "token_name": token_name, "token_binding": token_binding, "role": role,
                  "created_at": _utc(now), "last_seen_at": _utc(now), "expires_at": _utc(expires_at)}
        with self._connect() as conn, conn.begin():
            conn.execute(self._sessions().insert().values(**values))

    def session(self, id_sha256: str) -> dict[str, Any] | None:
        """A recorded sign-in (token_name, token_binding, role, created_at, last_seen_at, expires_at), or None."""
        sessions = self._sessions()
        with self._connect() as conn:
            row = conn.execute(select(sessions).where(sessions.c.id_sha256 == id_sha256)).first()
        if row is None:
            return None
        return {"token_name": row.token_name, "token_binding": row.token_binding, "role": row.role, "created_at": _utc(row.created_at),
                "last_seen_at": _utc(row.last_seen_at), "expires_at": _utc(row.expires_at)}

    def touch_session(self, id_sha256: str, now: datetime) -> None:
        """Note a use of a sign-in (its idle expiry starts again)."""
        sessions = self._sessions()
        with self._connect() as conn, conn.begin():
            conn.execute(update(sessions).where(sessions.c.id_sha256 == id_sha256, sessions.c.last_seen_at < _utc(now)).values(last_seen_at=_utc(now)))

    def delete_session(self, id_sha256: str) -> bool:
        """End a sign-in (sign-out); False when there was none."""
        sessions = self._sessions()
        with self._connect() as conn, conn.begin():
            return bool(conn.execute(delete(sessions).where(sessions.c.id_sha256 == id_sha256)).rowcount)

    def expire_sessions(self, now: datetime, *, idle: timedelta) -> int:
        """Delete every sign-in past its absolute end or unused for `idle`; how many went."""
        sessions = self._sessions()
        gone = or_(sessions.c.expires_at <= _utc(now), sessions.c.last_seen_at <= _utc(now) - idle)
        with self._connect() as conn, conn.begin():
            return int(conn.execute(delete(sessions).where(gone)).rowcount)

    @staticmethod
    def _sessions() -> Table:
        from auditor.catalog.tables import SESSIONS

        return SESSIONS


class _OnOneConnection(Catalog):
    """Catalog.reading's catalog: every read on the one connection it was given (left open)."""

    def __init__(self, engine: Engine, conn: Connection) -> None:
        super().__init__(engine)
        self._conn = conn

    def _connect(self) -> AbstractContextManager[Connection]:
        return _Borrowed(self._conn)

    @contextmanager
    def reading(self) -> Iterator[Catalog]:
        yield self  # already on one connection


class _Borrowed:
    """A connection lent to one read: database errors surface as CatalogError, and it stays open."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __enter__(self) -> Connection:
        return self._conn

    def __exit__(self, kind: object, value: BaseException | None, _tb: object) -> None:
        if isinstance(value, SQLAlchemyError):
            raise CatalogError(f"catalog operation failed: {_reason(value)}") from value


def _milliseconds(lease: timedelta) -> str:
    return f"{max(1, round(lease.total_seconds() * 1000))}ms"


def _lock_key(destination: str) -> int:
    return int.from_bytes(hashlib.sha256(f"auditor-destination:{destination}".encode()).digest()[:8], "big", signed=True)


class _Lease:
    """Session advisory locks on one connection of their own, kept only while their holder answers.

    PostgreSQL (14 and later) ends a session left idle longer than its idle_session_timeout, and with
    it the session's advisory locks. The lock connection sets that to the lease, and a thread renews it
    (one round trip) three times per lease. A process that stops answering (frozen, its host cut off)
    so loses its destinations one lease later to whichever process asks next, where a plain session
    lock would keep them until its TCP connection died, which may be never. The holder learns it at
    its next renewal; record_audit asks pg_locks whether the locks are still held before it trusts
    what the audit read under them. The session is named after the host and process holding it
    (pg_stat_activity.application_name), so whoever looks can see who holds a destination.
    """

    def __init__(self, conn: Connection, names: Sequence[str], lease: timedelta) -> None:
        self._conn = conn
        self.names = list(names)
        self._lease = lease
        self._held: list[int] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.pid = 0
        self.lost: str | None = None  # why the locks were lost while held

    def take(self, *, wait: bool) -> bool:
        # no transaction on this connection (the locks are the session's): idle between statements, not idle in a
        # transaction, so the timeout counts from the moment a lock is granted, even to a process frozen while it waited
        conn = self._conn.execution_options(isolation_level="AUTOCOMMIT")
        self.pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        holder = f"auditor lock {socket.gethostname()}:{os.getpid()}"[:63]
        conn.execute(text("SELECT set_config('application_name', :holder, false)"), {"holder": holder})
        leased = (conn.dialect.server_version_info or (0,)) >= (14,)
        if leased:
            conn.execute(text("SELECT set_config('idle_session_timeout', :timeout, false)"), {"timeout": _milliseconds(self._lease)})
        else:
            log.warning("PostgreSQL %s has no idle_session_timeout: a frozen auditor process keeps the destinations it locked until its connection closes",
                        ".".join(map(str, conn.dialect.server_version_info or ())))
        for name in self.names:
            key = _lock_key(name)
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            elif not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one():
                break
            self._held.append(key)
        if len(self._held) < len(self.names):
            return False
        if leased:
            self._renewer = threading.Thread(target=self._renew, name="auditor-lock-lease", daemon=True)
            self._renewer.start()
        return True

    def _renew(self) -> None:
        every = self._lease.total_seconds() / 3
        while not self._stop.wait(every):
            try:
                self._conn.exec_driver_sql("SELECT 1")
            except SQLAlchemyError as e:
                self.lost = f"the catalog ended the session that held them ({_reason(e)})"
                log.warning("lost the audit lock on %s: %s; this process did not renew it for longer than the lease (%s): frozen, "
                            "cut off, or its interpreter held up; another process may audit them meanwhile", ", ".join(self.names), self.lost, self._lease)
                return

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost is None:
            try:
                for key in self._held:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                self._conn.exec_driver_sql("RESET idle_session_timeout")
                self._conn.exec_driver_sql("RESET application_name")
                return
            except SQLAlchemyError as e:
                self.lost = _reason(e)
                log.warning("lost the audit lock on %s: the catalog ended the session that held them (%s)", ", ".join(self.names), self.lost)
        self._conn.invalidate()  # its session ended, and its locks with it


class _RowLease:
    """On SQLite: a row per destination in `audit_leases`, held while its holder renews it, and a lock file.

    PostgreSQL's advisory locks end with a session that stops answering; a lock file on SQLite stayed with a
    process frozen while it held it (a terminal's Ctrl-Z, a debugger) for as long as it was frozen. The row is the
    lock: it is taken in a write transaction (so two processes cannot both take it) when there is none, when its
    holder held the lock file and no longer does (it ended: the system let go of its file), or when its holder has
    not renewed it for a lease and it is seen so twice, half a lease apart, by the process that takes it (a holder
    that could not renew because another process held SQLite's write lock renews as soon as it is let go: a row
    stale only for that is not taken). A thread renews the rows held three times per lease, from the first one
    taken (a process that holds one destination while it waits for the next keeps it); record_audit confirms them,
    in its write transaction, before it trusts what the audit read under them. One machine's processes share a
    SQLite catalog, and its clock: the lease is measured by it (a clock set back by more than a lease frees a row).
    """

    POLL = 0.5  # seconds between tries of a process that waits for a destination

    def __init__(
        self, engine: Engine, names: Sequence[str], lease: timedelta, lock_path: Callable[[str], Path | None], stale: dict[str, tuple[str, float, float]],
    ) -> None:
        self._engine = engine
        self.names = list(names)
        self._lease = lease.total_seconds()
        self._lock_path = lock_path
        self._stale = stale  # destination -> (holder, renewed_at, when this process first saw it stale): the catalog's, across leases
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"[-200:]
        self._files: list[Any] = []  # the lock files this process holds
        self._held: list[str] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: str | None = None

    def take(self, *, wait: bool) -> bool:
        for name in self.names:
            while not self._take(name):
                if not wait:
                    return False
                time.sleep(min(self.POLL, self._lease / 6))
            self._held.append(name)
            if self._renewer is None:  # renewed from now on, while the next is waited for
                self._renewer = threading.Thread(target=self._renew, name="auditor-lock-lease", daemon=True)
                self._renewer.start()
        return True

    def _take(self, name: str) -> bool:
        path = self._lock_path(name)
        handle = open(path, "a+b") if path is not None else None  # noqa: SIM115 - held open while the lease is
        flocked = False
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except BlockingIOError:
                pass
        values = {"holder": self.holder, "flocked": flocked}
        taken, problem = False, None
        try:
            with self._engine.connect() as conn, conn.begin():
                # a write first: SQLite's write lock is this transaction's from here on, so what it reads stands
                now = time.time()
                if conn.execute(LEASES.insert().prefix_with("OR IGNORE").values(destination=name, renewed_at=now, **values)).rowcount:
                    taken = True
                else:
                    holder, renewed_at, was_flocked = conn.execute(select(LEASES.c.holder, LEASES.c.renewed_at, LEASES.c.flocked).where(LEASES.c.destination == name)).one()
                    if self._free(name, holder, renewed_at, now, ended=flocked and bool(was_flocked)):
                        conn.execute(update(LEASES).where(LEASES.c.destination == name).values(renewed_at=now, **values))
                        taken = True
        except SQLAlchemyError as e:
            problem = e
        if problem is not None:
            log.warning("cannot take the audit lock on %s: %s", name, _reason(problem))
        if taken:
            self._stale.pop(name, None)
            if handle is not None:
                self._files.append(handle)
            return True
        if handle is not None:
            handle.close()  # (and the lock file's lock with it)
        return False

    def _free(self, name: str, holder: str, renewed_at: float, now: float, *, ended: bool) -> bool:
        """Whether a row held by `holder` may be taken: its holder ended, or it is stale, and was seen stale (not
        renewed since) at least half a lease ago."""
        if ended:
            return True
        if now - self._lease <= renewed_at <= now + self._lease:
            self._stale.pop(name, None)
            return False
        seen = self._stale.get(name)
        if seen is None or seen[:2] != (holder, renewed_at):
            self._stale[name] = (holder, renewed_at, time.monotonic())
            return False
        return time.monotonic() - seen[2] >= self._lease / 2

    def _renew(self) -> None:
        every = self._lease / 3
        while not self._stop.wait(every):
            held = list(self._held)
            try:
                with self._engine.connect() as conn, conn.begin():
                    renewed = conn.execute(update(LEASES).where(LEASES.c.destination.in_(held), LEASES.c.holder == self.holder).values(renewed_at=time.time())).rowcount
            except SQLAlchemyError as e:  # the catalog busy or away: tried again at the next turn, lost only if taken meanwhile
                log.debug("could not renew the audit lock on %s: %s", ", ".join(held), _reason(e))
                continue
            if renewed < len(held):
                self.lost = "another process took it"
                log.warning("lost the audit lock on %s: %s; this process did not renew it for longer than the lease (%s s): frozen, "
                            "or its interpreter or the catalog held up; another process may audit them meanwhile", ", ".join(held), self.lost, self._lease)
                return

    def confirm(self, conn: Connection, name: str) -> bool:
        """Whether this process still holds `name` (renewed as it says so); in a write transaction on `conn`, which then
        holds SQLite's write lock, so the answer stands until it ends."""
        return bool(conn.execute(update(LEASES).where(LEASES.c.destination == name, LEASES.c.holder == self.holder).values(renewed_at=time.time())).rowcount)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            if self._held:
                with self._engine.connect() as conn, conn.begin():
                    released = conn.execute(delete(LEASES).where(LEASES.c.destination.in_(self._held), LEASES.c.holder == self.holder)).rowcount
                if released < len(self._held) and self.lost is None:  # taken while this process did not renew (frozen after its audit)
                    self.lost = "another process took it"
                    log.warning("lost the audit lock on %s: %s while this process did not renew it", ", ".join(self._held), self.lost)
        except SQLAlchemyError as e:  # left to run out: one lease, or at once for a holder of the lock file (it is let go below)
            log.warning("could not release the audit lock on %s: %s", ", ".join(self._held), _reason(e))
        for handle in self._files:
            handle.close()
        self._files.clear()


class _Guarded:
    """A connection whose database errors surface as CatalogError."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self._conn = self._engine.connect()
        except SQLAlchemyError as e:
            raise CatalogUnreachable(f"cannot reach the catalog: {_reason(e)}") from e
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


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None, columns: Sequence[str]) -> None:
    """INSERT `rows` (all with the same keys), in batches: on a conflict on `keys`, update `columns` (none: keep the row);
    `keys` None: a plain INSERT.

    The statement is compiled once and run with the driver's own executemany; each column's value is converted once by
    SQLAlchemy's own bind processor for the column's type, called straight (SQLAlchemy would build each row's parameters
    through its compiled-statement machinery: most of the cost of a big write). SQLite times are rendered as the DateTime
    type stores them, with the C isoformat.
    """
    if not rows:
        return
    bulk = _bulk(conn.dialect, table, tuple(rows[0]), None if keys is None else tuple(keys), tuple(columns))
    convert = [(i, process, process(None)) for i, process in enumerate(bulk.processors) if process is not None]  # None: converted once
    names = bulk.names
    for chunk in _chunks(rows, _BATCH):
        params: list[Any]
        if not bulk.positional:
            params = [dict(row) for row in chunk]
            for p in params:
                for i, process, none in convert:
                    value = p[names[i]]
                    p[names[i]] = none if value is None else process(value)
        elif convert:
            params = []
            for row in chunk:
                values = [row[n] for n in names]
                for i, process, none in convert:
                    value = values[i]
                    values[i] = none if value is None else process(value)
                params.append(tuple(values))
        else:
            params = [tuple(row[n] for n in names) for row in chunk]
        conn.exec_driver_sql(bulk.sql, params)


_STREAM_ROWS = 5000  # rows fetched at a time where an estate's files are read
_BATCH = 5000  # rows converted and sent per executemany (bounds the converted copy held at once)
_FILE_BATCH = 1000  # file rows built at once (about 1.7 KiB each as dicts: 5,000 were 8.5 MiB of a first audit's peak)


@dataclass(frozen=True)
class _Bulk:
    sql: str
    names: tuple[str, ...]  # the parameters in the statement's order
    processors: tuple[Any, ...]  # each one's converter (None: the driver takes the value as it is)
    positional: bool


@lru_cache(maxsize=256)
def _bulk(dialect: Any, table: Table, names: tuple[str, ...], keys: tuple[str, ...] | None, columns: tuple[str, ...]) -> _Bulk:
    insert = _dialect_insert(dialect, table)
    statement: Any = insert
    if keys is not None and columns:
        statement = insert.on_conflict_do_update(index_elements=list(keys), set_={c: insert.excluded[c] for c in columns})
    elif keys is not None:
        statement = insert.on_conflict_do_nothing(index_elements=list(keys))
    compiled = statement.compile(dialect=dialect, column_keys=list(names), for_executemany=True)
    order = tuple(compiled.positiontup) if dialect.positional else names
    processors = tuple(_processor(table.c[n].type, dialect) for n in order)
    return _Bulk(compiled.string, order, processors, bool(dialect.positional))


def _processor(kind: Any, dialect: Any) -> Any:
    """A column type's bind processor (a pure function of the value), made cheaper for the values most rows carry."""
    from sqlalchemy import JSON, DateTime  # (here: the module's import line is shared with the read side's edits)

    process = kind.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and isinstance(kind, JSON):
        empty = process([])
        as_is = _json_as_is(dialect)

        def json_value(value: Any) -> Any:  # most files have no findings: [] serialized once
            if type(value) is list and not value:
                return empty
            if type(value) is _JSONText:  # a manifest as its record holds it: written as it is, not parsed and serialized again
                return as_is(value) if as_is is not None else process(json.loads(value))
            return process(value)

        return json_value
    if process is None or dialect.name != "sqlite" or not isinstance(kind, DateTime):
        return process

    last: list[tuple[Any, Any]] = [(None, None)]  # (the value converted last, its text), swapped whole (threads): rows share their as-of time

    def sqlite_time(value: Any) -> Any:  # what sqlite.DATETIME stores ("2026-11-27 06:10:00.000000", the wall-clock fields as given)
        seen, text = last[0]
        if value is seen:
            return text
        text = value.isoformat(" ", "microseconds")[:26] if type(value) is datetime else process(value)
        last[0] = (value, text)
        return text

    return sqlite_time


class _JSONText(str):
    """A JSON document already serialized, for a JSON column (FileRecord.content: a manifest's text)."""


def _content(content: dict[str, Any] | str | bytes | None) -> Any:
    """A FileRecord's content for its column: its JSON text (held compressed, or as text) as it is; a dict to serialize."""
    if isinstance(content, bytes):
        return _JSONText(zlib.decompress(content).decode())
    return _JSONText(content) if isinstance(content, str) else content


def _json_as_is(dialect: Any) -> Callable[[str], Any] | None:
    """How a JSON column's parameter takes text that is already JSON, or None where it cannot (then it is parsed)."""
    if dialect.name == "sqlite":  # SQLite's JSON type stores the serialized text
        return str
    if dialect.name == "postgresql" and dialect.driver == "psycopg":  # psycopg's JSON parameter, serialized by a no-op
        from psycopg.types.json import Json

        return lambda text: Json(text, dumps=str)
    return None


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# _record_live: the current findings of one dataset's windows, in the order they were written
_WINDOW_FINDINGS = (
    select(FINDINGS.c.window_id, FINDINGS.c.code, FINDINGS.c.severity, FINDINGS.c.path, FINDINGS.c.message)
    .join(WINDOWS, FINDINGS.c.window_id == WINDOWS.c.id)
    .where(WINDOWS.c.export_id == bindparam("export_id"), WINDOWS.c.dataset_id == bindparam("dataset"))
    .order_by(FINDINGS.c.id)
)
# an AuditRecord's columns: everything but the stored report (a gzip blob of megabytes for an estate-wide audit)
_AUDIT_COLUMNS = tuple(c for c in AUDITS.c if c.name != "report")
_AUDIT_BY_ID = select(*_AUDIT_COLUMNS).where(AUDITS.c.id == bindparam("id"))
_ANSWERING_AUDIT = (  # a restore lookup's first read: the dataset is the export's, and the export's latest live audit
    select(*_AUDIT_COLUMNS)
    .select_from(DATASETS)
    .join(EXPORTS, DATASETS.c.export_id == EXPORTS.c.id)
    .join(AUDITS, AUDITS.c.id == EXPORTS.c.live_audit_id)
    .where(EXPORTS.c.name == bindparam("export"), DATASETS.c.dataset_id == bindparam("dataset"))
)
# a restore lookup's reads, built once (each is a lookup on an index: see migrations 0007)
_RESTORE_WINDOWS = (
    select(  # the columns a restore plan reads, not the schema text or deep-check counts every window row also holds
        EXPORTS.c.name, WINDOWS.c.dataset_id, WINDOWS.c.scheduled, WINDOWS.c.status, WINDOWS.c.folder_key, WINDOWS.c.files, WINDOWS.c.bytes,
        WINDOWS.c.records, WINDOWS.c.status_since, WINDOWS.c.last_audit_id, WINDOWS.c.known_status,
    )
    .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
    .where(EXPORTS.c.name == bindparam("export"), WINDOWS.c.dataset_id == bindparam("dataset"), WINDOWS.c.scheduled <= bindparam("end", type_=UTCDateTime))
    .order_by(WINDOWS.c.scheduled)
)


def _sample_key(report: AuditReport) -> str | None:
    """The --sample rotation the audit took part in, from its report's method (None: it sampled nothing)."""
    turn = (report.method or {}).get("sample_turn")
    if not isinstance(turn, dict) or not isinstance(turn.get("of"), int) or turn.get("complete") is False:
        return None  # sampled nothing, or not all of its turn: the next sampled audit takes the same turn
    return sample_key(turn["of"], (report.method or {}).get("scope") or ())


def _has_error(findings: str) -> bool:
    try:
        parsed = json.loads(findings)
    except ValueError:
        return True  # unreadable findings are no proof of sound bytes
    return any(isinstance(f, dict) and f.get("severity") == "error" for f in parsed) if isinstance(parsed, list) else True


_FOLDER_FILES_AND_MANIFESTS = (
    select(FILES.c.folder_key, FILES.c.key, FILES.c.size, FILES.c.etag, FILES.c.records, FILES.c.level, sql_cast(FILES.c.findings, Text), FILES.c.role, DESTINATIONS.c.url)
    .join(DESTINATIONS, FILES.c.destination_id == DESTINATIONS.c.id)
    .where(DESTINATIONS.c.name == bindparam("destination"), FILES.c.folder_key.in_(bindparam("folders", expanding=True)), FILES.c.gone_at.is_(None))
)
_FOLDER_FILES = _FOLDER_FILES_AND_MANIFESTS.where(FILES.c.role == "data")


@cache
def _dataset_queries(by_export: bool, by_dataset: bool) -> tuple[Select[Any], Select[Any]]:
    """Catalog.datasets' statements (window counts by status; dataset states), built once for each filter:
    building one costs more than running it on an index (parameters `export`, `dataset`)."""
    count_query = (
        select(EXPORTS.c.name, WINDOWS.c.dataset_id, WINDOWS.c.status, func.count())
        .join(EXPORTS, WINDOWS.c.export_id == EXPORTS.c.id)
        .group_by(EXPORTS.c.name, WINDOWS.c.dataset_id, WINDOWS.c.status)
    )
    query = (
        select(EXPORTS.c.name, EXPORTS.c.live_audit_id, DESTINATIONS.c.name.label("destination"), EXPORTS.c.schedule, DATASETS)
        .join(EXPORTS, DATASETS.c.export_id == EXPORTS.c.id)
        .join(DESTINATIONS, EXPORTS.c.destination_id == DESTINATIONS.c.id)
        .order_by(EXPORTS.c.name, DATASETS.c.dataset_id)
    )
    if by_export:
        count_query = count_query.where(EXPORTS.c.name == bindparam("export"))
        query = query.where(EXPORTS.c.name == bindparam("export"))
    if by_dataset:
        count_query = count_query.where(WINDOWS.c.dataset_id == bindparam("dataset"))
        query = query.where(DATASETS.c.dataset_id == bindparam("dataset"))
    return count_query, query


# known_files: the columns of a FileRecord, times and JSON as stored (converted by _file_record)
_KNOWN_COLUMNS = (
    FILES.c.key, FILES.c.folder_key, FILES.c.role, FILES.c.size, FILES.c.etag, type_coerce(FILES.c.modified, String), FILES.c.level,
    type_coerce(FILES.c.validated_at, String), type_coerce(FILES.c.deep_at, String), FILES.c.records, type_coerce(FILES.c.findings, String),
    sql_cast(FILES.c.content, Text), FILES.c.schema,
)
# sweep_state: what a carried window keeps (auditor.listing.StoredWindow, findings apart)
_CARRIED_COLUMNS = (
    WINDOWS.c.status, WINDOWS.c.folder_key, WINDOWS.c.files, WINDOWS.c.bytes, WINDOWS.c.records, WINDOWS.c.schema, WINDOWS.c.deep_files,
    type_coerce(WINDOWS.c.oldest_deep_at, String),
)
# _record_files: the key, then what a check or a move sets (findings and content change only with validated_at)
_STATE_COLUMNS = (
    FILES.c.key, FILES.c.folder_key, FILES.c.role, FILES.c.size, FILES.c.etag, type_coerce(FILES.c.modified, String), FILES.c.level,
    type_coerce(FILES.c.validated_at, String), type_coerce(FILES.c.deep_at, String), FILES.c.records, FILES.c.schema,
)
_FINDINGS: dict[Any, tuple[Finding, ...]] = {}  # stored findings -> decoded (Finding is immutable); bounded


def _streamed(conn: Connection, query: Select[Any]) -> Select[Any]:
    """`query` fetching its rows _STREAM_ROWS at a time on `conn` (PostgreSQL: a server-side cursor, which needs a
    transaction; on a connection in autocommit, as `Catalog.reading` lends, the whole result comes at once)."""
    if conn.dialect.name == "postgresql" and conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return query
    return query.execution_options(yield_per=_STREAM_ROWS)


def _catalog_clock(conn: Connection) -> datetime:
    """Now by the catalog's clock: PostgreSQL's own (every process on the catalog reads the same one); SQLite has none
    but this host's, which every process on the file shares."""
    if conn.dialect.name == "postgresql":
        return cast(datetime, _utc(conn.execute(text("SELECT now()")).scalar_one()))
    return datetime.now(UTC)


def _live(latest: datetime | None, as_of: datetime, ahead: datetime | None) -> bool:
    """Whether an audit as of `as_of` brings the present up to date where the latest live audit was as of `latest`."""
    return latest is None or as_of >= latest or (ahead is not None and latest > ahead)


def _live_as_of(conn: Connection, exports: Sequence[str] | None, *, lock: bool = False) -> dict[tuple[str, str], datetime | None]:
    """(export, dataset) -> the as-of time of its latest live audit, for `exports` (None: every export); with `lock`, the
    rows stay locked (PostgreSQL) until the transaction ends."""
    query = select(EXPORTS.c.name, DATASETS.c.dataset_id, DATASETS.c.as_of).join(EXPORTS, DATASETS.c.export_id == EXPORTS.c.id)
    if exports is not None:
        query = query.where(EXPORTS.c.name.in_(exports))
    return {(name, dataset): _utc(at) for name, dataset, at in conn.execute(query.with_for_update() if lock else query)}


def _deep_summaries(files: Mapping[str, Sequence[FileRecord]]) -> dict[tuple[str, str], tuple[int, datetime | None]]:
    """(destination, folder key) -> how many of its data files were deep-checked, and the oldest of those checks."""
    found: dict[tuple[str, str], tuple[int, datetime | None]] = {}
    for destination, records in files.items():
        for r in records:
            if r.role != "data" or r.deep_at is None or r.folder_key is None:
                continue
            count, oldest = found.get((destination, r.folder_key), (0, None))
            found[(destination, r.folder_key)] = (count + 1, r.deep_at if oldest is None or r.deep_at < oldest else oldest)
    return found


def _same(stored: Any, value: Any) -> bool:
    """A stored column equals a value (times as instants: SQLite gives them back without a zone)."""
    if isinstance(stored, datetime) and isinstance(value, datetime):
        return _utc(stored) == _utc(value)
    return bool(stored == value)


def _dialect_insert(dialect: Any, table: Table) -> Any:
    """INSERT with ON CONFLICT for the catalog's database (each dialect imported only where it is used)."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def _file_record(row: Any) -> FileRecord:
    """A FileRecord from a row of _KNOWN_COLUMNS (plain values: SQLite gives times and JSON as text).

    For an estate's million rows: a folder's files share one folder-key string, files of one schema one
    schema text and every row one role text (sys.intern), and a manifest's content is held compressed
    (audit.packed) until it is used.
    """
    key, folder_key, role, size, etag, modified, level, validated_at, deep_at, records, findings, content, schema = row
    return FileRecord(
        key,
        None if folder_key is None else sys.intern(folder_key),
        sys.intern(role),
        size,
        etag,
        _time(modified),
        level,
        _time(validated_at),
        _time(deep_at),
        records,
        _findings(findings),
        None if content is None or content == "null" else packed(content),
        None if schema is None else sys.intern(schema),
    )


def _stored_state(values: Sequence[Any]) -> tuple[Any, ...]:
    folder_key, role, size, etag, modified, level, validated_at, deep_at, records, schema = values
    return (folder_key, role, size, etag, _time(modified), level, _time(validated_at), _time(deep_at), records, schema)


def _record_state(r: FileRecord) -> tuple[Any, ...]:  # aware datetimes are equal when they name one instant, whatever their zone
    return (r.folder_key, r.role, r.size, r.etag, r.modified, r.level, r.validated_at, r.deep_at, r.records, r.schema)


def _time(value: str | datetime | None) -> datetime | None:
    """A stored time: text on SQLite ("2026-11-27 06:10:00.000000", UTC), a datetime on PostgreSQL."""
    if isinstance(value, str):
        return _text_time(value)
    return _utc(value)


@lru_cache(maxsize=1 << 16)
def _text_time(value: str) -> datetime:  # files checked in one audit share their validated_at: parsed once
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    if value is None or value == "null":
        return None
    return json.loads(value) if isinstance(value, str) else value


def _findings(value: Any) -> tuple[Finding, ...]:
    hashable = value if isinstance(value, str) or value is None else json.dumps(value, sort_keys=True)
    found = _FINDINGS.get(hashable)
    if found is None:
        found = tuple(Finding.from_dict(f) for f in _json(value) or [])
        if len(_FINDINGS) >= 10_000:
            _FINDINGS.clear()
        _FINDINGS[hashable] = found
    return found


_CONFIG_COLUMNS = ("format", "compression", "manifest", "grace_seconds", "flow_id", "schedule", "folder_template", "runs_joined")


def _export_config(e: ExportSettings, *, runs_joined: bool) -> dict[str, Any]:
    """What the exports table records of an export's configuration (_CONFIG_COLUMNS): what its windows are judged under,
    run evidence included (`runs_joined`: the audit had its flow's runs)."""
    return {
        "format": e.format,
        "compression": e.compression,
        "manifest": e.manifest,
        "grace_seconds": int(e.grace.total_seconds()),
        "flow_id": e.flow_id,
        "schedule": _schedule_json(e.schedule),
        "folder_template": e.layout.template,
        "runs_joined": runs_joined,
    }


def _runs_joined(e: ExportSettings, runs: Mapping[str, Sequence[Run]] | None) -> bool:
    """Whether an audit with these runs joins them to the export's windows (auditor.audit._reconcile_export)."""
    return runs is not None and e.flow_id is not None and e.flow_id in runs


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


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        row.id, _utc(row.started_at), _utc(row.finished_at), _utc(row.as_of), row.status, bool(row.deep), int(row.bytes_read or 0),
        tuple(row.scope or ()), tuple(row.live_exports if row.live_exports is not None else (row.scope or ())), dict(row.summary or {}), row.report_sha256,
    )


def _chained(row: Any, *, with_report: bool = False) -> ChainedRecord:
    live = row.live_exports if row.live_exports is not None else row.scope
    body, state = None, "present"
    if with_report:
        if row.report is None:
            state = "missing"
        else:
            try:
                body = gzip.decompress(row.report)
            except (OSError, EOFError, zlib.error):
                state = "unreadable"
    return ChainedRecord(
        row.id, _utc(row.started_at), _utc(row.finished_at), _utc(row.as_of), row.status, bool(row.deep), tuple(row.scope or ()), tuple(live or ()),
        row.report_sha256, row.prev_sha256, row.record_sha256, body, state, row.bytes_read, row.summary if isinstance(row.summary, dict) else None,
    )


def _episode(row: Any) -> Episode:
    return Episode(row.id, row.key, row.rule, row.export, row.dataset_id, _utc(row.scheduled), row.message, _utc(row.opened_at), _utc(row.closed_at), _utc(row.seen_at))


def _notice(row: Any) -> Notice:
    return Notice(
        row.id, row.episode_id, row.key, row.rule, row.export, row.dataset_id, _utc(row.scheduled), row.channel, row.kind, row.message, dict(row.payload or {}),
        _utc(row.created_at), row.state, row.attempts, _utc(row.next_attempt_at), row.last_error, _utc(row.delivered_at),
    )
