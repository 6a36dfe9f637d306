"""The audit use case: list each destination once, validate what changed, reconcile, record.

`run_audit` receives stores and a catalog that are already built; it never writes to storage.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from auditor.config import DestinationSettings, ExportSettings, Settings
from auditor.errors import CatalogError, ScheduleError, StorageError
from auditor.findings import Finding, error, warning
from auditor.flows.models import Flow, Run
from auditor.layout import Layout, LayoutMatch, unsafe_key
from auditor.listing import ListingPlan, StoredWindow, SweepState, WindowKey, plan_listing, starts_with
from auditor.reconcile import (
    Folder,
    ObservedFile,
    ObservedManifest,
    Status,
    Summary,
    Window,
    WindowResult,
    flag_schema_drift,
    reconcile_window,
    restore_point,
    summarised,
)
from auditor.report import Assurance, AuditError, AuditReport, ExportResult, Unexpected
from auditor.runs import join_runs
from auditor.schedule import floor_minute, parse_schedule
from auditor.storage.base import ObjectInfo, Store
from auditor.validate import FileVerdict, Level, Source, data_suffix, file_format, validate_data_file
from auditor.validate.manifest import MAX_MANIFEST, Manifest, manifest_from_json, parse_manifest
from auditor.validate.plan import plan_batches
from auditor.validate.sandbox import RETRY_CODES, ObjectSource

if TYPE_CHECKING:
    from auditor.inventory import Inventory

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditOptions:
    """How thoroughly to check: quick by default, `deep` for every byte, or a rotating sample."""

    deep: bool = False
    sample_percent: float | None = None
    workers: int = 8  # concurrent file checks (I/O threads)
    only_exports: frozenset[str] | None = None
    full_sweep: bool = False  # list every destination in full, whatever its sweep schedule (auditor.listing)
    # as of now by the clock of whoever asked (serve's loop, `auditor audit` without --as-of), not a chosen time: a
    # present recorded more than CLOCK_TOLERANCE ahead of it was recorded under a clock that ran ahead, and gives way
    present: bool = False


CLOCK_TOLERANCE = timedelta(minutes=5)  # how far ahead of now an as-of time may be before it is taken for a clock error
CLOCK_AHEAD = "this host's clock runs ahead"  # the code (and the start of the message) of the error an audit of now from such a clock gets
LOCK_LOST = "the audit lock on this destination was lost while the audit ran"  # the code (and the start) of that error: serve keeps the destination due


def clock_ahead(as_of: datetime, by: timedelta) -> AuditError:
    """The error of an audit of now whose as-of lies `by` ahead of the catalog's clock (it is recorded as history)."""
    ahead = timedelta(seconds=round(by.total_seconds()))
    message = f"{CLOCK_AHEAD}: as of {as_of:%Y-%m-%dT%H:%M:%SZ}, {ahead} ahead of the catalog's clock; recorded as history, the present is left as it is"
    return AuditError("catalog", message, code=CLOCK_AHEAD)


class FileRecord(NamedTuple):
    """What the catalog knows about one object: enough to skip reading it again.

    A named tuple: the catalog's view of an estate holds a million of them, each made anew by every audit that reads
    it, and a tuple is made in a fifth of the time of a frozen dataclass (0.68 against 3.25 µs with these 13 fields:
    a frozen dataclass sets each field through object.__setattr__), as immutable, 8 bytes larger.
    """

    key: str
    folder_key: str | None
    role: str  # data | manifest
    size: int
    etag: str | None
    modified: datetime | None
    level: int
    validated_at: datetime | None
    deep_at: datetime | None
    records: int | None
    findings: tuple[Finding, ...]
    # a manifest's content: held as its JSON text compressed (`packed`: a fifth of the text, which was a tenth of a
    # full sweep's memory), decoded when used (`document`); a dict or text is taken as well
    content: dict[str, Any] | str | bytes | None = None
    schema: str | None = None

    def unchanged(self, info: ObjectInfo) -> bool:
        return self.size == info.size and self.etag == info.etag and _same_time(self.modified, info.modified)

    def document(self) -> Any:
        """The manifest's content as JSON values (None: none was parsed)."""
        content = self.content
        if isinstance(content, bytes):
            content = zlib.decompress(content).decode()
        return json.loads(content) if isinstance(content, str) else content


def packed(text: str) -> bytes:
    """A manifest's JSON text as a FileRecord holds it: 1 KiB of text becomes about 210 bytes, in about 10 µs (zlib's
    fastest level with a 4 KiB window: its default 32 KiB window cost 50-60 µs a manifest to set up)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 12, 4)
    return packer.compress(text.encode()) + packer.flush()


class Recording(Protocol):
    @property
    def audit_id(self) -> int: ...

    @property
    def live(self) -> frozenset[str]: ...

    @property
    def live_datasets(self) -> frozenset[tuple[str, str]]: ...

    @property
    def problems(self) -> tuple[AuditError, ...]: ...


class CatalogPort(Protocol):
    def known_files(self, destination: str, prefixes: Sequence[str] | None = None) -> Mapping[str, FileRecord]: ...

    def gone_since(self, destination: str, since: datetime) -> set[str]: ...

    def sampled_audits(self, key: str) -> int: ...

    def sweep_state(self, destination: DestinationSettings, exports: Sequence[ExportSettings], runs: Mapping[str, Sequence[Run]] | None = None) -> SweepState: ...

    def record_audit(
        self,
        settings: Settings,
        report: AuditReport,
        files: Mapping[str, list[FileRecord]],
        *,
        listed: Mapping[str, set[str]],
        started: datetime,
        options: AuditOptions,
        runs: Mapping[str, Sequence[Run]] | None = None,
        scope: Iterable[str] | None = None,
        swept: Iterable[str] = (),
        known: Mapping[str, Mapping[str, FileRecord]] | None = None,
    ) -> Recording: ...


@dataclass(slots=True)  # one per export folder: an estate's listing makes a hundred thousand
class _FolderDraft:
    key: str
    url: str
    export_time: datetime
    suffix: str  # the data-file ending the export's format and compression call for
    data: list[ObjectInfo] = field(default_factory=list)
    manifests: list[ObjectInfo] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # about the folder as a whole (another folder claims its window)


@dataclass
class Scan:
    """One destination's listing sorted into export folders and unexpected objects."""

    folders: dict[tuple[str, str, datetime], _FolderDraft] = field(default_factory=dict)
    unexpected: dict[str, str] = field(default_factory=dict)


