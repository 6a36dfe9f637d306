from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from auditor.findings import error
from auditor.reconcile import Folder, ObservedFile, ObservedManifest, Status, Window, WindowResult, overall_status, reconcile_window, restore_point, summarised
from auditor.validate.manifest import Manifest, ManifestEntry
from tests.conftest import t

SLOT = t("2026-11-27T03:00")
WINDOW = Window("web", "ds1", SLOT, SLOT + timedelta(hours=1))
BEFORE, AFTER = t("2026-11-27T03:30"), t("2026-11-27T05:00")
KEY = "ds1/exportTime=202611270300"


LANDED, MANIFEST_LANDED = t("2026-11-27T03:10"), t("2026-11-27T03:11")


def data(name: str = "part-0.parquet", size: int = 100, modified: datetime = LANDED, bad: bool = False, records: int | None = 5) -> ObservedFile:
    findings = (error("parquet.bad_magic", name, "truncated"),) if bad else ()
    return ObservedFile(f"{KEY}/{name}", f"file:///r/{KEY}/{name}", size, modified, None, findings, records)


def manifest(*entries: tuple[str, int], scheduled: datetime = SLOT, modified: datetime = MANIFEST_LANDED) -> ObservedManifest:
    body = Manifest("run-1", scheduled, tuple(ManifestEntry(f"/r/{KEY}", n, s) for n, s in entries))
    return ObservedManifest(f"file:///r/{KEY}/manifest-d-run-1.json", modified, body)


def folder(*files: ObservedFile, manifests: tuple[ObservedManifest, ...] = (), read_errors: tuple[str, ...] = ()) -> Folder:
    return Folder(KEY, f"file:///r/{KEY}", SLOT, tuple(files), manifests, read_errors)


CASES = [
    # (description, folder, manifest expected, listing failed, now, status, error codes)
    ("nothing yet, inside grace", None, True, False, BEFORE, Status.PENDING, set()),
    ("nothing after the deadline", None, True, False, AFTER, Status.MISSING, {"window.missing"}),
    ("listing failed", None, True, True, AFTER, Status.UNKNOWN, set()),
    ("read failure", folder(data(), read_errors=("boom",)), False, False, AFTER, Status.UNKNOWN, set()),
    ("complete with manifest", folder(data(), manifests=(manifest(("part-0.parquet", 100)),)), True, False, AFTER, Status.OK, set()),
    ("no manifest configured", folder(data()), False, False, AFTER, Status.OK, set()),
    ("landed late", folder(data(modified=t("2026-11-27T04:30"))), False, False, AFTER, Status.LATE, set()),
    ("late manifest makes it late", folder(data(), manifests=(manifest(("part-0.parquet", 100), modified=t("2026-11-27T04:01")),)), True, False, AFTER, Status.LATE, set()),
    ("manifest not yet there, inside grace", folder(data()), True, False, BEFORE, Status.PENDING, set()),
    ("manifest never came", folder(data()), True, False, AFTER, Status.INVALID, {"manifest.missing"}),
    ("listed file not yet there, inside grace", folder(data(), manifests=(manifest(("part-0.parquet", 100), ("part-1.parquet", 9)),)), True, False, BEFORE, Status.PENDING, set()),
    ("listed file absent", folder(data(), manifests=(manifest(("part-0.parquet", 100), ("part-1.parquet", 9)),)), True, False, AFTER, Status.INVALID, {"manifest.file_absent"}),
    ("size disagrees", folder(data(), manifests=(manifest(("part-0.parquet", 101)),)), True, False, AFTER, Status.INVALID, {"manifest.size_mismatch"}),
    ("unlisted data file", folder(data(), data("part-9.parquet"), manifests=(manifest(("part-0.parquet", 100)),)), True, False, AFTER, Status.INVALID, {"manifest.unlisted_file"}),
    ("scheduled time disagrees", folder(data(), manifests=(manifest(("part-0.parquet", 100), scheduled=t("2026-11-27T06:00")),)), True, False, AFTER, Status.INVALID, {"manifest.scheduled_time"}),
    ("corrupt file", folder(data(bad=True)), False, False, AFTER, Status.INVALID, {"parquet.bad_magic"}),
    ("corrupt file inside grace is invalid at once", folder(data(bad=True)), False, False, BEFORE, Status.INVALID, {"parquet.bad_magic"}),
    ("unparseable manifest only", folder(manifests=(ObservedManifest("m", SLOT, None, (error("manifest.unreadable", "m", "x"),)),)), True, False, AFTER, Status.INVALID, {"manifest.unreadable"}),
]


