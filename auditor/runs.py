"""Join what the exporter says (dataflow runs) to what landed (windows).

Pure: runs and windows in, windows with adjusted statuses and run evidence out. This is how the
auditor tells "no new data" (`empty`) from "the exporter never ran", and catches a run that
reports success while its files never arrived (a silent loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from auditor.findings import Finding, error, warning
from auditor.flows.models import Run
from auditor.reconcile import Status, WindowResult

LANDED = frozenset({Status.OK, Status.LATE, Status.INVALID})


def runs_for_window(result: WindowResult, runs: Sequence[Run], step: timedelta) -> list[Run]:
    """The runs that belong to a window: named by its manifests, else started within its slot."""
    named = result.run_ids
    by_name = [r for r in runs if r.id in named]
    if by_name:
        return by_name
    start = result.window.scheduled
    return [r for r in runs if r.when is not None and start <= r.when < start + step]


def join_runs(results: Sequence[WindowResult], runs: Sequence[Run], *, step: timedelta, dataset: str, single_dataset: bool, now: datetime) -> list[WindowResult]:
    """Each window with its run evidence: empty, silent loss, failed run, orphan export, duplicates.

    Runs that started after `now` are not known yet, as files modified after it are not there yet.
    """
    runs = [r for r in runs if r.when is None or r.when <= now]
    joined = []
    for result in results:
        if result.status is Status.UNKNOWN or result.carried:  # a carried window keeps the run evidence it was recorded with
            joined.append(result)
            continue
        mine = sorted(runs_for_window(result, runs, step), key=lambda r: r.when or datetime.min.replace(tzinfo=result.window.scheduled.tzinfo))
        joined.append(_judge(result, mine, dataset=dataset, single_dataset=single_dataset))
    return joined


def _judge(result: WindowResult, runs: list[Run], *, dataset: str, single_dataset: bool) -> WindowResult:
    url = result.folder.url if result.folder else ""
    status = result.status
    extra: list[Finding] = []
    if not runs:
        if status in LANDED:
            extra.append(warning("run.orphan_export", url, "files landed, but no dataflow run is recorded for this slot"))
        elif status is Status.MISSING:
            extra.append(error("run.none", url, "no dataflow run is recorded for this slot: the export never ran"))
        return _with(result, status, extra)
    terminal = [r for r in runs if r.terminal]
    run = terminal[-1] if terminal else runs[-1]
    if len([r for r in terminal if r.status == "success"]) > 1:
        extra.append(warning("run.duplicate", url, f"{len(terminal)} runs for one slot: {', '.join(r.id for r in terminal)}"))
    if run.status == "failed":
        reason = "; ".join(f"{code}: {message}" for code, message in run.errors) or "no reason given"
        finding = error("run.failed", url, f"dataflow run {run.id} failed: {reason}")
        if status is Status.PENDING:
            return _with(result, status, [warning(finding.code, url, finding.message), *extra])
        return _with(result, Status.INVALID if status in LANDED else status, [finding, *extra])
    if run.status != "success":
        return _with(result, status, [warning("run.unfinished", url, f"dataflow run {run.id} is {run.status or 'in an unknown state'}"), *extra])
    records = run.dataset_records.get(dataset, run.records if single_dataset else None)
    if status in (Status.MISSING, Status.PENDING) and records == 0:
        return _with(replace(result, findings=()), Status.EMPTY, extra)  # the run succeeded with no new data
    if status is Status.MISSING:
        extra.append(error("run.silent_loss", url, f"dataflow run {run.id} reported success ({_counts(run, records)}) but nothing landed"))
        return _with(result, status, extra)
    if status in (Status.OK, Status.LATE):
        losses = []
        if single_dataset and run.files is not None and result.files < run.files:
            losses.append(f"{run.files} files reported, {result.files} landed")
        if records is not None and result.records is not None and result.records != records:
            losses.append(f"{records} records reported, {result.records} landed")
        if losses:
            extra.append(error("run.silent_loss", url, f"dataflow run {run.id} reported success, but {'; '.join(losses)}"))
            return _with(result, Status.INVALID, extra)
    return _with(result, status, extra)


def _counts(run: Run, records: int | None) -> str:
    parts = [f"{records} records" if records is not None else "", f"{run.files} files" if run.files is not None else ""]
    return ", ".join(p for p in parts if p) or "no counts"


def _with(result: WindowResult, status: Status, extra: Sequence[Finding]) -> WindowResult:
    if status is result.status and not extra:
        return result
    return replace(result, status=status, findings=(*result.findings, *extra))