def run_audit(
    settings: Settings,
    *,
    stores: Mapping[str, Store],
    catalog: CatalogPort | None,
    now: datetime,
    started: datetime,
    options: AuditOptions | None = None,
    progress: Progress | None = None,
    checker: Checker | None = None,
    runs: Mapping[str, Sequence[Run]] | None = None,
    flows: Mapping[str, Flow] | None = None,
    fingerprint: str | None = None,
    problems: Sequence[AuditError] = (),
) -> AuditReport:
    """Audit every configured export as of `now` and record the result in the catalog.

    `problems` are errors found before the audit (the Flow Service could not be read …): they are
    part of the recorded report.
    """
    options = options or AuditOptions()
    checker = checker or InProcessChecker()
    exports = [e for e in settings.exports if options.only_exports is None or e.name in options.only_exports]
    errors: list[AuditError] = list(problems)
    unexpected: list[Unexpected] = []
    results: list[ExportResult] = []
    file_records: dict[str, list[FileRecord]] = {}
    moved: dict[str, list[FileRecord]] = {}  # destination -> files changed since checked that this audit did not check (not in its assurance)
    listed: dict[str, set[str]] = {}  # destination -> every key its listing returned
    counters = {"read": 0, "reused": 0, "deep_unfinished": 0}
    rotation = _rotation(catalog, options, errors, [e.name for e in exports])
    listings: dict[str, dict[str, Any]] = {}
    swept: list[str] = []
    knew: dict[str, Mapping[str, FileRecord]] = {}  # destination -> the catalog's present files (under the listed prefixes), as read under its lock
    for destination in settings.destinations:
        mine = [e for e in exports if e.destination == destination.name]
        if not mine:
            continue
        # one destination at a time: its listing, scan and observed files are let go before the next (and before
        # the catalog write), and what the report keeps of each listed folder is its summary
        audited = _audit_destination(settings, destination, mine, stores[destination.name], catalog, now, started, options, runs, flows, rotation, counters, progress, checker)
        results += audited.results
        unexpected += audited.unexpected
        errors += audited.errors
        listings[destination.name] = audited.listing
        if audited.records is not None:
            file_records[destination.name] = audited.records
        if audited.moved:
            moved[destination.name] = audited.moved
        if audited.listed is not None:
            listed[destination.name] = audited.listed
        if audited.known is not None:
            knew[destination.name] = audited.known
        if audited.swept:
            swept.append(destination.name)
    assurance = _assurance(file_records, counters, stores, [(e.destination, w) for e in results for w in e.windows if w.carried])
    method = {
        "checks": "deep" if options.deep else ("quick with a rotating deep sample" if options.sample_percent else "quick"),
        "deep": options.deep,
        "sample_percent": options.sample_percent,
        # a turn counts (the next sampled audit takes the next one) only when every file of it listed was deep-checked;
        # `unchecked`: the files of the turn left without a deep check (no verdict, or one that did not finish)
        "sample_turn": None if rotation is None else {"of": rotation[0], "turn": rotation[1], "complete": not counters["deep_unfinished"], "unchecked": counters["deep_unfinished"]},
        "scope": sorted(e.name for e in exports),
        "listing": listings,
    }
    report = AuditReport(now, tuple(results), tuple(unexpected), tuple(errors), assurance, method=method, fingerprint=fingerprint)
    if catalog is not None:
        try:
            scope = [e.name for e in exports]
            recorded_files = {name: [*file_records.get(name, []), *moved.get(name, [])] for name in {*file_records, *moved}}
            recorded = catalog.record_audit(
                settings, report, recorded_files, listed=listed, started=started, options=options, runs=runs, scope=scope, swept=swept, known=knew
            )
            report = replace(report, audit_id=recorded.audit_id, live=recorded.live, live_datasets=recorded.live_datasets)
            if recorded.problems:
                report = replace(report, errors=(*report.errors, *recorded.problems))
        except CatalogError as e:
            report = replace(report, errors=(*report.errors, AuditError("catalog", str(e))))
    return report


@dataclass
class _Audited:
    """What the audit of one destination adds to the audit: its results, and what the catalog is to record of it."""

    results: list[ExportResult]
    unexpected: list[Unexpected]
    errors: list[AuditError]
    listing: dict[str, Any]
    records: list[FileRecord] | None = None  # None: not listed
    listed: set[str] | None = None  # every key its listing returned
    known: Mapping[str, FileRecord] | None = None  # the catalog's present files under the listed prefixes, as read under its lock
    swept: bool = False
    moved: list[FileRecord] = field(default_factory=list)  # known files the listing shows changed that this audit did not check


