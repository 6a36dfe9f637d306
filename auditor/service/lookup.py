"""Restore lookups from the catalog alone: fast, and possible while storage is slow or away."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException

from auditor.config import Settings
from auditor.report import iso
from auditor.schedule import floor_minute

GOOD = {"ok", "late", "empty"}


def restore_from_catalog(settings: Settings, catalog: Any, dataset: str, at: datetime) -> dict[str, Any]:
    """The chain for `dataset` as of `at` from the last recorded window statuses and files."""
    exports = [e for e in settings.exports if dataset in e.datasets]
    if not exports:
        raise HTTPException(404, f"no configured export carries dataset {dataset!r}")
    export = exports[0]
    rows = [r for r in catalog.window_rows(export.name, None, at) if r["dataset_id"] == dataset and floor_minute(_parse(r["scheduled"])) <= floor_minute(at)]
    if not export.schedule.incremental:
        rows = rows[-1:]
    good: list[dict[str, Any]] = []
    broken = None
    for row in rows:
        if row["status"] not in GOOD:
            broken = {"scheduled": row["scheduled"], "status": row["status"], "reason": f"window {row['scheduled']} is {row['status']}"}
            break
        good.append(row)
    files = catalog.folder_files(export.destination, [r["folder_key"] for r in good if r["folder_key"]])
    chain = [
        {"scheduled": r["scheduled"], "status": r["status"], "files": [{"key": f["key"], "size": f["size"], "etag": f["etag"]} for f in files.get(r["folder_key"] or "", [])]}
        for r in good
    ]
    if not rows:
        broken = {"scheduled": None, "status": None, "reason": f"no audited window of {dataset} at or before {iso(at)}"}
    return {
        "dataset_id": dataset,
        "export": export.name,
        "at": iso(at),
        "complete": broken is None,
        "restorable_until": chain[-1]["scheduled"] if chain else None,
        "broken": broken,
        "chain": chain,
        "source": "catalog",
    }


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
