"""Reconciliation: what was expected, what landed, and the status of each window as of `now`.

Pure: no I/O and no clock; the audit gathers observations and hands them in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple

from auditor.chain import walk
from auditor.findings import Finding, Severity, error, warning
from auditor.validate.manifest import Manifest, compare_manifests
from auditor.validate.schema import describe_drift


class Status(str, enum.Enum):
    OK = "ok"
    LATE = "late"
    INVALID = "invalid"
    MISSING = "missing"
    EMPTY = "empty"
    PENDING = "pending"
    UNKNOWN = "unknown"


GOOD = frozenset({Status.OK, Status.LATE, Status.EMPTY})
_INCOMPLETE_CODES = {"manifest.missing", "manifest.file_absent", "manifest.size_mismatch"}


@dataclass(frozen=True)
class Window:
    """One scheduled export time of one dataset of one export."""

    export: str
    dataset_id: str
    scheduled: datetime
    deadline: datetime


class ObservedFile(NamedTuple):
    """A data file of an export folder with what validating it found (one per file a sweep judges: a named tuple is made
    in a third of a frozen dataclass's time)."""

    key: str
    url: str
    size: int
    modified: datetime | None
    etag: str | None
    findings: tuple[Finding, ...] = ()
    records: int | None = None
    schema: str | None = None  # canonical schema of a Parquet file (validate.schema)


class ObservedManifest(NamedTuple):
    """A manifest object: parsed when it could be, with the findings of parsing it."""

    url: str
    modified: datetime | None
    manifest: Manifest | None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Summary:
    """What the catalog recorded about a settled window's folder, carried instead of its files (auditor.listing)."""

    files: int
    bytes: int
    records: int | None
    schema: str | None  # the last of its files' Parquet schemas, in sorted order (what drift compares)
    deep_files: int = 0  # how many of its data files were deep-checked, and the oldest of those checks
    oldest_deep_at: datetime | None = None
    # a folder this audit listed and judged (summarised): the distinct schemas of its files, in sorted order, and
    # the dataflow runs its manifests name, what schema drift and the join with runs read of it
    schemas: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Folder:
    """What landed in one export folder (only objects modified at or before `now`).

    A folder with a `summary` was not listed by this audit: its window is carried as the catalog last
    judged it, with the counts recorded then and no per-file detail.
    """

    key: str
    url: str
    export_time: datetime
    data: tuple[ObservedFile, ...] = ()
    manifests: tuple[ObservedManifest, ...] = ()
    read_errors: tuple[str, ...] = ()
    summary: Summary | None = None

    @property
    def landed(self) -> bool:
        return bool(self.data or self.manifests) or self.summary is not None


@dataclass(frozen=True)
class WindowResult:
    """A window's status with its evidence."""

    window: Window
    status: Status
    folder: Folder | None = None
    findings: tuple[Finding, ...] = field(default=())
    carried: bool = False  # taken from the catalog as it was last judged, not reconciled from a listing (auditor.listing)

    @property
    def files(self) -> int:
        if self.folder is not None and self.folder.summary is not None:
            return self.folder.summary.files
        return len(self.folder.data) if self.folder else 0

    @property
    def bytes(self) -> int:
        if self.folder is not None and self.folder.summary is not None:
            return self.folder.summary.bytes
        return sum(f.size for f in self.folder.data) if self.folder else 0

    @property
    def schema(self) -> str | None:
        """The schema a later window's is compared with: the last of its files' schemas, in sorted order."""
        if self.folder is None:
            return None
        if self.folder.summary is not None:
            return self.folder.summary.schema
        return max((f.schema for f in self.folder.data if f.schema), default=None)

    @property
    def records(self) -> int | None:
        folder = self.folder
        if folder is not None and folder.summary is not None:
            if folder.summary.files or folder.summary.records is not None:
                return folder.summary.records
        elif folder is not None and folder.data:
            counts = [f.records for f in folder.data]
            return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        elif folder is not None and folder.manifests and all(m.manifest is not None and not m.manifest.entries for m in folder.manifests):
            return 0  # its manifests say the export wrote no file: none of the records a run reports landed
        return 0 if self.status is Status.EMPTY else None  # no data file: what the status says (a summary is made before the join with runs)

    @property
    def schemas(self) -> list[str]:
        """The distinct schemas of its files, in sorted order."""
        if self.folder is None:
            return []
        if self.folder.summary is not None:
            return list(self.folder.summary.schemas)
        return sorted({f.schema for f in self.folder.data if f.schema})

    @property
    def run_ids(self) -> set[str]:
        """The dataflow runs its manifests name."""
        if self.folder is None:
            return set()
        if self.folder.summary is not None:
            return set(self.folder.summary.run_ids)
        return {m.manifest.flow_run_id for m in self.folder.manifests if m.manifest}


def summarised(result: WindowResult) -> WindowResult:
    """A judged window with its folder's counts in place of its files and parsed manifests: all that schema drift,
    the join with runs, the report and the catalog read of it, so an audit keeps one folder's files at a time."""
    folder = result.folder
    if folder is None or folder.summary is not None or not folder.landed:
        return result
    summary = Summary(result.files, result.bytes, result.records, result.schema, schemas=tuple(result.schemas), run_ids=tuple(sorted(result.run_ids)))
    return replace(result, folder=Folder(folder.key, folder.url, folder.export_time, read_errors=folder.read_errors, summary=summary))


def reconcile_window(window: Window, folder: Folder | None, *, manifest_expected: bool, listing_failed: bool, now: datetime) -> WindowResult:
    """The status of one window as of `now` (see DESIGN.md, "Precise semantics")."""
    if listing_failed:
        return WindowResult(window, Status.UNKNOWN, folder)
    if folder is not None and folder.read_errors:
        return WindowResult(window, Status.UNKNOWN, folder)
    before_deadline = now < window.deadline
    if folder is None or not folder.landed:
        if before_deadline:
            return WindowResult(window, Status.PENDING, folder)
        reason = error("window.missing", folder.url if folder else "", f"nothing landed for {window.scheduled:%Y-%m-%dT%H:%MZ} by the deadline {window.deadline:%Y-%m-%dT%H:%MZ}")
        return WindowResult(window, Status.MISSING, folder, (reason,))

    findings: list[Finding] = [f for data in folder.data for f in data.findings]
    parsed = {m.url: m.manifest for m in folder.manifests if m.manifest is not None}
    findings += [f for m in folder.manifests for f in m.findings]
    complete = True
    if parsed:
        manifest_findings, complete = compare_manifests(
            parsed,
            {f.key.rsplit("/", 1)[-1]: f.size for f in folder.data},
            folder_url=folder.url,
            folder_key=folder.key,
            folder_time=folder.export_time,
        )
        findings += manifest_findings
    elif manifest_expected:
        complete = False
        if not folder.manifests:
            findings.append(error("manifest.missing", folder.url, "no manifest file, but the export is configured to write one"))

    if not complete and before_deadline:
        softened = [warning(f.code, f.path, f.message) if f.code in _INCOMPLETE_CODES else f for f in findings]
        return WindowResult(window, Status.PENDING, folder, tuple(softened))
    if any(f.severity is Severity.ERROR for f in findings):
        return WindowResult(window, Status.INVALID, folder, tuple(findings))
    times = [f.modified for f in folder.data if f.modified] + [m.modified for m in folder.manifests if m.modified]
    newest = max(times) if times else None
    if newest is not None and newest > window.deadline:
        findings.append(warning("window.late", folder.url, f"landed {newest:%Y-%m-%dT%H:%M:%SZ}, after the deadline {window.deadline:%Y-%m-%dT%H:%MZ}"))
        return WindowResult(window, Status.LATE, folder, tuple(findings))
    return WindowResult(window, Status.OK, folder, tuple(findings))


def flag_schema_drift(results: Sequence[WindowResult]) -> list[WindowResult]:
    """Warn where a window's Parquet schema differs from the previous window's, or within itself.

    A carried window keeps the findings it was recorded with (drift included); its schema is still what
    the next window is compared with.
    """
    flagged: list[WindowResult] = []
    previous: tuple[datetime, str] | None = None
    for result in sorted(results, key=lambda r: r.window.scheduled):
        if result.carried:
            if result.schema:
                previous = (result.window.scheduled, result.schema)
            flagged.append(result)
            continue
        schemas = result.schemas
        extra: list[Finding] = []
        detail = next((d for d in (describe_drift(schemas[0], other) for other in schemas[1:]) if d), None) if len(schemas) > 1 else None
        if detail and result.folder is not None:  # texts may differ in spelling only (recorded before and after the Parquet-schema change)
            extra.append(warning("parquet.schema_mixed", result.folder.url, f"files of one export disagree on the schema: {detail}"))
        if schemas and previous is not None and result.folder is not None:
            drift = describe_drift(previous[1], schemas[-1])
            if drift:
                extra.append(warning("parquet.schema_drift", result.folder.url, f"schema differs from the export of {previous[0]:%Y-%m-%dT%H:%MZ}: {drift}"))
        if schemas:
            previous = (result.window.scheduled, schemas[-1])
        flagged.append(replace(result, findings=(*result.findings, *extra)) if extra else result)
    return flagged


@dataclass(frozen=True)
class RestorePoint:
    """How far back a dataset can be restored from the windows of one export."""

    restorable_until: datetime | None
    broken_at: WindowResult | None  # the first window that breaks the chain, if any


def restore_point(results: Sequence[WindowResult], *, incremental: bool) -> RestorePoint:
    """The last slot whose whole chain (full export plus every incremental) is good (auditor.chain)."""
    chain = walk(results, incremental=incremental, status=lambda r: r.status.value, scheduled=lambda r: r.window.scheduled)
    return RestorePoint(chain.restorable_until, chain.broken)


def overall_status(statuses: Mapping[Status, int], *, errors: int) -> tuple[str, int]:
    """The audit verdict and its exit code from the count of windows per status."""
    if statuses.get(Status.MISSING) or statuses.get(Status.INVALID):
        return "not_compliant", 1
    if statuses.get(Status.UNKNOWN) or errors:
        return "incomplete", 3
    return "compliant", 0