def _audit_destination(
    settings: Settings,
    destination: DestinationSettings,
    mine: list[ExportSettings],
    store: Store,
    catalog: CatalogPort | None,
    now: datetime,
    started: datetime,
    options: AuditOptions,
    runs: Mapping[str, Sequence[Run]] | None,
    flows: Mapping[str, Flow] | None,
    rotation: tuple[int, int] | None,
    counters: dict[str, int],
    progress: Progress | None,
    checker: Checker,
) -> _Audited:
    """List one destination, validate what changed, reconcile its exports in scope (`mine`)."""
    errors: list[AuditError] = []
    state, plan, inventory = _plan(destination, mine, catalog, now, options, errors, store, runs, checker)
    known: Mapping[str, FileRecord] = {}
    knew: Mapping[str, FileRecord] | None = None
    if catalog is not None:
        try:
            known = knew = catalog.known_files(destination.name, None if plan.full else plan.prefixes)
        except CatalogError as e:
            errors.append(AuditError("catalog", f"cannot read what the catalog knows, checking every file: {e}"))
            if not plan.full or plan.inventory is not None:  # nothing to compare the listed prefixes with: list (and check) everything
                plan = ListingPlan(True, "the catalog's files could not be read", last_full_sweep=plan.last_full_sweep)
    if plan.full and not options.deep and (state is None or not state.files):
        _warm(checker)  # a first audit reads every file it lists: the workers start while it lists
    carried = {key: state.good[key] for key in plan.carried} if state is not None else {}
    del state  # what the catalog said of every good window: only the carried ones are needed from here
    gone: set[str] = set()
    if inventory is not None and plan.inventory is not None and catalog is not None:
        try:  # a file an audit after the report found gone is not brought back by the report's older row
            gone = catalog.gone_since(destination.name, inventory.as_of)
        except CatalogError as e:
            errors.append(AuditError("catalog", f"cannot read which files are gone, listing {destination.name} in full: {e}"))
            plan, inventory = ListingPlan(True, "the catalog's files could not be read", last_full_sweep=plan.last_full_sweep), None
        if inventory is not None and not inventory.objects and known:  # nothing of a destination the catalog knows files in
            reason = f"{plan.reason}; the inventory could not be used (its report lists none of the {len(known)} files the catalog knows here): listed instead"
            plan, inventory = ListingPlan(True, reason, last_full_sweep=plan.last_full_sweep, scheduled=True), None
    try:
        objects = _list(store, plan, inventory, known, gone)
    except StorageError as e:
        errors.append(AuditError(destination.name, str(e)))
        listing = {**replace(plan, carried=frozenset()).to_json(carried=0), "failed": str(e)}  # planned, not made: the report says so
        # a destination that cannot be listed now is unknown, settled windows included
        results = [r for export in mine for r in _reconcile_export(export, {}, listing_failed=True, now=now, runs=_runs_of(runs, export), flow=_flow_of(flows, export), root_url=store.url)]
        return _Audited(results, [], errors, listing, known=knew)
    del inventory
    folders_carried = {w.folder_key: w.files for w in carried.values() if w.folder_key is not None}  # two exports can share a folder
    audited = _Audited([], [], errors, plan.to_json(listed=len(objects), carried=sum(folders_carried.values())), listed={o.key for o in objects}, known=knew, swept=plan.full)
    # files the catalog knows that the listing shows overwritten (another size, or another ETag where both have one): those
    # this audit does not check (another export's, in an audit of some) are recorded as listed, unchecked, so that a restore
    # that needs them sees the change. A time alone (a file touched, copied onto itself) is left to that export's own audits.
    changed = [(info, record) for info in objects if (record := known.get(info.key)) is not None and _overwritten(record, info)] if known else []
    scan = _within(sort_objects(objects, [e for e in settings.exports if e.destination == destination.name], store.url, now), {e.name for e in mine})
    del objects  # the scan holds what is checked
    for key, kind in getattr(store, "skipped", ()):  # not audited, and said so: a window whose folder is a link is missing, with the reason here
        scan.unexpected.setdefault(f"{store.url}/{key}", f"{kind}: not followed (the auditor audits the files stored under the destination)")
    audited.unexpected = [Unexpected(path, reason) for path, reason in sorted(scan.unexpected.items())]
    outcomes, audited.records, read_errors = _validate(scan, store, known, options, rotation, started, counters, progress, checker)
    errors += [AuditError(destination.name, message) for message in read_errors]
    if changed:  # (rare: the set of every checked key, a million on an estate's sweep, is built only then)
        checked = {record.key for record in audited.records}
        audited.moved = [_relisted(record, info) for info, record in changed if info.key not in checked]
    judged = _judge(_observed(scan, outcomes), mine, now)
    del scan, outcomes
    for export in mine:
        audited.results += _reconcile_export(export, judged, listing_failed=False, now=now, runs=_runs_of(runs, export), flow=_flow_of(flows, export), carried=carried, root_url=store.url)
    return audited


def _overwritten(record: FileRecord, info: ObjectInfo) -> bool:
    return record.size != info.size or (record.etag is not None and info.etag is not None and record.etag != info.etag)


def _relisted(record: FileRecord, info: ObjectInfo) -> FileRecord:
    """A known file as the listing now shows it, changed since its last check and not checked again: listed only."""
    return record._replace(size=info.size, etag=info.etag, modified=info.modified, level=int(Level.LISTED), deep_at=None, records=None, findings=(), content=None, schema=None)


def _warm(checker: Checker) -> None:
    """Start the checker's workers now, where it has any; one that cannot start now is started (or reported) at the first check."""
    warm = getattr(checker, "warm", None)
    if warm is None:
        return
    try:
        warm()
    except Exception as e:  # noqa: BLE001 - an early start is an optimisation: never a reason to fail the audit
        log.warning("validation workers could not be started ahead of the checks: %s", e)


def _judge(folders: Iterable[tuple[tuple[str, str, datetime], Folder]], exports: Sequence[ExportSettings], now: datetime) -> dict[tuple[str, str, datetime], WindowResult]:
    """Each listed folder's window reconciled as the folder is built, and summarised: one folder's observed files
    and parsed manifests are held at a time, not the whole destination's."""
    by_name = {e.name: e for e in exports}
    judged: dict[tuple[str, str, datetime], WindowResult] = {}
    for (name, dataset, slot), folder in folders:
        export = by_name[name]
        window = Window(name, dataset, slot, slot + export.grace)
        judged[(name, dataset, slot)] = summarised(reconcile_window(window, folder, manifest_expected=export.manifest, listing_failed=False, now=now))
    return judged


def _runs_of(runs: Mapping[str, Sequence[Run]] | None, export: ExportSettings) -> Sequence[Run] | None:
    return (runs or {}).get(export.flow_id or "")


def _flow_of(flows: Mapping[str, Flow] | None, export: ExportSettings) -> Flow | None:
    return (flows or {}).get(export.flow_id or "")


def _rotation(catalog: CatalogPort | None, options: AuditOptions, errors: list[AuditError], scope: Sequence[str]) -> tuple[int, int] | None:
    """(n, turn): with --sample, a file is deep-checked when crc32(key) % n == turn. The turn is the number of audits
    recorded in the same rotation (its length, the same exports in scope): quick audits in between, or another
    configuration's sampled audits, move it on no more (they did, and some files were never deep-checked)."""
    if not options.sample_percent:
        return None
    n = max(1, math.ceil(100 / options.sample_percent))
    count = 0
    if catalog is not None:
        try:
            count = catalog.sampled_audits(sample_key(n, scope))
        except CatalogError as e:
            errors.append(AuditError("catalog", str(e)))
    return n, count % n


def sample_key(of: int, scope: Iterable[str]) -> str:
    """The digest that names one --sample rotation: its length and the exports it covers."""
    return hashlib.sha256(f"{of}|{chr(31).join(sorted(scope))}".encode()).hexdigest()


