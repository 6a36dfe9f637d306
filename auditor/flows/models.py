"""Flow Service responses as frozen values (parsed leniently, reported strictly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL = frozenset({"success", "failed"})


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    state: str
    etag: str
    flow_spec_id: str
    source_connection_ids: tuple[str, ...]
    target_connection_ids: tuple[str, ...]
    schedule_params: Mapping[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Flow:
        return cls(
            id=str(item.get("id", "")),
            name=str(item.get("name", "")),
            state=str(item.get("state", "")).lower(),
            etag=str(item.get("etag", "")),
            flow_spec_id=str((item.get("flowSpec") or {}).get("id", "")),
            source_connection_ids=tuple(item.get("sourceConnectionIds") or ()),
            target_connection_ids=tuple(item.get("targetConnectionIds") or ()),
            schedule_params=dict(item.get("scheduleParams") or {}),
            raw=dict(item),
        )


@dataclass(frozen=True)
class Connection:
    """A source, base or target connection."""

    id: str
    etag: str
    spec_id: str
    params: Mapping[str, Any]
    base_connection_id: str | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Connection:
        return cls(
            id=str(item.get("id", "")),
            etag=str(item.get("etag", "")),
            spec_id=str((item.get("connectionSpec") or {}).get("id", "")),
            params=dict(item.get("params") or {}),
            base_connection_id=item.get("baseConnectionId"),
        )


@dataclass(frozen=True)
class Run:
    """One dataflow run: what the exporter says happened (statuses compared case-insensitively)."""

    id: str
    flow_id: str
    status: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    records: int | None
    files: int | None
    dataset_records: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def when(self) -> datetime | None:
        return self.started_at or self.created_at

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Run:
        metrics = item.get("metrics") or {}
        duration = metrics.get("durationSummary") or {}
        records = metrics.get("recordSummary") or {}
        files = metrics.get("fileSummary") or {}
        status = metrics.get("statusSummary") or {}
        per_dataset = {
            str(s.get("id")): int(s.get("inputRecordCount", 0) or 0) - int(s.get("skippedRecordCount", 0) or 0)
            for s in records.get("sourceSummaries") or []
            if isinstance(s, Mapping) and s.get("id")
        }
        output = records.get("outputRecordCount", records.get("inputRecordCount"))
        errors = tuple((str(e.get("code", "")), str(e.get("message", ""))) for e in status.get("errors") or [] if isinstance(e, Mapping))
        return cls(
            id=str(item.get("id", "")),
            flow_id=str(item.get("flowId", "")),
            status=str(status.get("status", "")).lower(),
            created_at=_ms(item.get("createdAt")),
            started_at=_ms(duration.get("startedAtUTC")),
            completed_at=_ms(duration.get("completedAtUTC") or duration.get("stoppedAtUTC")),
            records=int(output) if isinstance(output, int) else None,
            files=int(files["outputFileCount"]) if isinstance(files.get("outputFileCount"), int) else None,
            dataset_records=per_dataset,
            errors=errors,
        )
