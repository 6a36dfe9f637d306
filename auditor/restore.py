"""Restore plans from the catalog: exactly which files rebuild dataset D as of time T, in apply order.

A lookup reads the catalog only (it works while storage is slow or away) and says which audit it
answers from; `auditor restore --refresh` audits the export first. The chain is walked by
auditor.chain, the one implementation the audit, the API, the dashboard and alerts share.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from auditor.chain import GOOD_STATUSES, walk
from auditor.config import Settings
from auditor.errors import AuditorError, StorageError
from auditor.layout import unsafe_key
from auditor.ledger import AuditRecord, FileState, FindingState, WindowState
from auditor.report import iso
from auditor.schedule import floor_minute
from auditor.storage.base import Store, redact, scrub
from auditor.validate import DATA_SUFFIXES, file_format


class RestoreCatalog(Protocol):
    def reading(self) -> AbstractContextManager[RestoreCatalog]: ...

    def answering_audit(self, export: str, dataset: str) -> AuditRecord | None: ...

    def restore_windows(self, export: str, dataset: str, end: datetime) -> list[tuple[WindowState, str | None]]: ...

    def folder_files(self, destination: str, folder_keys: Sequence[str], *, manifests: bool = False) -> dict[str, list[FileState]]: ...

    def manifest_documents(self, destination: str, keys: Sequence[str]) -> dict[str, tuple[datetime | None, Any]]: ...

    def window_findings(self, export: str, dataset: str, scheduled: datetime) -> list[FindingState]: ...


class RestoreLookupError(AuditorError):
    """The lookup cannot be answered as asked: `candidates` lists the exports to choose from, if several."""

    def __init__(self, message: str, *, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


def choose_export(settings: Settings, dataset: str, export: str | None, *, option: str = "--export") -> str:
    """The one export to restore `dataset` from; several candidates without a choice is an error naming them."""
    candidates = tuple(e.name for e in settings.exports if dataset in e.datasets and (export is None or e.name == export))
    if not candidates:
        raise RestoreLookupError(f"no configured export carries dataset {dataset!r}" + (f" under the name {export!r}" if export else ""))
    if len(candidates) > 1:
        raise RestoreLookupError(f"dataset {dataset!r} is exported by {', '.join(candidates)}: choose one with {option}", candidates=candidates)
    return candidates[0]


@dataclass(frozen=True)
class Run:
    """One run of an export, of several AEP wrote into a window's folder: its manifest names its files."""

    manifest: FileState
    flow_run_id: str | None
    runs: int  # the runs in the folder (their manifests)
    left_out: tuple[FileState, ...]  # the data files of the other runs

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest.url, "flow_run_id": self.flow_run_id, "runs_in_folder": self.runs, "left_out": [f.url for f in self.left_out]}


@dataclass(frozen=True)
class Step:
    window: WindowState
    folder: str | None  # URL of the export folder
    files: tuple[FileState, ...]
    unverified: bool = False  # the last audit could not read it; its status is from an earlier audit
    run: Run | None = None  # a folder holding several runs of the export: the one whose files these are

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class RestorePlan:
    """The chain for one dataset as of `at`: its good steps, where it breaks, what is still pending."""

    export: str
    destination: str
    dataset_id: str
    at: datetime
    incremental: bool
    steps: tuple[Step, ...]
    broken: WindowState | None
    pending: tuple[WindowState, ...]
    reason: str | None
    restorable_until: datetime | None
    audit: AuditRecord | None  # the live audit the answer comes from
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.reason is None

    @property
    def exit_code(self) -> int:
        """0 complete, 1 broken, 3 the catalog cannot tell (never audited, nothing to restore yet, or a break no audit
        could read): nothing missing or invalid is no broken chain."""
        if self.complete:
            return 0
        if self.broken is None or self.audit is None or self.broken.status == "unknown":
            return 3
        return 1

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "export": self.export,
            "at": iso(self.at),
            "mode": "full plus incrementals" if self.incremental else "one full export",
            "complete": self.complete,
            "restorable_until": iso(self.restorable_until),
            "broken": None if self.complete else {"scheduled": iso(self.broken.scheduled) if self.broken else None, "status": self.broken.status if self.broken else None, "reason": self.reason},
            "pending": [iso(w.scheduled) for w in self.pending],
            "chain": [
                {
                    "scheduled": iso(step.window.scheduled),
                    "status": step.window.status,
                    "unverified": step.unverified,
                    "folder": step.folder,
                    "files": [{"url": f.url, "key": f.key, "size": f.size, "etag": f.etag, "records": f.records} for f in step.files],
                    "run": None if step.run is None else step.run.to_json(),
                }
                for step in self.steps
            ],
            "source": "catalog",
            "audit": None if self.audit is None else {"id": self.audit.id, "as_of": iso(self.audit.as_of), "finished_at": iso(self.audit.finished_at)},
            "notes": list(self.notes),
        }