def _plan(
    destination: DestinationSettings,
    exports: list[ExportSettings],
    catalog: CatalogPort | None,
    now: datetime,
    options: AuditOptions,
    errors: list[AuditError],
    store: Store,
    runs: Mapping[str, Sequence[Run]] | None,
    checker: Checker | None = None,
) -> tuple[SweepState | None, ListingPlan, Inventory | None]:
    """How to list this destination now: in full (from its inventory report, when it has one and the sweep
    is the scheduled one), or only the prefixes that can still change."""
    requested = (
        "requested (--full-sweep)"
        if options.full_sweep
        else "a deep audit reads every file"
        if options.deep
        else "a sampled audit gives every file its turn"
        if options.sample_percent
        else None
    )
    state: SweepState | None = None
    if catalog is not None:  # read even for a requested sweep: the report says when the last one ran
        try:
            state = catalog.sweep_state(destination, exports, runs)
        except CatalogError as e:
            errors.append(AuditError("catalog", f"cannot read which windows are settled, listing {destination.name} in full: {e}"))
    walks = bool(getattr(store, "walks", False))
    plan = plan_listing(destination, exports, state, now, full_requested=requested, walks=walks)
    if not (plan.scheduled and destination.inventory is not None):
        return state, plan, None
    from auditor.inventory import InventoryError, newest_report, read_report

    try:  # the report's time first (its folder's name): only a sweep that will use the report reads it
        report = newest_report(destination, now)
        planned = plan_listing(destination, exports, state, now, full_requested=requested, walks=walks, inventory_as_of=report.as_of)
        if planned.inventory is None:
            return state, planned, None
        inventory = read_report(destination, report, store, checker)
    except InventoryError as e:
        log.warning("destination %s: the inventory cannot stand in for a listing: %s", destination.name, e)
        return state, replace(plan, reason=f"{plan.reason}; the inventory could not be used ({e}): listed instead"), None
    return state, planned, inventory


def _list(store: Store, plan: ListingPlan, inventory: Inventory | None, known: Mapping[str, FileRecord], gone: set[str]) -> list[ObjectInfo]:
    """What the audit lists: everything (a full sweep), or only the prefixes that can still change.

    A sweep from an inventory report takes the report's objects outside the listed prefixes; where the
    catalog has seen more recently than the report (a file written after its scan, or found gone by a
    later audit: `gone`), the catalog's record stands."""
    if inventory is None or plan.inventory is None:
        if not plan.full:
            return store.list_prefixes(plan.prefixes)
        # a file the catalog knows is listed with the key string its record holds: an estate's keys are held once,
        # not twice (the catalog's view was read before the listing, so it holds nothing recorded after it began)
        return store.list(intern=_held_key(known)) if known else store.list()
    objects = store.list_prefixes(plan.prefixes) if plan.prefixes else []
    under = starts_with(plan.prefixes)
    seen = {o.key for o in objects}
    for info in inventory.objects:
        if info.key in seen or info.key in gone or under(info.key):
            continue
        record = known.get(info.key)
        if record is not None and record.modified is not None and info.modified is not None and record.modified > info.modified:
            info = ObjectInfo(info.key, info.root, record.size, record.modified, record.etag)
        objects.append(info)
        seen.add(info.key)
    recent = inventory.as_of - INVENTORY_MARGIN  # a report may miss what was written just before its scan
    for key, record in known.items():
        if key not in seen and record.modified is not None and record.modified > recent and not under(key):
            objects.append(ObjectInfo(key, store.url, record.size, record.modified, record.etag))
    objects.sort(key=lambda o: o.key)  # in key order, as a listing gives them
    return objects


def _held_key(known: Mapping[str, FileRecord]) -> Callable[[str], str]:
    def held(key: str) -> str:
        record = known.get(key)
        return key if record is None else record.key

    return held


def sort_objects(objects: list[ObjectInfo], exports: list[ExportSettings], root_url: str, now: datetime) -> Scan:
    """Sort a listing into export folders, one per window, and unexpected objects.

    A key with an empty, `.` or `..` segment is unexpected ("unsafe object key") and joins no window.
    Two folders that claim one window (free template macros, or %DATETIME% seconds that fall in one
    minute) are never merged: the window keeps one (a landed one, the first by name) with an error
    `folder.duplicate_slot` naming both, and the others are unexpected.
    """
    scan = Scan()
    layouts: dict[str, tuple[Layout, list[tuple[ExportSettings, frozenset[str]]]]] = {}
    suffixes = {export.name: export.data_suffix for export in exports}  # a property computed each time: once per export here
    for export in exports:
        layout = export.layout
        layouts.setdefault(layout.template, (layout, []))[1].append((export, frozenset(export.datasets)))
    now_minute = floor_minute(now)
    claims: dict[tuple[str, str, datetime], dict[str, _FolderDraft]] = {}  # window -> folder key -> draft
    # what a folder is to each export that claims it (its draft, or None when the folder itself is unexpected):
    # worked out once per folder, not once per file
    routes: dict[tuple[str, str], list[tuple[ExportSettings, _FolderDraft | None]]] = {}

    def route(m: LayoutMatch, owners: list[tuple[ExportSettings, frozenset[str]]]) -> list[tuple[ExportSettings, _FolderDraft | None]]:
        found: list[tuple[ExportSettings, _FolderDraft | None]] = []
        folder_url = f"{root_url}/{m.folder}"
        for export, datasets in owners:
            if m.dataset_id is not None and m.dataset_id not in datasets:
                continue
            dataset = m.dataset_id or export.datasets[0]
            if m.export_time is None:
                scan.unexpected.setdefault(folder_url, f"malformed export time {m.time_text!r} in the folder name")
                found.append((export, None))
                continue
            slot, reason = export.schedule.place(floor_minute(m.export_time))
            if slot is not None and floor_minute(slot) > now_minute:
                slot, reason = None, "scheduled after the as-of time"
            if slot is None:
                scan.unexpected.setdefault(folder_url, f"{reason} for export {export.name!r}")
                found.append((export, None))
                continue
            folders = claims.setdefault((export.name, dataset, slot), {})
            draft = folders.get(m.folder)
            if draft is None:
                draft = folders[m.folder] = _FolderDraft(m.folder, folder_url, m.export_time, suffixes[export.name])
            found.append((export, draft))
        return found

    for obj in objects:
        if obj.modified is not None and obj.modified > now:
            continue  # written after the as-of time: not there yet
        unsafe = unsafe_key(obj.key)
        if unsafe is not None:
            scan.unexpected[obj.url] = unsafe
            continue
        first: LayoutMatch | None = None
        claimed = False
        for template, (layout, owners) in layouts.items():
            m = layout.match(obj.key)
            if m is None:
                continue
            first = first or m
            routed = routes.get((template, m.folder))
            if routed is None:
                routed = routes[(template, m.folder)] = route(m, owners)
            claimed = claimed or bool(routed)
            for export, draft in routed:
                if draft is None:
                    continue  # the folder is unexpected (said once, for the folder)
                name = m.file
                if "/" in name:
                    scan.unexpected.setdefault(obj.url, "sub-folder inside an export folder")
                elif name.startswith("manifest-") and name.endswith(".json"):
                    draft.manifests.append(obj)
                elif (suffix := data_suffix(name)) is None:
                    scan.unexpected.setdefault(obj.url, "stray file inside an export folder")
                elif ("parquet" if suffix.endswith("parquet") else "json") == export.format:
                    draft.data.append(obj)
                else:
                    scan.unexpected.setdefault(obj.url, f"{file_format(name)} file in a {export.format} export")
        if first is None:
            scan.unexpected[obj.url] = "stray file: does not fit the folder layout of any export"
        elif not claimed:
            scan.unexpected.setdefault(f"{root_url}/{first.dataset_folder}", f"unknown dataset {first.dataset_id!r}: no configured export covers it")
    for window, drafts in claims.items():
        scan.folders[window] = drafts.popitem()[1] if len(drafts) == 1 else _duplicate_slot(scan, window, list(drafts.values()))
    return scan