@pytest.mark.parametrize("description, observed, expected_manifest, failed, now, status, codes", CASES, ids=[c[0] for c in CASES])
def test_window_status(description: str, observed: Folder | None, expected_manifest: bool, failed: bool, now: datetime, status: Status, codes: set[str]) -> None:
    result = reconcile_window(WINDOW, observed, manifest_expected=expected_manifest, listing_failed=failed, now=now)
    assert result.status is status
    assert {f.code for f in result.findings if f.is_error} == codes


def test_two_manifests_are_read_together_with_a_warning() -> None:
    first = manifest(("part-0.parquet", 100))
    second = ObservedManifest(f"file:///r/{KEY}/manifest-d-run-2.json", SLOT, Manifest("run-2", SLOT, (ManifestEntry("", "part-1.parquet", 50),)))
    result = reconcile_window(WINDOW, folder(data(), data("part-1.parquet", 50), manifests=(first, second)), manifest_expected=True, listing_failed=False, now=AFTER)
    assert result.status is Status.OK
    assert [f.code for f in result.findings] == ["manifest.multiple"]


def test_records_are_null_unless_every_file_was_counted() -> None:
    counted = reconcile_window(WINDOW, folder(data(), data("part-1.parquet", records=7)), manifest_expected=False, listing_failed=False, now=AFTER)
    partly = reconcile_window(WINDOW, folder(data(), data("part-1.parquet", records=None)), manifest_expected=False, listing_failed=False, now=AFTER)
    assert (counted.records, counted.files, counted.bytes) == (12, 2, 200)
    assert partly.records is None


def _results(*statuses: Status) -> list[WindowResult]:
    return [WindowResult(Window("web", "ds1", SLOT + timedelta(hours=3 * i), SLOT), status) for i, status in enumerate(statuses)]


S = Status


@pytest.mark.parametrize(
    "statuses, incremental, until, broken",
    [
        ((S.OK, S.LATE, S.EMPTY, S.OK), True, 3, None),
        ((S.OK, S.MISSING, S.OK), True, 0, 1),
        ((S.INVALID, S.OK), True, None, 0),
        ((S.OK, S.OK, S.PENDING), True, 1, None),
        ((S.OK, S.PENDING, S.OK), True, 0, None),  # grace longer than the interval: the chain waits, it is not broken
        ((S.OK, S.UNKNOWN, S.OK), True, 0, 1),
        ((S.OK,), False, 0, None),
        ((S.MISSING,), False, None, 0),
        ((), True, None, None),
    ],
)
def test_restore_point(statuses: tuple[Status, ...], incremental: bool, until: int | None, broken: int | None) -> None:
    results = _results(*statuses)
    point = restore_point(results, incremental=incremental)
    assert point.restorable_until == (results[until].window.scheduled if until is not None else None)
    assert point.broken_at == (results[broken] if broken is not None else None)


@pytest.mark.parametrize(
    "counts, errors, verdict",
    [
        ({S.OK: 3}, 0, ("compliant", 0)),
        ({S.OK: 3, S.LATE: 1, S.PENDING: 1, S.EMPTY: 1}, 0, ("compliant", 0)),
        ({S.OK: 3, S.MISSING: 1, S.UNKNOWN: 1}, 1, ("not_compliant", 1)),
        ({S.INVALID: 1}, 0, ("not_compliant", 1)),
        ({S.OK: 1, S.UNKNOWN: 1}, 0, ("incomplete", 3)),
        ({S.OK: 1}, 1, ("incomplete", 3)),
    ],
)
def test_overall_status(counts: dict[Status, int], errors: int, verdict: tuple[str, int]) -> None:
    assert overall_status(counts, errors=errors) == verdict


def test_schema_drift_between_windows_is_a_warning() -> None:
    from auditor.reconcile import flag_schema_drift
    from auditor.validate.schema import canonical_schema

    a = canonical_schema([("id", "int64"), ("city", "string")])
    b = canonical_schema([("id", "string"), ("city", "string"), ("zip", "string")])

    def result(hours: int, *schemas: str) -> WindowResult:
        when = SLOT + timedelta(hours=hours)
        files = tuple(ObservedFile(f"k{hours}/{i}", f"u{hours}/{i}", 1, when, None, (), 1, s) for i, s in enumerate(schemas))
        return WindowResult(Window("web", "ds1", when, when), Status.OK, Folder(f"k{hours}", f"u{hours}", when, files))

    windows = [result(0, a), result(3, a, a), result(6, b), result(9, a, b)]
    flagged = flag_schema_drift(windows)

    assert [[f.code for f in r.findings] for r in flagged] == [[], [], ["parquet.schema_drift"], ["parquet.schema_mixed"]]
    # the audit judges a folder as it is built and keeps its summary (auditor.audit._judge): drift reads the same from it
    kept = [summarised(w) for w in windows]
    assert all(w.folder is not None and w.folder.summary is not None and not w.folder.data for w in kept)
    assert flag_schema_drift(kept) == [summarised(w) for w in flagged]
    assert "added zip" in flagged[2].findings[0].message and "changed id int64 -> string" in flagged[2].findings[0].message
    assert all(r.status is Status.OK and f.severity.value == "warning" for r in flagged for f in r.findings)