def plan_restore(settings: Settings, catalog: RestoreCatalog, dataset: str, at: datetime, *, export: str | None = None, option: str = "--export") -> RestorePlan:
    """Walk what the catalog knows about `dataset`'s windows up to `at` and say what to restore."""
    name = choose_export(settings, dataset, export, option=option)
    with catalog.reading() as reads:  # the lookup's reads on one connection
        return _plan(settings, reads, name, dataset, at)


def _plan(settings: Settings, catalog: RestoreCatalog, name: str, dataset: str, at: datetime) -> RestorePlan:
    configured = next(e for e in settings.exports if e.name == name)
    root = redact(settings.destination(configured.destination).url).rstrip("/")
    audit = catalog.answering_audit(name, dataset)
    incremental = configured.schedule.incremental
    if audit is None:
        return RestorePlan(name, configured.destination, dataset, at, incremental, (), None, (), f"export {name!r} has not been audited yet: run `auditor audit` or use --refresh", None, None)
    # windows are placed to the minute (walk's precision, and a folder's name): every one in the minute of `at` counts
    windows = catalog.restore_windows(name, dataset, floor_minute(at) + timedelta(minutes=1) - timedelta(microseconds=1))
    # the windows the export's schedule has now, as the audit judges them; one the catalog holds from another schedule is
    # judged by no audit any more (left pending, it held the chain back for ever; before a new startTime, it is no part of it)
    schedule = configured.schedule
    placed = [(w, known, schedule.place(floor_minute(w.scheduled))[0] == w.scheduled) for w, known in windows]
    off = [(w, known) for w, known, on in placed if not on]
    windows = [(w, known) for w, known, on in placed if on]
    present = [w for w, _known in windows]
    unknown_now = {w.scheduled for w in present if w.status == "unknown"}
    # an unreadable window is judged by the last status an audit established, unless that was only "pending"
    rows = [_judged(w, known) for w, known in windows]
    # the folder's data files of this export's format: another export of the dataset may share its folders (json beside parquet)
    in_folders = catalog.folder_files(configured.destination, [w.folder_key for w in rows if w.folder_key], manifests=True)
    endings = tuple(suffix for suffix in DATA_SUFFIXES if file_format(suffix) == configured.format)  # its format's file endings, once
    files = {folder: [f for f in found if f.role == "data" and f.key.lower().endswith(endings)] for folder, found in in_folders.items()}
    # this export's manifests: those that list files of its format, or could not be read (another export of the dataset,
    # in the other format, writes its own into the same folders); read where a folder holds several (re-runs), or where
    # the configuration has such another export
    manifests = {folder: [f for f in found if f.role == "manifest"] for folder, found in in_folders.items()}
    shared = any(e.destination == configured.destination and dataset in e.datasets and e.format != configured.format for e in settings.exports)
    read = [k for k, found in manifests.items() if len(found) > 1 or (found and shared)]
    documents = catalog.manifest_documents(configured.destination, [f.key for k in read for f in manifests[k]]) if read else {}
    for k in read:
        manifests[k] = [m for m in manifests[k] if _lists(documents.get(m.key, (None, None))[1], endings)]
    # a window judged good whose files have since gone from storage or changed in it (seen by a later listing) is broken
    changed = {
        w.scheduled: why
        for w in rows
        if w.status in GOOD_STATUSES
        and (why := _changed_since(w, files.get(w.folder_key or "", []), manifests.get(w.folder_key or "", []), manifest=configured.manifest)) is not None
    }
    judged = {w.scheduled: w.status for w in rows if w.scheduled in changed}
    rows = [replace(w, status="invalid") if w.scheduled in changed else w for w in rows]
    chain = walk(rows, incremental=incremental, status=lambda w: w.status, scheduled=lambda w: w.scheduled, at=at)
    several = [w.folder_key for w in chain.steps if w.folder_key and len(manifests.get(w.folder_key, ())) > 1]  # this export's runs
    chosen = {k: run for k in several if (run := _newest_whole_run(files[k], manifests[k], documents)) is not None}
    steps = tuple(
        Step(
            w, f"{root}/{w.folder_key}" if w.folder_key else None,
            tuple(f for f in files.get(w.folder_key or "", []) if w.folder_key not in chosen or f not in chosen[w.folder_key].left_out),
            unverified=w.scheduled in unknown_now, run=chosen.get(w.folder_key or ""),
        )
        for w in chain.steps
    )
    notes = []
    if unknown_now:
        notes.append(f"{len(unknown_now)} window(s) could not be read at the audit of {iso(audit.as_of)}; their status is the last one an audit could establish")
    if at > audit.as_of:
        notes.append(f"the catalog knows this export as of {iso(audit.as_of)}; windows after that are not in this answer (use --refresh to audit first)")
    split = [(step.window.scheduled, step.run) for step in steps if step.run is not None]
    if split:  # AEP wrote the export again into its folder: applying every run's files would apply its rows twice
        listed = _some(f"{iso(at)} ({run.runs} runs, {len(run.left_out)} files left out)" for at, run in split)
        notes.append(f"the folders of {len(split)} window(s) hold several runs of the export ({listed}): each step names the files of its newest "
                     "run whose manifest's files are all there, as that manifest lists them; the other runs' files are left out")
    reruns = [(step.window.scheduled, len(manifests[step.window.folder_key or ""])) for step in steps if step.run is None and step.window.folder_key in several]
    if reruns:  # no run's manifest names files all there: every file is listed, and applying all of them applies some rows twice
        listed = _some(f"{iso(at)} ({n} manifests)" for at, n in reruns)
        notes.append(f"the folders of {len(reruns)} window(s) hold several runs of the export ({listed}), and no run's manifest names files that are all "
                     "there: their files are those of every run; apply the files of one run (each manifest names its own)")
    if off:
        listed = _some(f"{iso(w.scheduled)} {_judged(w, known).status}" for w, known in off)
        notes.append(f"{len(off)} window(s) in the catalog that the export's schedule has no slot for now (an earlier schedule: {listed}) are not in this plan, "
                     "as no audit judges them any more; if the chain ran through them before its schedule changed, their files hold data it needs")
    reason = None
    broken = chain.broken
    if not rows:
        reason = f"no audited window of {dataset} at or before {iso(at)}"
    elif broken is not None and broken.scheduled in changed:
        how = f"when audit {broken.audit_id} judged it" if broken.scheduled not in unknown_now else "as an audit established it (the last could not read it)"
        reason = f"window {iso(broken.scheduled)} was {judged[broken.scheduled]} {how}, but {changed[broken.scheduled]}: re-audit it (--refresh)"
    elif broken is not None:
        reason = _why(broken, catalog.window_findings(name, dataset, broken.scheduled))
        if broken.scheduled in unknown_now and broken.status != "unknown":  # what an earlier audit established stands
            reason += f" (as audit {broken.audit_id} established it: the destination could not be read at the last audit)"
    elif not chain.steps:
        reason = f"nothing restorable yet: {len(chain.pending)} window(s) still inside their grace period"
    return RestorePlan(name, configured.destination, dataset, at, incremental, steps, broken, chain.pending, reason, chain.restorable_until, audit, tuple(notes))


