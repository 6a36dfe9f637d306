from __future__ import annotations

import pytest

from auditor.errors import LayoutError
from auditor.layout import parse_layout
from tests.conftest import t


@pytest.mark.parametrize(
    "template, key, dataset, when, folder, file",
    [
        (None, "ds1/exportTime=202611250300/part-0.parquet", "ds1", "2026-11-25T03:00", "ds1/exportTime=202611250300", "part-0.parquet"),
        (None, "ds1/exportTime=202611250300/sub/part-0.parquet", "ds1", "2026-11-25T03:00", "ds1/exportTime=202611250300", "sub/part-0.parquet"),
        ("%DESTINATION%_%DATASET_ID%_%DATETIME(YYYYMMdd_HHmmss)%", "s3_ds1_20261125_030000/p.json.gz", "ds1", "2026-11-25T03:00", "s3_ds1_20261125_030000", "p.json.gz"),
        ("%SANDBOX_NAME%/%DATASET_ID%/%DATETIME(yyyy-MM-dd HH:mm)%", "prod/ds2/2026-11-25 03:00/p.parquet", "ds2", "2026-11-25T03:00", "prod/ds2/2026-11-25 03:00", "p.parquet"),
    ],
)
def test_templates_match_keys(template: str | None, key: str, dataset: str, when: str, folder: str, file: str) -> None:
    match = parse_layout(template).match(key)
    assert match is not None
    assert (match.dataset_id, match.export_time, match.folder, match.file) == (dataset, t(when), folder, file)


@pytest.mark.parametrize("time_text", ["2026112503", "2026112503000", "202613250300", "20261125030x", ""])
def test_malformed_export_times_match_with_no_time(time_text: str) -> None:
    match = parse_layout(None).match(f"ds1/exportTime={time_text}/part-0.parquet")
    assert match is not None and match.export_time is None and match.time_text == time_text


@pytest.mark.parametrize(
    "template, time_text",
    [
        (None, "202611250300".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))),  # Arabic-Indic digits
        (None, "202611250300".translate(str.maketrans("0123456789", "０１２３４５６７８９"))),  # fullwidth digits
        (None, "2026112503" + "０" * 2),  # one part only
        ("%DATASET_ID%/%DATETIME(yyyy-MM-dd HH:mm)%", "２０２６-11-25 03:00"),
    ],
)
def test_digits_of_other_scripts_are_no_export_time(template: str | None, time_text: str) -> None:
    """`\\d`, int() and strptime take any script's digits: a look-alike folder named in them claimed the window
    AEP writes in ASCII (a missing export was ok, and restored from the look-alike)."""
    layout = parse_layout(template)
    match = layout.match(f"ds1/exportTime={time_text}/p.parquet" if template is None else f"ds1/{time_text}/p.parquet")
    assert match is not None and match.export_time is None and match.time_text == time_text


@pytest.mark.parametrize("key", ["ds1/README.md", "ds1/other=202611250300/part-0.parquet", "part-0.parquet"])
def test_keys_outside_the_layout_do_not_match(key: str) -> None:
    assert parse_layout(None).match(key) is None


def test_folder_for_expands_the_template() -> None:
    layout = parse_layout("%DATASET_ID%/%DATETIME(YYYYMMdd_HHmmss)%")
    assert layout.folder_for("ds1", t("2026-11-25T03:00")) == "ds1/20261125_030000"
    assert parse_layout(None).folder_for("ds1", t("2026-11-25T03:00")) == "ds1/exportTime=202611250300"


@pytest.mark.parametrize(
    "template, datasets",
    [
        ("%DATASET_ID%", 1),
        ("%DATASET_ID%/%EXPORT_TIME%/%EXPORT_TIME%", 1),
        ("%DATASET_ID%/%NOPE%/%EXPORT_TIME%", 1),
        ("exports/%EXPORT_TIME%", 2),
        ("%DATASET_ID%/%DATETIME(HHmm)%", 1),
        ("%DATASET_ID%/%DATETIME(YYYYMMdd_QQ)%", 1),
    ],
)
def test_templates_that_cannot_identify_windows_are_rejected(template: str, datasets: int) -> None:
    with pytest.raises(LayoutError):
        parse_layout(template, datasets=datasets)


def test_a_template_without_dataset_serves_a_single_dataset_export() -> None:
    match = parse_layout("daily/%EXPORT_TIME%").match("daily/202611250000/part-0.parquet")
    assert match is not None and match.dataset_id is None and match.export_time == t("2026-11-25T00:00")
