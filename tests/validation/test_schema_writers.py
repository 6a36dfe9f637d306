"""Schema drift compares the Parquet logical schema: Polars and DuckDB writing the same columns in turn
(Polars stores `large_string` in its Arrow schema, DuckDB `string`) is no drift; a real change is."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from auditor.config import settings_from_mapping
from auditor.report import AuditReport
from auditor.validate.schema import describe_drift
from tests.conftest import Tree, audit_once

START = datetime(2026, 11, 25, tzinfo=UTC)
ROWS = 50


def polars_file(change: str = "") -> bytes:
    import polars

    frame = polars.DataFrame(
        {
            "id": list(range(ROWS)),
            "city": [f"city-{i % 7}" for i in range(ROWS)],
            "seen": [datetime(2026, 11, 1) + timedelta(hours=i) for i in range(ROWS)],
            "day": [date(2026, 11, 1)] * ROWS,
            "tags": [[f"t{i % 3}"] for i in range(ROWS)],
            "visit": [{"page": f"/p{i}", "ms": i} for i in range(ROWS)],
        }
    )
    if change == "id as text":
        frame = frame.with_columns(polars.col("id").cast(polars.String))
    if change == "no city":
        frame = frame.drop("city")
    out = io.BytesIO()
    frame.write_parquet(out, compression="zstd")
    return out.getvalue()


def duckdb_file(change: str = "", tmp: Path | None = None) -> bytes:
    import duckdb

    assert tmp is not None
    path = tmp / f"duckdb-{change or 'same'}.parquet"
    id_column = "CAST(range AS VARCHAR) AS id" if change == "id as text" else "range AS id"
    city = "" if change == "no city" else "'city-' || (range % 7) AS city,"
    duckdb.sql(
        f"""COPY (SELECT {id_column}, {city}
                TIMESTAMP '2026-11-01 00:00:00' + range * INTERVAL 1 HOUR AS seen,
                DATE '2026-11-01' AS day,
                ['t' || (range % 3)] AS tags,
                {{'page': '/p' || range, 'ms': range}} AS visit
              FROM range({ROWS})) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    return path.read_bytes()


def audit_windows(tree: Tree, tmp_path: Path, writers: list[Callable[[], bytes]]) -> AuditReport:
    for index, write in enumerate(writers):
        slot = START + timedelta(days=index)
        tree.put(f"ds1/exportTime={slot:%Y%m%d%H%M}/part-00000.parquet", write(), slot + timedelta(minutes=10))
    settings = settings_from_mapping(
        {
            "catalog": {"url": f"sqlite:///{tmp_path / 'c.db'}"},
            "validation": {"isolate": False},
            "destinations": [{"name": "local", "url": tree.url}],
            "exports": [
                {
                    "name": "web",
                    "destination": "local",
                    "datasets": ["ds1"],
                    "format": "parquet",
                    "compression": "none",
                    "schedule": {"timeUnit": "day", "interval": 1, "startTime": START.isoformat(), "endTime": (START + timedelta(days=len(writers))).isoformat()},
                }
            ],
        },
        {},
    )
    return audit_once(settings, now=START + timedelta(days=len(writers) + 1))  # type: ignore[no-any-return]


def drift(report: AuditReport) -> list[str]:
    return [f.message for w in report.exports[0].windows for f in w.findings if f.code in ("parquet.schema_drift", "parquet.schema_mixed")]


def test_alternating_polars_and_duckdb_writers_are_not_drift(tree: Tree, tmp_path: Path) -> None:
    report = audit_windows(tree, tmp_path, [polars_file, lambda: duckdb_file(tmp=tmp_path), polars_file, lambda: duckdb_file(tmp=tmp_path)])

    assert [w.status.value for w in report.exports[0].windows] == ["ok"] * 4
    assert drift(report) == []
    assert all(not w.findings for w in report.exports[0].windows), [f for w in report.exports[0].windows for f in w.findings]


@pytest.mark.parametrize(
    "change, expected",
    [("id as text", "changed id int64 -> string"), ("no city", "removed city")],
)
@pytest.mark.parametrize("first", ["polars", "duckdb"])
def test_a_real_change_between_writers_is_still_drift(tree: Tree, tmp_path: Path, change: str, expected: str, first: str) -> None:
    same = polars_file if first == "polars" else (lambda: duckdb_file(tmp=tmp_path))
    changed = (lambda: duckdb_file(change, tmp=tmp_path)) if first == "polars" else (lambda: polars_file(change))

    report = audit_windows(tree, tmp_path, [same, changed])

    messages = drift(report)
    assert len(messages) == 1 and expected in messages[0], messages
    assert [f.severity.value for w in report.exports[0].windows for f in w.findings if f.code == "parquet.schema_drift"] == ["warning"]


def test_schemas_recorded_from_the_arrow_schema_before_compare_equal_to_the_parquet_schema() -> None:
    """Files validated before keep the schema text the catalog recorded then (Arrow types): no false
    drift at the first window checked after the change."""
    recorded_from_polars = json.dumps(
        [["id", "int64"], ["city", "large_string"], ["tags", "large_list<element: large_string>"], ["visit", "struct<page: large_string, ms: int64>"],
         ["cat", "dictionary<values=string, indices=uint32, ordered=0>"], ["at", "timestamp[us, tz=Europe/Amsterdam]"]]
    )
    now = json.dumps([["id", "int64"], ["city", "string"], ["tags", "list<string>"], ["visit", "struct<page: string, ms: int64>"], ["cat", "string"], ["at", "timestamp[us, tz=UTC]"]])
    assert describe_drift(recorded_from_polars, now) is None
    assert describe_drift(recorded_from_polars, now.replace('["id", "int64"]', '["id", "string"]')) == "changed id int64 -> string"