def _within(scan: Scan, scope: set[str]) -> Scan:
    """The part of a destination's scan that concerns the exports in scope: another configured export's
    folders, and the objects inside them, are neither checked nor unexpected in an audit of some exports."""
    outside = {draft.url + "/" for (export, _dataset, _slot), draft in scan.folders.items() if export not in scope}
    if not outside:
        return scan
    by_length: dict[int, set[str]] = {}
    for url in outside:
        by_length.setdefault(len(url), set()).add(url)
    unexpected = {path: why for path, why in scan.unexpected.items() if not any((path + "/")[:n] in urls for n, urls in by_length.items())}
    return Scan({window: draft for window, draft in scan.folders.items() if window[0] in scope}, unexpected)


def _duplicate_slot(scan: Scan, window: tuple[str, str, datetime], drafts: list[_FolderDraft]) -> _FolderDraft:
    """Several folders claim one window: the window keeps one, with an error naming all; the others are unexpected."""
    export, dataset, slot = window
    drafts.sort(key=lambda d: (not (d.data or d.manifests), d.key))
    kept, others = drafts[0], drafts[1:]
    urls = ", ".join(d.url for d in drafts)
    kept.findings.append(error("folder.duplicate_slot", kept.url, f"{len(drafts)} folders claim the export of {slot:%Y-%m-%dT%H:%MZ}: {urls}; none is trusted"))
    for other in others:
        scan.unexpected[other.url] = f"folder.duplicate_slot: claims the window of export {export!r} dataset {dataset!r} at {slot:%Y-%m-%dT%H:%MZ}, which {kept.url} claims too"
    return kept


