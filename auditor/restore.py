"""Restore plans: exactly which files rebuild dataset D as of time T, in apply order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auditor.errors import StorageError
from auditor.reconcile import GOOD, Status, WindowResult
from auditor.report import ExportResult, iso
from auditor.schedule import floor_minute
from auditor.storage.base import Store, redact, scrub


@dataclass(frozen=True)
class RestorePlan:
    """The chain for one dataset as of `at`: its good steps, and where it breaks if it does."""

    export: str
    dataset_id: str
    at: datetime
    incremental: bool
    steps: tuple[WindowResult, ...]
    broken_at: WindowResult | None
    reason: str | None

    @property
    def complete(self) -> bool:
        return self.reason is None

    @property
    def restorable_until(self) -> datetime | None:
        return self.steps[-1].window.scheduled if self.steps else None

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "export": self.export,
            "at": iso(self.at),
            "mode": "full plus incrementals" if self.incremental else "one full export",
            "complete": self.complete,
            "restorable_until": iso(self.restorable_until),
            "broken": None
            if self.complete
            else {"scheduled": iso(self.broken_at.window.scheduled) if self.broken_at else None, "status": self.broken_at.status.value if self.broken_at else None, "reason": self.reason},
            "chain": [
                {
                    "scheduled": iso(step.window.scheduled),
                    "status": step.status.value,
                    "folder": step.folder.url if step.folder else None,
                    "files": [{"url": f.url, "size": f.size, "etag": f.etag, "records": f.records} for f in (step.folder.data if step.folder else ())],
                }
                for step in self.steps
            ],
        }


def plan_restore(result: ExportResult, at: datetime) -> RestorePlan:
    """Walk the windows of one export and dataset up to `at` and say what to restore."""
    limit = floor_minute(at)
    windows = sorted((w for w in result.windows if floor_minute(w.window.scheduled) <= limit), key=lambda w: w.window.scheduled)
    if not windows:
        return RestorePlan(result.name, result.dataset_id, at, result.incremental, (), None, f"no export of {result.dataset_id} is scheduled at or before {iso(at)}")
    if not result.incremental:
        window = windows[-1]
        if window.status in GOOD:
            return RestorePlan(result.name, result.dataset_id, at, False, (window,), None, None)
        return RestorePlan(result.name, result.dataset_id, at, False, (), window, _why(window))
    steps: list[WindowResult] = []
    for window in windows:
        if window.status not in GOOD:
            return RestorePlan(result.name, result.dataset_id, at, True, tuple(steps), window, _why(window))
        steps.append(window)
    return RestorePlan(result.name, result.dataset_id, at, True, tuple(steps), None, None)


def _why(window: WindowResult) -> str:
    errors = [f for f in window.findings if f.is_error] or list(window.findings)
    detail = f": {errors[0].code} {errors[0].message}" if errors else ""
    if window.status is Status.PENDING:
        detail = ": still inside its grace period, not landed completely yet"
    elif window.status is Status.UNKNOWN:
        detail = ": the destination could not be read"
    return f"window {iso(window.window.scheduled)} is {window.status.value}{detail}"


def download(plan: RestorePlan, store: Store, target: str, *, options: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Copy every file of the plan to `target` (any fsspec URL), keeping folder names; sizes verified.

    Writes only below `target`; raises StorageError when a copy fails or comes out the wrong size.
    """
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(target, **(options or {}))
    except Exception as e:
        raise StorageError(f"cannot open restore target {redact(target)}: {scrub(str(e))}", url=redact(target)) from e
    files = [f for step in plan.steps if step.folder for f in step.folder.data]
    written: list[str] = []
    for done, item in enumerate(files, 1):
        destination = f"{str(root).rstrip('/')}/{item.key}"
        try:
            fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            with store.open(item.key) as source, fs.open(destination, "wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
            size = fs.size(destination)
        except StorageError:
            raise
        except Exception as e:
            raise StorageError(f"cannot copy {item.url} to {redact(target)}: {scrub(str(e))}", url=redact(target)) from e
        if size != item.size:
            raise StorageError(f"copy of {item.url} has {size} bytes, expected {item.size}", url=redact(target))
        written.append(destination)
        if progress:
            progress(done, len(files))
    return written