def test_a_summarised_window_keeps_what_the_join_with_runs_reads() -> None:
    """The runs a window's manifests name, its counts and its URL: the join gives the same verdicts from the summary."""
    from auditor.flows.models import Run
    from auditor.runs import join_runs

    named = Run("run-1", "flow", "success", SLOT, SLOT, SLOT + timedelta(minutes=9), 10, 2)  # reports more files than landed
    other = Run("run-2", "flow", "failed", SLOT, SLOT + timedelta(minutes=1), SLOT + timedelta(minutes=2), None, None, errors=(("E1", "boom"),))
    judged = reconcile_window(WINDOW, folder(data("part-0.parquet"), manifests=(manifest(("part-0.parquet", 100)),)), manifest_expected=True, listing_failed=False, now=AFTER)
    kept = summarised(judged)

    assert kept.folder is not None and kept.folder.summary is not None and not kept.folder.manifests
    assert (kept.files, kept.bytes, kept.records, kept.run_ids) == (judged.files, judged.bytes, judged.records, {"run-1"})
    full = join_runs([judged], [named, other], step=timedelta(hours=3), dataset="ds1", single_dataset=True, now=AFTER)
    short = join_runs([kept], [named, other], step=timedelta(hours=3), dataset="ds1", single_dataset=True, now=AFTER)
    assert [(w.status, w.findings) for w in short] == [(w.status, w.findings) for w in full]
    # judged against run-1, which the manifest names (not run-2, the failed run that started in the slot)
    assert short[0].status is Status.INVALID
    assert [(f.code, f.message) for f in short[0].findings] == [("run.silent_loss", "dataflow run run-1 reported success, but 2 files reported, 1 landed; 10 records reported, 5 landed")]


def test_a_summarised_folder_with_no_data_file_that_the_run_turns_empty_holds_no_records() -> None:
    """Only the manifest landed, inside grace: the window is pending when its folder is summarised; the run the
    manifest names succeeded with nothing to export, so the join makes it empty, with 0 records, as unsummarised."""
    from auditor.flows.models import Run
    from auditor.runs import join_runs

    run = Run("run-1", "flow", "success", SLOT, SLOT, SLOT + timedelta(minutes=5), 0, 0)
    judged = reconcile_window(WINDOW, folder(manifests=(manifest(("part-0.parquet", 100)),)), manifest_expected=True, listing_failed=False, now=BEFORE)
    assert judged.status is Status.PENDING and judged.records is None

    full = join_runs([judged], [run], step=timedelta(hours=3), dataset="ds1", single_dataset=True, now=BEFORE)
    short = join_runs([summarised(judged)], [run], step=timedelta(hours=3), dataset="ds1", single_dataset=True, now=BEFORE)
    assert [(w.status, w.files, w.records) for w in short] == [(w.status, w.files, w.records) for w in full] == [(Status.EMPTY, 0, 0)]


def test_a_folder_whose_manifest_lists_no_file_holds_no_records_so_a_run_that_reports_some_is_a_silent_loss() -> None:
    """The manifest says the export wrote nothing; the run says it exported 30 records of this dataset (an export of
    several datasets, so the files the run counts are not this dataset's alone): the records did not land."""
    from auditor.flows.models import Run
    from auditor.runs import join_runs

    run = Run("run-1", "flow", "success", SLOT, SLOT, SLOT + timedelta(minutes=9), 60, 4, {"ds1": 30, "ds2": 30})
    judged = reconcile_window(WINDOW, folder(manifests=(manifest(),)), manifest_expected=True, listing_failed=False, now=AFTER)
    assert judged.status is Status.OK and judged.records == 0 == summarised(judged).records
    for window in (judged, summarised(judged)):
        [joined] = join_runs([window], [run], step=timedelta(hours=3), dataset="ds1", single_dataset=False, now=AFTER)
        assert joined.status is Status.INVALID
        assert [(f.code, f.message) for f in joined.findings] == [("run.silent_loss", "dataflow run run-1 reported success, but 30 records reported, 0 landed")]
    quiet = Run("run-1", "flow", "success", SLOT, SLOT, SLOT + timedelta(minutes=9), 0, 0, {"ds1": 0, "ds2": 0})
    [joined] = join_runs([summarised(judged)], [quiet], step=timedelta(hours=3), dataset="ds1", single_dataset=False, now=AFTER)
    assert joined.status is Status.OK and joined.records == 0 and joined.findings == ()
