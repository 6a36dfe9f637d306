"""Which alerts the latest audit calls for (pure): one key per rule, export, dataset and window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from auditor.config import AlertRuleSettings
from auditor.reconcile import GOOD, Status
from auditor.report import AuditReport, ExportResult, iso


@dataclass(frozen=True)
class Condition:
    """A condition that holds now and deserves one alert (per channel)."""

    key: str
    rule: str
    export: str
    dataset_id: str
    scheduled: datetime | None
    message: str
    payload: Mapping[str, Any]


def conditions(report: AuditReport, rules: Sequence[AlertRuleSettings], *, unknown_since: Mapping[tuple[str, str, datetime], datetime]) -> list[Condition]:
    """Every rule condition that holds in this report."""
    found: list[Condition] = []
    for rule in rules:
        for export in report.exports:
            if rule.exports and export.name not in rule.exports:
                continue
            if rule.when in ("missing", "invalid", "unknown"):
                for result in export.windows:
                    when = result.window.scheduled
                    hit = result.status.value == rule.when
                    if rule.when == "unknown" and hit:
                        since = unknown_since.get((export.name, export.dataset_id, when), report.as_of)
                        hit = report.as_of - since >= rule.unknown_for
                    if hit:
                        evidence = "; ".join(f"{f.code}: {f.message}" for f in result.findings)[:500]
                        message = f"{export.name} / {export.dataset_id}: the export of {iso(when)} is {result.status.value}" + (f" ({evidence})" if evidence else "")
                        found.append(_condition(rule.name, export.name, export.dataset_id, when, message, {"status": result.status.value, "findings": [f.as_dict() for f in result.findings]}))
            elif rule.when == "rpo" and any(w.status is Status.UNKNOWN for w in export.windows):
                continue  # an export that could not be read says nothing new about its restore point
            elif rule.when == "rpo" and export.active and _rpo_above(export, rule.rpo_above.total_seconds()):
                if export.rpo_seconds is None:
                    message = f"{export.name} / {export.dataset_id}: nothing is restorable (the chain is broken at its first window)"
                else:
                    message = f"{export.name} / {export.dataset_id}: restorable only until {iso(export.restore.restorable_until)} (RPO {export.rpo_seconds // 3600} h)"
                found.append(_condition(rule.name, export.name, export.dataset_id, None, message, {"rpo_seconds": export.rpo_seconds}))
            elif rule.when == "ending":
                for warning in export.warnings:
                    if warning.code == "export.ending":
                        found.append(_condition(rule.name, export.name, export.dataset_id, None, f"{export.name}: {warning.message}", {"warning": warning.as_dict()}))
    return found


def recovered(report: AuditReport, rule: str, export: str, dataset: str, scheduled: datetime | None, *, when: str = "missing") -> str | None:
    """If the condition of an open episode no longer holds in this report, the recovery notice; else None.

    A missing or invalid window recovers when it is good; an unknown one when it can be read again;
    an RPO or ending condition when it is gone (an export that could not be read says nothing about RPO).
    The caller only asks about episodes whose condition no current one matches.
    """
    for result in report.exports:
        if result.name != export or result.dataset_id != dataset:
            continue
        if scheduled is None:
            if any(w.status is Status.UNKNOWN for w in result.windows):
                return None
            return f"{export} / {dataset}: {rule} cleared"
        for window in result.windows:
            if window.window.scheduled != scheduled:
                continue
            if window.status in GOOD:
                how = "landed late" if window.status is Status.LATE else ("had no new data" if window.status is Status.EMPTY else "is ok now")
                return f"{export} / {dataset}: the export of {iso(scheduled)} {how}"
            if when == "unknown" and window.status is not Status.UNKNOWN:
                return f"{export} / {dataset}: the export of {iso(scheduled)} can be read again ({window.status.value})"
            return None
        return f"{export} / {dataset}: the window of {iso(scheduled)} is no longer expected"
    return None


def _rpo_above(export: ExportResult, limit: float) -> bool:
    """RPO over the limit; with nothing restorable once a window has settled, RPO is unbounded."""
    if export.rpo_seconds is not None:
        return export.rpo_seconds > limit
    settled = [w for w in export.windows if w.status is not Status.PENDING]
    return bool(settled) and export.as_of - min(w.window.scheduled for w in settled) > timedelta(seconds=limit)


def _condition(rule: str, export: str, dataset: str, scheduled: datetime | None, message: str, extra: Mapping[str, Any]) -> Condition:
    key = f"{rule}|{export}|{dataset}|{iso(scheduled) if scheduled else '-'}"
    payload = {"title": f"export-auditor: {rule}", "rule": rule, "export": export, "dataset_id": dataset, "scheduled": iso(scheduled), **extra}
    return Condition(key, rule, export, dataset, scheduled, message, payload)