def _some(texts: Iterable[str], limit: int = 12) -> str:
    """The first `limit` of `texts` for a note, "…" when there are more."""
    shown = list(itertools.islice(texts, limit + 1))
    return ", ".join(shown[:limit]) + (", …" if len(shown) > limit else "")


def _results(document: Any) -> list[Any] | None:
    """A parsed manifest's `exportResults`, the files it lists (None: not a list, or no manifest)."""
    results = document.get("exportResults") if isinstance(document, dict) else None
    return results if isinstance(results, list) else None


def _lists(document: Any, endings: tuple[str, ...]) -> bool:
    """Whether a manifest lists a file with one of these endings (an unreadable one may: it counts)."""
    results = _results(document)
    return results is None or any(isinstance(r, dict) and str(r.get("name", "")).lower().endswith(endings) for r in results)


def _newest_whole_run(data: Sequence[FileState], manifests: Sequence[FileState], documents: Mapping[str, tuple[datetime | None, Any]]) -> Run | None:
    """Of the runs AEP wrote into one folder, the newest (its manifest's modification time) whose manifest lists only
    data files that are there, with the sizes it gives: that run's files restore the window, once."""
    by_name = {posixpath.basename(f.key): f for f in data}
    whole: list[tuple[datetime, str, FileState, tuple[FileState, ...], str | None]] = []
    for manifest in manifests:
        modified, document = documents.get(manifest.key, (None, None))
        results = _results(document)
        if not results or not all(isinstance(r, dict) for r in results):
            continue
        listed = [by_name.get(str(r.get("name"))) for r in results]
        if any(f is None for f in listed) or any(isinstance(r.get("size"), int) and f is not None and f.size != r["size"] for r, f in zip(results, listed, strict=True)):
            continue
        run_id = document.get("flowRunId") if isinstance(document.get("flowRunId"), str) else None
        whole.append((modified or datetime.min.replace(tzinfo=UTC), manifest.key, manifest, tuple(f for f in listed if f is not None), run_id))
    if not whole:
        return None
    _modified, _key, manifest, mine, run_id = max(whole, key=lambda w: (w[0], w[1]))
    return Run(manifest, run_id, len(manifests), tuple(f for f in data if f not in mine))


