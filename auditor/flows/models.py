"""Flow Service responses as frozen values (parsed leniently, reported strictly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL = frozenset({"success", "failed"})


def _ms(value: Any) -> datetime | None:
    """Epoch milliseconds as a time; None for anything else, a time no calendar holds included (1e20)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    """An object of the answer, or an empty one where the answer has something else (a string, a list, null)."""
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: Any) -> int | None:
    """A count as the API gives it (an integer); None for anything else ("12x", 1.5, true)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ids(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _items(value) if isinstance(v, str))


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
            flow_spec_id=str(_mapping(item.get("flowSpec")).get("id", "")),
            source_connection_ids=_ids(item.get("sourceConnectionIds")),
            target_connection_ids=_ids(item.get("targetConnectionIds")),
            schedule_params=dict(_mapping(item.get("scheduleParams"))),
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
            spec_id=str(_mapping(item.get("connectionSpec")).get("id", "")),
            params=dict(_mapping(item.get("params"))),
            base_connection_id=base if isinstance(base := item.get("baseConnectionId"), str) else None,
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
        metrics = _mapping(item.get("metrics"))
        duration = _mapping(metrics.get("durationSummary"))
        records = _mapping(metrics.get("recordSummary"))
        files = _mapping(metrics.get("fileSummary"))
        status = _mapping(metrics.get("statusSummary"))
        per_dataset = {}
        for summary in _items(records.get("sourceSummaries")):
            if isinstance(summary, Mapping) and summary.get("id"):
                read, skipped = _count(summary.get("inputRecordCount") or 0), _count(summary.get("skippedRecordCount") or 0)
                if read is not None and skipped is not None:  # a count that is not one says nothing (not zero: zero is "empty")
                    per_dataset[str(summary["id"])] = read - skipped
        output = records.get("outputRecordCount", records.get("inputRecordCount"))
        errors = tuple((str(e.get("code", "")), str(e.get("message", ""))) for e in _items(status.get("errors")) if isinstance(e, Mapping))
        return cls(
            id=str(item.get("id", "")),
            flow_id=str(item.get("flowId", "")),
            status=str(status.get("status", "")).lower(),
            created_at=_ms(item.get("createdAt")),
            started_at=_ms(duration.get("startedAtUTC")),
            completed_at=_ms(duration.get("completedAtUTC") or duration.get("stoppedAtUTC")),
            records=_count(output),
            files=_count(files.get("outputFileCount")),
            dataset_records=per_dataset,
            errors=errors,
        )
