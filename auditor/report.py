"""The audit report: the values `run_audit` returns and their JSON shape (DESIGN.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from auditor.findings import Finding
from auditor.reconcile import RestorePoint, Status, WindowResult, overall_status


@dataclass(frozen=True)
class Unexpected:
    path: str
    reason: str


@dataclass(frozen=True)
class AuditError:
    destination: str
    message: str
    code: str = ""  # what kind of error, for code that acts on it (CLOCK_AHEAD, LOCK_LOST); the report gives the message


@dataclass(frozen=True)
class ExportResult:
    """One export and dataset: every reported window and how far back it restores."""

    name: str
    destination: str
    dataset_id: str
    incremental: bool
    windows: tuple[WindowResult, ...]
    restore: RestorePoint
    as_of: datetime
    active: bool = True  # the schedule has not ended
    warnings: tuple[Finding, ...] = ()  # about the export as a whole (ending soon, flow disabled …)

    @property
    def rpo_seconds(self) -> int | None:
        until = self.restore.restorable_until
        return None if until is None else int((self.as_of - until).total_seconds())

    @cached_property
    def windows_json(self) -> tuple[dict[str, Any], ...]:
        """Each window as the JSON report has it: built once, though the catalog and the output both serialize the report."""
        return tuple(window_json(w) for w in self.windows)


@dataclass(frozen=True)
class Assurance:
    """How much of the estate has been checked how deeply."""

    files: int = 0
    deep_verified: int = 0
    oldest_deep_check: datetime | None = None
    read_files: int = 0
    reused_files: int = 0
    bytes_read: int = 0


@dataclass(frozen=True)
class AuditReport:
    as_of: datetime
    exports: tuple[ExportResult, ...]
    unexpected: tuple[Unexpected, ...] = ()
    errors: tuple[AuditError, ...] = ()
    assurance: Assurance = field(default_factory=Assurance)
    audit_id: int | None = None
    live: frozenset[str] = frozenset()  # the exports whose present state this audit changed (empty: historical, or not recorded)
    live_datasets: frozenset[tuple[str, str]] = frozenset()  # (export, dataset) pairs it was live for
    method: Mapping[str, Any] = field(default_factory=dict)  # how thoroughly: deep, sample rotation (evidence)
    fingerprint: str | None = None  # of the configuration, secrets excluded (auditor.evidence.fingerprint)

    def counts(self) -> Counter[Status]:
        return Counter(w.status for e in self.exports for w in e.windows)

    @property
    def verdict(self) -> tuple[str, int]:
        return overall_status(self.counts(), errors=len(self.errors))

    @property
    def status(self) -> str:
        return self.verdict[0]

    @property
    def exit_code(self) -> int:
        return self.verdict[1]

    def to_json(self) -> dict[str, Any]:
        counts = self.counts()
        from auditor import __version__

        return {
            "as_of": iso(self.as_of),
            "status": self.status,
            "auditor_version": __version__,
            "config_fingerprint": self.fingerprint,
            "method": dict(self.method),
            "summary": {status.value: counts.get(status, 0) for status in Status},
            "exports": [_export_json(e) for e in self.exports],
            "unexpected": [{"path": u.path, "reason": u.reason} for u in self.unexpected],
            "errors": [{"destination": e.destination, "message": e.message} for e in self.errors],
            "assurance": {
                "files": self.assurance.files,
                "deep_verified": self.assurance.deep_verified,
                "deep_verified_share": round(self.assurance.deep_verified / self.assurance.files, 4) if self.assurance.files else None,
                "never_deep_checked": self.assurance.files - self.assurance.deep_verified,
                "oldest_deep_check": iso(self.assurance.oldest_deep_check),
                "files_read": self.assurance.read_files,
                "files_unchanged": self.assurance.reused_files,
                "bytes_read": self.assurance.bytes_read,
            },
        }


def _export_json(export: ExportResult) -> dict[str, Any]:
    broken = export.restore.broken_at
    return {
        "name": export.name,
        "destination": export.destination,
        "dataset_id": export.dataset_id,
        "restorable_until": iso(export.restore.restorable_until),
        "rpo_seconds": export.rpo_seconds,
        "chain_broken_at": iso(broken.window.scheduled) if broken else None,
        "warnings": [w.as_dict() for w in export.warnings],
        "windows": list(export.windows_json),
    }


def window_json(result: WindowResult) -> dict[str, Any]:
    return {
        "scheduled": iso(result.window.scheduled),
        "deadline": iso(result.window.deadline),
        "status": result.status.value,
        "folder": result.folder.url if result.folder and result.folder.landed else None,
        "files": result.files,
        "bytes": result.bytes,
        "records": result.records,
        "findings": [f.as_dict() for f in result.findings],
    }


def hours_minutes(seconds: int | None) -> str:
    """An RPO as people read it in tables: 57h00m ("-" for none)."""
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


def iso(value: datetime | None) -> str | None:
    """2026-11-30T12:00:00Z: the wall-clock fields of a UTC time, to the second."""
    return None if value is None else value.isoformat(timespec="seconds")[:19] + "Z"
