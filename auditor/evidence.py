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
from datetime import UTC, datetime
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
    report_state: str = "present"  # "missing": a digest but no stored report; "unreadable": stored bytes that do not decompress
    bytes_read: int | None = None  # what the record says beside its digested fields, checked against its report
    summary: Mapping[str, Any] | None = None

    def digest(self) -> str:
        fields = {
            "id": self.id,
            "started_at": iso_time(self.started_at),
            "finished_at": iso_time(self.finished_at),
            "as_of": iso_time(self.as_of),
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


@dataclass(frozen=True)
class ChainHead:
    """The newest record as it was written: kept apart from the records, so that deleting the newest is seen."""

    audit_id: int
    record_sha256: str


def check_chain(records: Sequence[ChainedRecord], head: ChainHead | None = None, *, after: str = GENESIS, head_kept: bool = False) -> list[ChainProblem]:
    """Walk the records in id order; every place where the chain does not hold, named (and, with the chain's `head`,
    newest records deleted). A record's undigested fields (bytes read, summary) are held to its stored report.
    `after`: the digest the first record names as its previous (an excerpt of the chain starts inside it).
    `head_kept`: the records come from a catalog that keeps a head (every catalog since migration 0014 that holds a
    digested record): a head missing there was deleted, with the newest records it would have named."""
    problems: list[ChainProblem] = []
    previous = after
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
        if record.report_state == "missing" and record.report_sha256 is not None:
            problems.append(ChainProblem(record.id, f"its stored report was removed (the record names {_short(record.report_sha256)})"))
        elif record.report_state == "unreadable":
            problems.append(ChainProblem(record.id, "its stored report was changed: the stored bytes are not the compressed report that was written"))
        elif record.report_body is not None and record.report_sha256 is not None and sha256(record.report_body) != record.report_sha256:
            problems.append(ChainProblem(record.id, f"its stored report was changed (recorded {_short(record.report_sha256)}, stored bytes give {_short(sha256(record.report_body))})"))
        elif record.report_body is not None:
            problems += [ChainProblem(record.id, m) for m in _beside_the_report(record)]
        previous, previous_id = record.record_sha256, record.id
    if head is None and head_kept and any(r.record_sha256 is not None for r in records):
        problems.append(ChainProblem(previous_id or 0, f"the chain's head is missing (the newest record here is audit {previous_id}): it was deleted, and newest records with it may be"))
    if head is not None and (previous_id, previous) != (head.audit_id, head.record_sha256):
        newest = f"the newest record is audit {previous_id}" if previous_id is not None else "there is no record"
        problems.append(ChainProblem(head.audit_id, f"the chain's head is audit {head.audit_id} ({_short(head.record_sha256)}), but {newest}: the newest records were deleted or changed"))
    return problems


def _beside_the_report(record: ChainedRecord) -> list[str]:
    """Where a record's fields outside its digest (bytes read, window counts) disagree with its stored report."""
    assert record.report_body is not None
    try:
        report = json.loads(record.report_body)
    except ValueError:
        return ["its stored report is not JSON"]
    found = []
    recorded = (report.get("assurance") or {}).get("bytes_read") if isinstance(report, dict) else None
    if record.bytes_read is not None and isinstance(recorded, int) and record.bytes_read != recorded:
        found.append(f"the record says {record.bytes_read} bytes were read, its report {recorded}: the record was changed")
    counts = (record.summary or {}).get("counts")
    totals = report.get("summary") if isinstance(report, dict) else None
    if isinstance(counts, Mapping) and isinstance(totals, Mapping) and any(counts.get(k, 0) != v for k, v in totals.items() if isinstance(v, int)):
        found.append(f"the record's window counts {dict(counts)} differ from its report's: the record was changed")
    summary = record.summary or {}
    unexpected = report.get("unexpected") if isinstance(report, dict) else None
    if "unexpected" in summary and isinstance(unexpected, list) and summary.get("unexpected") != len(unexpected):
        found.append(f"the record says {summary.get('unexpected')} unexpected objects, its report {len(unexpected)}: the record was changed")
    errors = report.get("errors") if isinstance(report, dict) else None
    if "errors" in summary and isinstance(errors, list):
        def pairs(items: Any) -> list[tuple[Any, Any]]:
            return [(e.get("destination"), e.get("message")) if isinstance(e, Mapping) else (None, e) for e in (items if isinstance(items, list) else [items])]

        if pairs(summary.get("errors")) != pairs(errors):
            found.append(f"the record's errors ({len(pairs(summary.get('errors')))}) differ from its report's ({len(errors)}): the record was changed")
    return found


def record_json(record: ChainedRecord) -> dict[str, Any]:
    """A record as an evidence export holds it: every field its digest covers, as the digest reads them, and the digest."""
    return {
        "id": record.id, "started_at": iso_time(record.started_at), "finished_at": iso_time(record.finished_at), "as_of": iso_time(record.as_of), "status": record.status,
        "deep": bool(record.deep), "scope": list(record.scope), "live_exports": list(record.live_exports), "report_sha256": record.report_sha256,
        "prev_sha256": record.prev_sha256, "record_sha256": record.record_sha256,
    }


def record_from_json(value: Mapping[str, Any], report_body: bytes | None) -> ChainedRecord:
    """A record from an evidence export (record_json), with the report the archive holds for it (None: not in it)."""

    as_of = parse_time(value.get("as_of"))
    if as_of is None:
        raise ValueError("a chain record without its as-of time")
    return ChainedRecord(
        int(value["id"]), parse_time(value.get("started_at")), parse_time(value.get("finished_at")), as_of, value.get("status"), bool(value.get("deep")),
        tuple(value.get("scope") or ()), tuple(value.get("live_exports") or ()), value.get("report_sha256"), value.get("prev_sha256"), value.get("record_sha256"),
        report_body,
    )


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


def iso_time(value: datetime | None) -> str | None:
    """A time as the digests and evidence exports write it (UTC, microseconds)."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime | None:
    """A time `iso_time` wrote (None for None); ValueError for any other text."""
    return None if text is None else datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _short(digest: str | None) -> str:
    return (digest or "nothing")[:16]