def scan_destinations(settings: Settings, stores: Mapping[str, Store], now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[str]]:
    """What landed where, without validating: (export folders, unexpected objects, listing failures)."""
    folders: list[dict[str, Any]] = []
    unexpected: list[dict[str, str]] = []
    failures: list[str] = []
    for destination in settings.destinations:
        exports = [e for e in settings.exports if e.destination == destination.name]
        try:
            objects = stores[destination.name].list()
        except StorageError as e:
            failures.append(f"{destination.name}: {e}")
            continue
        found = sort_objects(objects, exports, stores[destination.name].url, now)
        for (export, dataset, slot), draft in sorted(found.folders.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            folders.append({"destination": destination.name, "export": export, "dataset_id": dataset, "scheduled": slot.strftime("%Y-%m-%dT%H:%M:%SZ"), "folder": draft.url,
                            "files": len(draft.data), "bytes": sum(o.size for o in draft.data), "manifests": len(draft.manifests)})
        unexpected += [{"path": p, "reason": r} for p, r in sorted(found.unexpected.items())]
    return folders, unexpected, failures


class Checker(Protocol):
    """Validates data files: in this process, or isolated in workers (validate.sandbox).

    `check_many` checks a batch of files at once (one message to a worker, not one per file) and
    answers each file in order, with its verdict or the StorageError that kept it from being read.
    """

    isolated: bool

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict: ...

    def check_many(self, items: Sequence[tuple[Source, str]], *, deep: bool) -> list[FileVerdict | StorageError]: ...


@runtime_checkable
class BatchChecker(Checker, Protocol):
    """A Checker that also deep-checks many files of one store where they lie (auditor.cluster).

    `deep_check` hands every file over before it returns (the audit's quick checks run meanwhile)
    and yields (key, verdict) as checks finish, or (key, reason) for a file it could not check:
    that file's window is then `unknown`, like a read error. It never raises. The workers open
    `store` themselves from its pickled form (URL and options), and only verdicts come back.
    """

    def deep_check(self, store: Store, files: Sequence[ObjectInfo]) -> Iterator[tuple[str, FileVerdict | str]]: ...


class InProcessChecker:
    """Validation in the audit's own threads: for trusted input and tests of the pure validators."""

    isolated = False

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict:
        return validate_data_file(source, name, deep=deep)

    def check_many(self, items: Sequence[tuple[Source, str]], *, deep: bool) -> list[FileVerdict | StorageError]:
        answers: list[FileVerdict | StorageError] = []
        for source, name in items:
            try:
                answers.append(validate_data_file(source, name, deep=deep))
            except StorageError as e:
                answers.append(e)
        return answers


QUICK_BATCH = 256  # files per message to a validation worker for quick checks (a footer each)
DEEP_BATCH_BYTES = 64 << 20  # about this much per message for deep checks (cut smaller to keep every worker busy)
DEEP_BATCH_FILES = 64
DEEP_MIN_BATCH_BYTES = 1 << 20  # a message to a local worker costs little: small audits are still spread over every worker
MANIFEST_BATCH = 64
# a file the catalog knows, written this long before an inventory report's scan or later, is not taken for gone when
# the report does not list it (S3 documents that a report may miss objects written just before its scan)
INVENTORY_MARGIN = timedelta(hours=1)


def _validate(
    scan: Scan,
    store: Store,
    known: Mapping[str, FileRecord],
    options: AuditOptions,
    rotation: tuple[int, int] | None,
    checked_at: datetime,  # wall-clock time of this audit: when files were read (not the as-of time)
    counters: dict[str, int],
    progress: Progress | None,
    checker: Checker,
) -> tuple[dict[str, FileRecord | str], list[FileRecord], list[str]]:
    """Check what the scan found: each file's record (reused or new) or the I/O error that stopped it, by key."""
    jobs: list[tuple[_FolderDraft, ObjectInfo, str]] = []
    for draft in scan.folders.values():
        jobs += [(draft, info, "data") for info in draft.data]
        jobs += [(draft, info, "manifest") for info in draft.manifests]
    unique_jobs = {info.key: (draft, info, role) for draft, info, role in jobs}
    footers = _FooterSizes()

    def needed(job: tuple[_FolderDraft, ObjectInfo, str]) -> Level:
        _draft, info, role = job
        if role != "data":
            return Level.FOOTER
        if options.deep or (rotation is not None and zlib.crc32(info.key.encode()) % rotation[0] == rotation[1]):
            return Level.DEEP
        return Level.FOOTER

    def reused(job: tuple[_FolderDraft, ObjectInfo, str]) -> FileRecord | None:
        """The stored record, when the file is unchanged and its verdict stands at the level needed."""
        draft, info, role = job
        cached = known.get(info.key)
        if cached is None or cached.role != role or not cached.unchanged(info):
            return None
        level = needed(job)
        if _still_valid(cached, level, rotated=rotation is not None and level is Level.DEEP):
            return cached if cached.folder_key == draft.key else cached._replace(folder_key=draft.key)
        return None

    # unchanged files whose verdict stands are settled here, in this thread (no I/O, no hand-over to a
    # worker thread); only the rest goes on to be checked
    outcomes: dict[str, FileRecord | str] = {}
    for key, job in unique_jobs.items():
        kept = reused(job)
        if kept is not None:
            outcomes[key] = kept
    counters["reused"] += len(outcomes)
    total, done = len(unique_jobs), len(outcomes)
    if progress and done:
        progress("validate", done, total)
    unique_jobs = {key: job for key, job in unique_jobs.items() if key not in outcomes}

    def check(unit: tuple[str, ...]) -> list[FileRecord | str]:
        """The records of one unit of files of one kind (or the I/O error that stopped each file)."""
        role = unique_jobs[unit[0]][2]
        if role == "manifest":
            found: list[FileRecord | str] = []
            for key in unit:
                draft, info, _role = unique_jobs[key]
                try:
                    found.append(_check_manifest(store, info, draft.key, checked_at))
                except StorageError as e:
                    found.append(str(e))
            return found
        deep = needed(unique_jobs[unit[0]]) is Level.DEEP
        return _check_data(store, [unique_jobs[key][:2] for key in unit], deep=deep, now=checked_at, checker=checker, footers=footers, known=known)

    # a BatchChecker gets every deep check at once; the rest is checked here meanwhile
    elsewhere: list[str] = []
    remote: Iterator[tuple[str, FileVerdict | str]] = iter(())
    if isinstance(checker, BatchChecker):
        elsewhere = [key for key, job in unique_jobs.items() if needed(job) is Level.DEEP and reused(job) is None]
        if elsewhere:
            remote = checker.deep_check(store, [unique_jobs[key][1] for key in elsewhere])
    sent_away = set(elsewhere)
    here = [key for key in unique_jobs if key not in sent_away]
    # where this process fetches the footers (quick checks of a remote store), one data file per dataset folder
    # first: its footer size tells the others how much to fetch. Otherwise one wave: manifests are read while
    # the validation workers start.
    waves = [here]
    if not getattr(store, "local", False) and not options.deep:
        firsts: dict[str, str] = {}
        for key in here:
            draft, _info, role = unique_jobs[key]
            if role == "data":
                firsts.setdefault(draft.key.rsplit("/", 1)[0], key)
        first_keys = set(firsts.values())
        waves = [list(firsts.values()), [k for k in here if k not in first_keys]]  # manifests with the rest, interleaved (_units)
    threads = max(1, options.workers)
    deep_total = sum(unique_jobs[k][1].size for k in here if unique_jobs[k][2] == "data" and needed(unique_jobs[k]) is Level.DEEP)
    deep_done = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for wave in waves:
            units = _units(wave, unique_jobs, needed, threads)
            futures = {pool.submit(check, unit): unit for unit in units}
            for future in as_completed(futures):
                unit = futures[future]
                for key, outcome in zip(unit, future.result(), strict=True):
                    outcomes[key] = outcome
                    counters["read"] += 1
                    if deep_total and unique_jobs[key][2] == "data" and needed(unique_jobs[key]) is Level.DEEP:
                        deep_done += unique_jobs[key][1].size
                done += len(unit)
                if progress:
                    progress("validate", done, total)
                    if deep_total:
                        progress("bytes", deep_done, deep_total)
    for key, answer in remote:
        if key not in unique_jobs or key in outcomes:
            continue
        draft, info, _role = unique_jobs[key]
        outcomes[key] = answer if isinstance(answer, str) else _keep_deep_check(_data_record(info, draft.key, answer, checked_at), known.get(key), info)
        counters["read"] += 1
        done += 1
        if progress:
            progress("validate", done, total)
    for key in elsewhere:
        if key not in outcomes:  # never dropped silently: a file without an answer is unknown
            outcomes[key] = "could not be deep-checked: no verdict came back for some files"
            counters["read"] += 1
    # deep checks of the rotation's turn that did not finish (no verdict, or "could not finish checking"): the turn
    # is taken again by the next sampled audit, not passed over (its files would wait a whole round, or for ever)
    counters["deep_unfinished"] += sum(
        1 for key, job in unique_jobs.items()
        if job[2] == "data" and needed(job) is Level.DEEP and (not isinstance(o := outcomes.get(key), FileRecord) or any(f.code in RETRY_CODES for f in o.findings))
    )
    records = [o for o in outcomes.values() if isinstance(o, FileRecord)]
    read_errors = sorted({o for o in outcomes.values() if isinstance(o, str)})
    return outcomes, records, read_errors


def _observed(scan: Scan, outcomes: Mapping[str, FileRecord | str]) -> Iterator[tuple[tuple[str, str, datetime], Folder]]:
    """Each export folder of the scan with what checking its files found, built one at a time. A manifest that lists
    only files of the other format is another export's (a dataset exported as JSON and as Parquet into the same
    folders: each dataflow writes its own): it is not compared with this export's files."""
    for ident, draft in scan.folders.items():
        own = file_format(draft.suffix)
        data, manifests, failures = [], [], []
        for info in draft.data:
            outcome = outcomes[info.key]
            if isinstance(outcome, str):
                failures.append(outcome)
            else:
                findings = outcome.findings
                if data_suffix(info.name) != draft.suffix:
                    mismatch = warning(
                        "file.compression_mismatch", info.url, f"named {data_suffix(info.name)}, but the export is configured for {draft.suffix}"
                    )
                    findings = (*findings, mismatch)
                data.append(ObservedFile(info.key, info.url, info.size, info.modified, info.etag, findings, outcome.records, outcome.schema))
        for info in draft.manifests:
            outcome = outcomes[info.key]
            if isinstance(outcome, str):
                failures.append(outcome)
            else:
                manifest = _manifest_of(outcome, info.url)
                if manifest is not None and manifest.entries and not outcome.findings and all(_other_format(e.name, own) for e in manifest.entries):
                    continue
                manifests.append(ObservedManifest(info.url, info.modified, manifest, outcome.findings))
        if draft.findings and data:  # the folder's own findings reach the window with its first file
            data[0] = data[0]._replace(findings=(*data[0].findings, *draft.findings))
        elif draft.findings and manifests:
            manifests[0] = manifests[0]._replace(findings=(*manifests[0].findings, *draft.findings))
        yield ident, Folder(draft.key, draft.url, draft.export_time, tuple(data), tuple(manifests), tuple(failures))


def _other_format(name: str, own: str | None) -> bool:
    """Whether `name` is a data file of the format an export of format `own` does not write."""
    suffix = data_suffix(name)
    return suffix is not None and own is not None and file_format(suffix) != own


def _units(
    keys: Sequence[str], jobs: Mapping[str, tuple[_FolderDraft, ObjectInfo, str]], needed: Callable[[tuple[_FolderDraft, ObjectInfo, str]], Level], threads: int
) -> list[tuple[str, ...]]:
    """Work units of one kind each: manifests; data files for a quick check, many per unit (one message
    to a validation worker for all); data files for a deep check, grouped by size, largest first."""
    manifests, quick, deep = [], [], []
    for key in keys:
        job = jobs[key]
        if job[2] != "data":
            manifests.append(key)
        elif needed(job) is Level.DEEP:
            deep.append(job[1])
        else:
            quick.append(key)
    units: list[tuple[str, ...]] = [
        tuple(u.key for u in unit)
        for unit in plan_batches(deep, threads=threads, batch_bytes=DEEP_BATCH_BYTES, batch_files=DEEP_BATCH_FILES, min_batch_bytes=DEEP_MIN_BATCH_BYTES)
    ]
    size = max(1, min(QUICK_BATCH, -(-len(quick) // (4 * threads))))  # enough units to keep every thread busy
    quick_units = [tuple(quick[i : i + size]) for i in range(0, len(quick), size)]
    manifest_units = [tuple(manifests[i : i + MANIFEST_BATCH]) for i in range(0, len(manifests), MANIFEST_BATCH)]
    # interleaved: manifests are read and parsed in this process, footers in the validation workers, so
    # each goes on while the other does (manifests last would leave the workers idle at the end)
    units += [unit for pair in itertools.zip_longest(quick_units, manifest_units) for unit in pair if unit is not None]
    return units


def _still_valid(cached: FileRecord, needed: Level, *, rotated: bool) -> bool:
    """Whether an unchanged file's stored verdict stands, so it need not be read again."""
    if any(f.code in RETRY_CODES for f in cached.findings):
        return False  # "could not finish checking" is retried
    if any(f.is_error for f in cached.findings):
        return True  # the same bytes stay bad; a deeper read adds nothing
    if rotated:
        return False  # its turn in the --sample rotation: verify the bytes again
    return cached.level >= needed


class _FooterSizes:
    """Learns how big a dataset's Parquet footers are, so quick checks fetch little more than that."""

    def __init__(self) -> None:
        self._tails: dict[str, int] = {}

    def tail_for(self, group: str) -> int | None:
        return self._tails.get(group)

    def learn(self, group: str, source: ObjectSource) -> None:
        tail = source.footer_tail()
        if tail is not None:
            self._tails[group] = tail


def _check_data(
    store: Store,
    files: Sequence[tuple[_FolderDraft, ObjectInfo]],
    *,
    deep: bool,
    now: datetime,
    checker: Checker,
    footers: _FooterSizes,
    known: Mapping[str, FileRecord],
) -> list[FileRecord | str]:
    """Check data files in one batch: the records in order, or the I/O error that stopped each file.

    For a quick check the ranged reads happen here, in the I/O thread, and an isolated worker only
    parses; a deep check reads the whole file in the worker (which reads the next one meanwhile).
    """
    answers: list[FileRecord | str] = []
    items: list[tuple[Source, str]] = []
    positions: list[int] = []
    for draft, info in files:
        source = ObjectSource(store, info)
        if not deep and not getattr(store, "local", False):
            group = draft.key.rsplit("/", 1)[0]
            try:
                source = source.with_prefetch(info.name, tail=footers.tail_for(group))
            except StorageError as e:
                answers.append(str(e))
                continue
            footers.learn(group, source)
        positions.append(len(answers))
        answers.append("")
        items.append((source, info.name))
    verdicts = checker.check_many(items, deep=deep) if items else []
    for position, verdict in zip(positions, verdicts, strict=True):
        draft, info = files[position]
        if isinstance(verdict, StorageError):
            answers[position] = str(verdict)
        else:
            answers[position] = _keep_deep_check(_data_record(info, draft.key, verdict, now), known.get(info.key), info)
    return answers


def _data_record(info: ObjectInfo, folder_key: str, verdict: FileVerdict, now: datetime) -> FileRecord:
    return FileRecord(
        info.key,
        folder_key,
        "data",
        info.size,
        info.etag,
        info.modified,
        int(verdict.level),
        now,
        now if verdict.level is Level.DEEP else None,
        verdict.records,
        verdict.findings,
        None,
        None if verdict.schema is None else sys.intern(verdict.schema),  # a dataset's files share one schema text (each verdict brings its own copy)
    )


def _keep_deep_check(record: FileRecord, cached: FileRecord | None, info: ObjectInfo) -> FileRecord:
    """An unchanged file keeps the date of its last deep check when this check did not go as deep."""
    if cached is not None and cached.unchanged(info) and cached.deep_at and record.deep_at is None:
        return record._replace(deep_at=cached.deep_at, level=max(record.level, cached.level))
    return record


def _check_manifest(store: Store, info: ObjectInfo, folder_key: str, now: datetime) -> FileRecord:
    if info.size > MAX_MANIFEST:
        findings: tuple[Finding, ...] = (error("manifest.too_large", info.url, f"{info.size} bytes: larger than any real manifest"),)
        manifest = None
    else:
        manifest, found = parse_manifest(store.read_range(info.key, 0, info.size) if info.size else b"", info.url)
        findings = tuple(found)
    content = packed(json.dumps(manifest.as_dict(), separators=(",", ":"))) if manifest else None
    return FileRecord(info.key, folder_key, "manifest", info.size, info.etag, info.modified, int(Level.DEEP), now, now, None, findings, content)


def _manifest_of(record: FileRecord, url: str) -> Manifest | None:
    content = record.document()
    if content is None:
        return None
    manifest, _ = manifest_from_json(content, url)
    return manifest


def _reconcile_export(
    export: ExportSettings,
    judged: Mapping[tuple[str, str, datetime], WindowResult],
    *,
    listing_failed: bool,
    now: datetime,
    runs: Sequence[Run] | None = None,
    flow: Flow | None = None,
    carried: Mapping[WindowKey, StoredWindow] | None = None,
    root_url: str = "",
) -> list[ExportResult]:
    schedule = export.schedule
    warnings = export_warnings(export, flow, now=now)
    results = []
    carried = carried or {}
    for dataset in export.datasets:
        windows: list[WindowResult] = []
        for slot in schedule.slots(end=now):
            window = Window(export.name, dataset, slot, slot + export.grace)
            stored = carried.get((export.name, dataset, slot))
            if stored is not None:
                windows.append(_carry(window, stored, root_url))
                continue
            result = judged.get((export.name, dataset, slot))  # a folder landed for it (_judge)
            windows.append(result if result is not None else reconcile_window(window, None, manifest_expected=export.manifest, listing_failed=listing_failed, now=now))
        windows = flag_schema_drift(windows)
        if runs is not None:
            step = schedule.step if not schedule.one_time else timedelta(days=1)
            windows = join_runs(windows, runs, step=step, dataset=dataset, single_dataset=len(export.datasets) == 1, now=now)
        active = schedule.end is None or now < schedule.end
        point = restore_point(windows, incremental=schedule.incremental)
        results.append(ExportResult(export.name, export.destination, dataset, schedule.incremental, tuple(windows), point, now, active and not schedule.one_time, warnings))
    return results


def _carry(window: Window, stored: StoredWindow, root_url: str) -> WindowResult:
    """A settled window as the catalog last judged it (auditor.listing): its status, counts and findings."""
    folder = None
    if stored.folder_key is not None:
        summary = Summary(stored.files, stored.bytes, stored.records, stored.schema, stored.deep_files, stored.oldest_deep_at)
        folder = Folder(stored.folder_key, f"{root_url}/{stored.folder_key}", window.scheduled, summary=summary)
    return WindowResult(window, Status(stored.status), folder, stored.findings, carried=True)


ENDING_SOON = timedelta(days=14)


def export_warnings(export: ExportSettings, flow: Flow | None, *, now: datetime) -> tuple[Finding, ...]:
    """Early warnings about an export as a whole: it stops soon, its flow is off or was changed."""
    found: list[Finding] = []
    end = export.schedule.end
    if end is not None and now < end <= now + ENDING_SOON and not export.schedule.one_time:
        found.append(warning("export.ending", export.name, f"the schedule ends {end:%Y-%m-%dT%H:%MZ}: exports stop silently then unless endTime is moved"))
    if flow is not None:
        if flow.state and flow.state != "enabled":
            found.append(warning("flow.disabled", export.name, f"dataflow {flow.id} is {flow.state}: no exports will run"))
        try:
            live = parse_schedule(flow.schedule_params)
        except ScheduleError as e:
            found.append(warning("flow.schedule_changed", export.name, f"dataflow {flow.id} has a schedule the auditor cannot read: {e}"))
        else:
            mine = export.schedule
            if (live.export_mode, live.time_unit, live.interval, live.start, live.end) != (mine.export_mode, mine.time_unit, mine.interval, mine.start, mine.end):
                found.append(warning("flow.schedule_changed", export.name, f"dataflow {flow.id}'s schedule differs from this export's: run `auditor flows sync`"))
    return tuple(found)


def _assurance(
    file_records: Mapping[str, list[FileRecord]], counters: Mapping[str, int], stores: Mapping[str, Store], carried: Sequence[tuple[str, WindowResult]]
) -> Assurance:
    """What the audit's data files add up to: those it listed, and those of the windows it carried (as recorded),
    each folder once (two exports of one dataset share its folders)."""
    data = [r for records in file_records.values() for r in records if r.role == "data"]
    deep = [r.deep_at for r in data if r.deep_at is not None]
    listed = {(name, r.folder_key) for name, records in file_records.items() for r in records}
    by_folder = {(name, w.folder.key): w.folder.summary for name, w in carried if w.folder is not None and w.folder.summary is not None}
    summaries = [s for key, s in by_folder.items() if key not in listed]
    oldest = [*deep, *(s.oldest_deep_at for s in summaries if s.oldest_deep_at is not None)]
    return Assurance(
        files=len(data) + sum(s.files for s in summaries),
        deep_verified=len(deep) + sum(s.deep_files for s in summaries),
        oldest_deep_check=min(oldest) if oldest else None,
        read_files=counters["read"],
        reused_files=counters["reused"],
        bytes_read=sum(s.bytes_read for s in stores.values()),
    )


def _same_time(a: datetime | None, b: datetime | None) -> bool:
    if a == b:
        return True
    if a is None or b is None:
        return False
    return abs((a - b).total_seconds()) < 1e-3