def _changed_since(window: WindowState, files: Sequence[FileState], manifests: Sequence[FileState] = (), *, manifest: bool = False) -> str | None:
    """How the present files of a window judged good differ from what it was judged with, if they do: data files fewer
    (gone), of other sizes or more (overwritten, added), or one whose bytes a later check found bad; its manifest gone
    (an export with manifests), overwritten since its check, or found bad."""
    if len(files) < window.files:
        return f"{window.files - len(files)} of its {window.files} files have gone from storage since"
    size = sum(f.size for f in files)
    if len(files) != window.files or size != window.bytes:
        return f"its files have changed in storage since ({len(files)} files of {size} bytes, judged with {window.files} of {window.bytes}): overwritten or added"
    doubtful = [f for f in (*files, *manifests) if f.doubtful]
    if doubtful:
        return f"its files have changed in storage since: {doubtful[0].key} was overwritten after its check, or found bad when checked again"
    if manifest and window.files and not manifests:  # a window of such an export is judged good only with its manifest
        return "its manifest has gone from storage since"
    return None


def _judged(window: WindowState, known: str | None) -> WindowState:
    status = known or window.status
    if status == window.status or (window.status == "unknown" and status == "pending"):
        return window
    return replace(window, status=status)


def _why(window: WindowState, findings: Sequence[FindingState]) -> str:
    errors = [f for f in findings if f.severity == "error"] or list(findings)
    detail = f": {errors[0].code} {errors[0].message}" if errors else ""
    if window.status == "unknown":
        detail = ": the destination could not be read, and no earlier audit established it"
    return f"window {iso(window.scheduled)} is {window.status}{detail}"


def download(
    plan: RestorePlan, store: Store, target: str, *, options: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None,
    audited: Sequence[str] = (),
) -> list[str]:
    """Copy every file of the plan to `target` (any fsspec URL), keeping folder names; sizes verified.

    Writes only below `target`, and never into the storage the auditor audits (`audited`: the destinations' URLs; a
    target inside one, or holding one, is refused: one at a destination's root emptied a backup file as it opened it).
    Every file is first found in storage as the plan lists it (its size, and its ETag where the store gives one): a
    file changed since the audit is refused before anything is copied. Every destination is resolved before anything
    is written, and a key that would lead out of the target (an empty, `.` or `..` segment, or on a local target a
    symbolic link) raises StorageError naming the key. A copy that fails or comes out the wrong size is removed, and
    raises StorageError.
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    protocol = fsspec.core.split_protocol(target)[0]
    if "::" in target or (protocol or "").lower() in _WRAPPERS:
        # a chained URL (simplecache::s3://…, dir::…) or a wrapping protocol writes where its inner URL points, which
        # the overlap check below cannot see: the same backup file was rewritten through simplecache::file://…
        raise StorageError(f"restore target {redact(target)}: give the storage URL itself (s3://…, a local path …), not a chained or wrapping one",
                           url=redact(target))

    def refuse_overlap(where: tuple[str, str]) -> None:
        for url in audited:
            if _overlaps(where, _place(url)):
                raise StorageError(f"restore target {redact(target)} is inside, or holds, the audited destination {redact(url)}: the auditor never writes "
                                   "to the storage it audits; choose another target", url=redact(target))

    refuse_overlap(_place(target))  # by its URL, as the destinations are named (an opened SFTP path has no user, host or port)
    try:
        fs, root = fsspec.core.url_to_fs(target, **(options or {}))
    except Exception as e:
        raise StorageError(f"cannot open restore target {redact(target)}: {scrub(str(e))}", url=redact(target)) from e
    if isinstance(fs, LocalFileSystem):
        refuse_overlap(_place(str(root)))  # and a local one by where fsspec will write, however spelled (file:/x is /x)
    files = [f for step in plan.steps for f in step.files]
    base = str(root).rstrip("/")
    for item in files:
        _resolve_under(fs, base, item.key, target)
    _as_audited(plan, store)
    written: list[str] = []
    for done, item in enumerate(files, 1):
        destination = _resolve_under(fs, base, item.key, target)  # again: a link may have appeared since
        try:
            fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            destination = _resolve_under(fs, base, item.key, target)
            with store.open(item.key) as source, fs.open(destination, "wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
            size = fs.size(destination)
            if size != item.size:
                raise StorageError(f"copy of {item.url} has {size} bytes, expected {item.size}", url=redact(target))
        except Exception as e:
            _remove(fs, destination)  # no wrong copy is left in the target
            if isinstance(e, StorageError):
                raise
            raise StorageError(f"cannot copy {item.url} to {redact(target)}: {scrub(str(e))}", url=redact(target)) from e
        written.append(destination)
        if progress:
            progress(done, len(files))
    return written


def strays(target: str, written: Sequence[str], *, options: dict[str, Any] | None = None) -> int:
    """How many files below `target` this download did not write (an earlier download into the same target?)."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(target, **(options or {}))
        present = fs.find(str(root))
    except Exception:  # noqa: BLE001 - a count for a warning: none when the target cannot be listed
        return 0
    mine = {posixpath.normpath(w) for w in written}
    return sum(1 for p in present if posixpath.normpath(str(p)) not in mine)


