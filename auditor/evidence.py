"""Tamper evidence (pure): the digest of an audit record and the hash chain that links them.

Each audit record carries the SHA-256 of its report (the canonical JSON the audit produced) and of
the previous record; the record's own digest covers its fields and both. Changing a report, a
record, or deleting a record from the middle breaks the chain at a place `check_chain` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


def canonical(report: Mapping[str, Any]) -> bytes:
    """The bytes a report's digest is taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ChainedRecord:
    """The fields of an audit record that its digest covers."""

    id: int
    started_at: datetime | None
    finished_at: datetime | None
    as_of: datetime
    status: str | None
    deep: bool
    scope: tuple[str, ...]
    live_exports: tuple[str, ...]
    report_sha256: str | None
    prev_sha256: str | None
    record_sha256: str | None = None
    report_body: bytes | None = None  # the stored report, when it is there to check

    def digest(self) -> str:
        fields = {
            "id": self.id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "as_of": _iso(self.as_of),
            "status": self.status,
            "deep": bool(self.deep),
            "scope": list(self.scope),
            "live_exports": list(self.live_exports),
            "report_sha256": self.report_sha256,
            "prev_sha256": self.prev_sha256,
        }
        return sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class ChainProblem:
    audit_id: int
    message: str


def check_chain(records: Sequence[ChainedRecord]) -> list[ChainProblem]:
    """Walk the records in id order; every place where the chain does not hold, named."""
    problems: list[ChainProblem] = []
    previous = GENESIS
    previous_id: int | None = None
    for record in sorted(records, key=lambda r: r.id):
        if record.record_sha256 is None:
            problems.append(ChainProblem(record.id, "the record carries no digest (written before the chain, or its digest was removed)"))
            previous, previous_id = record.digest(), record.id
            continue
        if record.prev_sha256 != previous:
            where = f"audit {previous_id}" if previous_id is not None else "the start of the chain"
            problems.append(ChainProblem(record.id, f"names {_short(record.prev_sha256)} as the previous record, but {where} has {_short(previous)}: a record between them was deleted or changed"))
        computed = record.digest()
        if computed != record.record_sha256:
            problems.append(ChainProblem(record.id, f"the record was changed after it was written (recorded digest {_short(record.record_sha256)}, its fields give {_short(computed)})"))
        if record.report_body is not None and record.report_sha256 is not None and sha256(record.report_body) != record.report_sha256:
            problems.append(ChainProblem(record.id, f"its stored report was changed (recorded {_short(record.report_sha256)}, stored bytes give {_short(sha256(record.report_body))})"))
        previous, previous_id = record.record_sha256, record.id
    return problems


def first_difference(a: bytes, b: bytes) -> tuple[int, int, int]:
    """(byte offset, line, column) of the first difference between two byte strings."""
    limit = min(len(a), len(b))
    offset = next((i for i in range(limit) if a[i] != b[i]), limit)
    line = a.count(b"\n", 0, offset) + 1
    column = offset - (a.rfind(b"\n", 0, offset) + 1) + 1
    return offset, line, column


def fingerprint(settings: Mapping[str, Any], secrets: Iterable[str] = ()) -> str:
    """A digest of the configuration that identifies it without revealing it (secret values replaced)."""
    hidden = {s for s in secrets if s}

    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        if isinstance(value, str) and any(s in value for s in hidden):
            return "<secret>"
        return value

    return sha256(json.dumps(scrub(settings), sort_keys=True, default=str, separators=(",", ":")).encode())


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(digest: str | None) -> str:
    return (digest or "nothing")[:16]
