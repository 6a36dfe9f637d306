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
    chain, broken = [], None
    for row in rows:
        if row["status"] not in GOOD:
            broken = {"scheduled": row["scheduled"], "status": row["status"], "reason": f"window {row['scheduled']} is {row['status']}"}
            break
        files = catalog.folder_files(export.destination, row["folder_key"]) if row["folder_key"] else []
        chain.append({"scheduled": row["scheduled"], "status": row["status"], "files": [{"key": f["key"], "size": f["size"], "etag": f["etag"]} for f in files]})
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
