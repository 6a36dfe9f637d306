"""Valid Parquet from every pyarrow codec and from other writers (DuckDB, Polars) passes cleanly."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.validate import validate_data_file
from auditor.validate.sandbox import BytesSource

TABLE = pa.table(
    {
        "id": pa.array(range(5000), pa.int64()),
        "city": pa.array([f"city-{i % 13}" for i in range(5000)]),
        "revenue": pa.array([i / 7 for i in range(5000)]),
        "tags": pa.array([[f"t{i % 3}"] * (i % 4) for i in range(5000)]),
        "seen": pa.array([None if i % 9 == 0 else i % 2 == 0 for i in range(5000)]),
    }
)


def assert_clean(data: bytes, name: str, rows: int) -> None:
    for deep in (False, True):
        verdict = validate_data_file(BytesSource(data), name, deep=deep)
        assert verdict.findings == (), verdict.findings
        assert verdict.records == rows


@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "brotli", "zstd", "lz4"])
@pytest.mark.parametrize("version", ["1.0", "2.6"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_pyarrow_files_with_every_codec_pass(codec: str, version: str, page_version: str) -> None:
    out = io.BytesIO()
    pq.write_table(TABLE, out, compression=codec, version=version, data_page_version=page_version, write_page_checksum=True, row_group_size=1500)
    assert_clean(out.getvalue(), "p.gz.parquet" if codec == "gzip" else "p.parquet", TABLE.num_rows)


def test_duckdb_files_pass(tmp_path: Path) -> None:
    import duckdb

    for codec, name in (("gzip", "p.gz.parquet"), ("uncompressed", "p.parquet"), ("zstd", "p.parquet")):
        path = tmp_path / f"{codec}.parquet"
        duckdb.sql(f"COPY (SELECT range AS id, 'city-' || (range % 13) AS city FROM range(20000)) TO '{path}' (FORMAT parquet, COMPRESSION {codec}, ROW_GROUP_SIZE 6000)")
        assert_clean(path.read_bytes(), name, 20000)


def test_polars_files_pass(tmp_path: Path) -> None:
    import polars

    frame = polars.DataFrame({"id": list(range(12000)), "city": [f"c{i % 5}" for i in range(12000)]})
    for codec, name in (("gzip", "p.gz.parquet"), ("uncompressed", "p.parquet"), ("snappy", "p.parquet")):
        path = tmp_path / f"{codec}.parquet"
        frame.write_parquet(path, compression=codec, row_group_size=5000)
        assert_clean(path.read_bytes(), name, 12000)
