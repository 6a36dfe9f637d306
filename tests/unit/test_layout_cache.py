"""Layout.match parses a folder name once and gives every file of it its own name (issue 10)."""

from __future__ import annotations

from auditor.layout import parse_layout
from tests.conftest import t


def test_a_folder_is_parsed_once_and_every_file_keeps_its_own_name() -> None:
    layout = parse_layout("aep/%DATASET_ID%/exportTime=%EXPORT_TIME%")
    first = layout.match("aep/ds1/exportTime=202611250300/part-0.parquet")
    second = layout.match("aep/ds1/exportTime=202611250300/sub/part-1.parquet")
    assert first is not None and second is not None
    assert (first.file, second.file) == ("part-0.parquet", "sub/part-1.parquet")
    assert first.folder == second.folder == "aep/ds1/exportTime=202611250300" and first.dataset_folder == "aep/ds1"
    assert first.export_time == second.export_time == t("2026-11-25T03:00")
    assert len(layout._folders) == 1
    assert layout.match("aep/ds1/exportTime=20261125/part-0.parquet").export_time is None  # type: ignore[union-attr]
    assert layout.match("aep/ds1/exportTime=202611250300") is None  # a folder, no file
    assert layout.match("other/ds1/exportTime=202611250300/part-0.parquet") is None


def test_a_datetime_format_with_slashes_matches_as_before() -> None:
    layout = parse_layout("%DATASET_ID%/%DATETIME(yyyy/MM/dd)%")
    match = layout.match("ds1/2026/11/25/part-0.parquet")
    assert match is not None and match.folder == "ds1/2026" and match.export_time is None  # a time cannot span folders
    assert parse_layout("%DATASET_ID%/%DATETIME(yyyyMMdd)%") == parse_layout("%DATASET_ID%/%DATETIME(yyyyMMdd)%")
