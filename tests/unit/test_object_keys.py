"""Object keys anyone with bucket write access can choose: unsafe keys join no window, and two folders
that claim one window are reported, never merged (layout.unsafe_key, audit.sort_objects)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from auditor.audit import Scan, sort_objects
from auditor.config import ExportSettings
from auditor.errors import LayoutError
from auditor.layout import parse_layout, unsafe_key
from auditor.storage.base import ObjectInfo
from tests.conftest import t

DS = "5ef3e3259ad2a1191ab7dd7d"
ROOT = "s3://acme-aep"
NOW = t("2026-11-28T12:00")
SLOT = "exportTime=202611270300"


def export(template: str | None = None, *, path: str = "aep") -> ExportSettings:
    return ExportSettings.model_validate({
        "name": "web", "destination": "backups", "datasets": [DS], "format": "parquet", "path": path, "folder_template": template,
        "schedule": {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 3, "startTime": "2026-11-25T00:00:00Z"},
    })


def objects(*keys: str) -> list[ObjectInfo]:
    return [ObjectInfo(key, ROOT, 100, t("2026-11-27T03:10"), "etag") for key in keys]


def joined(scan: Scan) -> dict[datetime, list[str]]:
    """Which keys each window was given."""
    return {slot: sorted(o.key for o in (draft.data + draft.manifests)) for (_, _, slot), draft in scan.folders.items()}


@pytest.mark.parametrize(
    "key, says",
    [
        ("aep/../ds/exportTime=202611270300/part-0.parquet", "a '..' path segment"),
        ("aep/./ds/exportTime=202611270300/part-0.parquet", "a '.' path segment"),
        ("ds//exportTime=202611270300/part-0.parquet", "an empty path segment"),
        ("/ds/exportTime=202611270300/part-0.parquet", "an empty path segment"),
        ("ds/exportTime=202611270300/../part-0.parquet", "a '..' path segment"),
        ("..", "a '..' path segment"),
    ],
)
def test_keys_with_empty_dot_or_dot_dot_segments_are_unsafe_and_match_no_layout(key: str, says: str) -> None:
    assert unsafe_key(key) == f"unsafe object key: it has {says}"
    for template in (None, "%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%", "%DESTINATION%/%SANDBOX_NAME%/%DATASET_ID%/%EXPORT_TIME%"):
        assert parse_layout(template).match(key) is None


@pytest.mark.parametrize("key", ["ds/exportTime=202611270300/part-0.parquet", "a..b/ds/exportTime=202611270300/.part-0.parquet", "...x/y"])
def test_dots_inside_a_name_are_not_unsafe(key: str) -> None:
    assert unsafe_key(key) is None


@pytest.mark.parametrize("template", ["../%DATASET_ID%/%EXPORT_TIME%", "a//%DATASET_ID%/%EXPORT_TIME%", "%DATASET_ID%/./%EXPORT_TIME%"])
def test_a_template_with_an_empty_dot_or_dot_dot_folder_is_rejected(template: str) -> None:
    with pytest.raises(LayoutError, match="can match no export"):
        parse_layout(template)


def test_a_dot_dot_key_that_a_free_macro_would_match_is_unexpected_and_joins_no_window() -> None:
    sandboxed = export("%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%")
    real = f"aep/prod/{DS}/{SLOT}/part-00000-a.gz.parquet"
    hostile = [f"aep/../{DS}/{SLOT}/part-00001-b.gz.parquet", f"aep/prod//{DS}/{SLOT}/part-00002-c.gz.parquet", f"aep/./{DS}/{SLOT}/part-00003-d.gz.parquet"]
    scan = sort_objects(objects(real, *hostile), [sandboxed], ROOT, NOW)
    assert joined(scan) == {t("2026-11-27T03:00"): [real]}
    assert {url: reason.split(":")[0] for url, reason in scan.unexpected.items()} == {f"{ROOT}/{key}": "unsafe object key" for key in hostile}


def test_an_unsafe_key_is_reported_even_where_no_export_could_match_it() -> None:
    scan = sort_objects(objects(f"aep/{DS}//{SLOT}/part-0.parquet"), [export()], ROOT, NOW)
    assert scan.folders == {} and scan.unexpected == {f"{ROOT}/aep/{DS}//{SLOT}/part-0.parquet": "unsafe object key: it has an empty path segment"}


@pytest.mark.parametrize(
    "template, first, second",
    [
        # a free macro lets any folder name stand in for the real one
        ("%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%", f"aep/prod/{DS}/{SLOT}", f"aep/attacker/{DS}/{SLOT}"),
        # %DATASET_ID% next to a free macro: two folders of one dataset
        ("%DATASET_ID%_%DESTINATION%/%EXPORT_TIME%", f"aep/{DS}_s3/202611270300", f"aep/{DS}_s3-copy/202611270300"),
        # %DATETIME% with seconds: two folder names in one minute
        ("%DATASET_ID%/%DATETIME(YYYYMMdd_HHmmss)%", f"aep/{DS}/20261127_030000", f"aep/{DS}/20261127_030059"),
    ],
)
def test_two_folders_that_claim_one_window_are_a_finding_on_it_naming_both_never_a_merge(template: str, first: str, second: str) -> None:
    other_slot = parse_layout(f"aep/{template}").folder_for(DS, t("2026-11-27T06:00"))
    listing = objects(f"{first}/part-00000-a.gz.parquet", f"{second}/part-00000-b.gz.parquet", f"{other_slot}/part-00000-c.gz.parquet")
    scan = sort_objects(listing, [export(template)], ROOT, NOW)
    kept, other = sorted((first, second))
    assert joined(scan) == {t("2026-11-27T03:00"): [f"{kept}/part-00000-{'a' if kept == first else 'b'}.gz.parquet"], t("2026-11-27T06:00"): [f"{other_slot}/part-00000-c.gz.parquet"]}
    [finding] = scan.folders[("web", DS, t("2026-11-27T03:00"))].findings
    assert (finding.code, finding.is_error) == ("folder.duplicate_slot", True)
    assert f"{ROOT}/{first}" in finding.message and f"{ROOT}/{second}" in finding.message
    assert scan.unexpected == {f"{ROOT}/{other}": scan.unexpected[f"{ROOT}/{other}"]} and f"{ROOT}/{kept}" in scan.unexpected[f"{ROOT}/{other}"]
    assert all(not draft.findings for window, draft in scan.folders.items() if window[2] != t("2026-11-27T03:00"))


def test_of_two_folders_for_one_window_the_one_that_landed_is_kept() -> None:
    template = "%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%"
    scan = sort_objects(objects(f"aep/a/{DS}/{SLOT}/_SUCCESS", f"aep/b/{DS}/{SLOT}/part-00000-b.gz.parquet"), [export(template)], ROOT, NOW)
    assert joined(scan) == {t("2026-11-27T03:00"): [f"aep/b/{DS}/{SLOT}/part-00000-b.gz.parquet"]}


def test_one_folder_seen_through_many_files_is_one_claim() -> None:
    keys = [f"aep/{DS}/{SLOT}/part-0000{i}-x.gz.parquet" for i in range(3)]
    scan = sort_objects(objects(*keys), [export()], ROOT, NOW)
    assert joined(scan) == {t("2026-11-27T03:00"): keys} and scan.unexpected == {}


def test_files_written_after_the_as_of_time_neither_claim_nor_contest_a_window() -> None:
    late = ObjectInfo(f"aep/attacker/{DS}/{SLOT}/part-1.gz.parquet", ROOT, 1, NOW + timedelta(minutes=1), None)
    scan = sort_objects([*objects(f"aep/prod/{DS}/{SLOT}/part-0.gz.parquet"), late], [export("%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%")], ROOT, NOW)
    assert joined(scan) == {t("2026-11-27T03:00"): [f"aep/prod/{DS}/{SLOT}/part-0.gz.parquet"]}