def _as_audited(plan: RestorePlan, store: Store) -> None:
    """Raise StorageError unless every file of the plan is in storage with the size (and ETag, where both have one) the
    plan lists: bytes overwritten since the audit would be copied under the audited name."""
    for step in plan.steps:
        if not step.files or not step.window.folder_key:
            continue
        present = {o.key: o for o in store.list_prefixes([f"{step.window.folder_key}/"])}
        for item in step.files:
            found = present.get(item.key)
            if found is None:
                raise StorageError(f"{item.url} is no longer in storage: re-audit (--refresh) before restoring", url=item.url)
            if found.size != item.size or (found.etag and item.etag and found.etag != item.etag):
                raise StorageError(f"{item.url} changed since the audit (now {found.size} bytes, ETag {found.etag}; audited {item.size} bytes, ETag {item.etag}): "
                                   "re-audit (--refresh) before restoring", url=item.url)


# fsspec protocols that wrap another file system (caches, a folder of another, archives, references): as a restore
# target they write into whatever they wrap
_WRAPPERS = frozenset({"simplecache", "filecache", "blockcache", "cached", "dir", "reference", "zip", "tar", "libarchive", "jlab", "jupyter", "dask", "git", "github"})


def _overlaps(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two places (`_place`) are the same, or one lies inside the other."""
    if a[0] != b[0]:
        return False
    return a[1] == b[1] or a[1].startswith(b[1] + "/") or b[1].startswith(a[1] + "/") or not a[1] or not b[1]


def _place(url: str) -> tuple[str, str]:
    """(storage family, path without slashes at either end) of a URL; a local path resolved (symbolic links). The
    family is the pip extra auditor.storage.PROTOCOLS names for the protocol (s3 and s3a alike, az and abfs …)."""
    import fsspec

    from auditor.storage import PROTOCOLS

    protocol, path = fsspec.core.split_protocol(url)
    local = protocol in (None, "file", "local")
    family = "file" if local else (PROTOCOLS.get(protocol, (None, None))[1] or protocol)
    if local:
        path = os.path.realpath(os.path.expanduser(path))
    return family, path.split("?", 1)[0].strip("/")


def _remove(fs: Any, path: str) -> None:
    with contextlib.suppress(Exception):  # it may never have been created
        fs.rm_file(path)


def _resolve_under(fs: Any, base: str, key: str, target: str) -> str:
    """Where `key` is written below `base`, resolved; raises StorageError naming the key if that is not below it."""
    from fsspec.implementations.local import LocalFileSystem

    destination = posixpath.normpath(f"{base}/{key}")
    problem = unsafe_key(key)
    if problem is None and not destination.startswith(f"{base}/"):
        problem = "it resolves outside the target"
    if problem is None and isinstance(fs, LocalFileSystem):
        real_base = os.path.realpath(base or "/")
        real = os.path.realpath(destination)
        if os.path.commonpath([real_base, real]) != real_base or real == real_base:
            problem = f"it resolves to {real}, outside the target (through a symbolic link)"
    if problem is not None:
        raise StorageError(f"restore: object key {key!r} would be written outside {redact(target)} ({problem}); refused", url=redact(target))
    return destination
