"""What the catalog knows, as frozen values with aware UTC datetimes (the catalog's read contract).

Pure: the catalog adapter returns these; the CLI, the service, metrics and alerts consume them.
`to_json` turns any of them into JSON-ready data (datetimes as ISO-8601 UTC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditor.chain import rpo_seconds


@dataclass(frozen=True)
class DatasetState:
    """One export and dataset as its latest live audit left it."""

    export: str
    destination: str
    dataset_id: str
    incremental: bool
    restorable_until: datetime | None
    broken_at: datetime | None
    as_of: datetime | None  # the as-of time of the live audit these values come from
    audit_id: int | None
    active: bool
    windows: Mapping[str, int] = field(default_factory=dict)  # status -> count

    def rpo_seconds(self, now: datetime) -> int | None:
        return rpo_seconds(now, self.restorable_until)


@dataclass(frozen=True)
class DestinationState:
    """One destination and its last live full sweep (a listing of everything in it)."""

    name: str
    url: str  # redacted
    last_full_sweep: datetime | None  # the as-of time of that audit
    last_full_sweep_audit_id: int | None


@dataclass(frozen=True)
class WindowState:
    export: str
    dataset_id: str
    scheduled: datetime
    status: str
    folder_key: str | None
    files: int
    bytes: int
    records: int | None
    status_since: datetime
    audit_id: int


@dataclass(frozen=True)
class FileState:
    key: str
    url: str
    size: int
    etag: str | None
    records: int | None
    doubtful: bool = False  # its last check found an error in its bytes, or it has changed since (listed, not checked)
    role: str = "data"  # data | manifest


@dataclass(frozen=True)
class FindingState:
    code: str
    severity: str
    path: str
    message: str


@dataclass(frozen=True)
class HistoryEntry:
    """A window's status as one audit saw it (`at` is that audit's as-of time)."""

    at: datetime
    status: str
    audit_id: int
    live: bool


@dataclass(frozen=True)
class AuditRecord:
    id: int
    started_at: datetime
    finished_at: datetime | None
    as_of: datetime
    status: str | None
    deep: bool
    bytes_read: int
    scope: tuple[str, ...]
    live_exports: tuple[str, ...]
    summary: Mapping[str, Any]
    report_sha256: str | None

    @property
    def historical(self) -> bool:
        return not self.live_exports


@dataclass(frozen=True)
class Episode:
    id: int
    key: str
    rule: str
    export: str
    dataset_id: str
    scheduled: datetime | None
    message: str
    opened_at: datetime
    closed_at: datetime | None
    seen_at: datetime | None = None  # the last live audit that found its condition holding


@dataclass(frozen=True)
class Notice:
    id: int
    episode_id: int
    key: str
    rule: str
    export: str
    dataset_id: str
    scheduled: datetime | None
    channel: str
    kind: str  # alert | recovery
    message: str
    payload: Mapping[str, Any]
    created_at: datetime
    state: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None


def to_json(value: Any) -> Any:
    """A catalog value (or a list or dict of them) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value
