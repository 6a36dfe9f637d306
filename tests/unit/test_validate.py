"""Quick and deep checks of data files and manifests, on bytes built in memory."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.validate import Level, validate_data_file
from auditor.validate.manifest import parse_manifest

SAMPLES = Path(__file__).parents[1] / "data" / "adobe"


class Bytes:
    """A Source over bytes that records every range it was asked for."""

    def __init__(self, data: bytes, url: str = "mem://f") -> None:
        self.data, self.url, self.size, self.ranges = data, url, len(data), []

    def read_range(self, start: int, end: int) -> bytes:
        self.ranges.append((start, end))
        return self.data[start:end]

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data)


def parquet(rows: int = 200, compression: str = "gzip", **kwargs: object) -> bytes:
    table = pa.table({"id": list(range(rows)), "city": [f"c{i % 7}" for i in range(rows)]})
    out = io.BytesIO()
    pq.write_table(table, out, compression=compression, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def codes(data: bytes, name: str, deep: bool = False) -> set[str]:
    return {f.code for f in validate_data_file(Bytes(data), name, deep=deep).findings if f.is_error}


@pytest.mark.parametrize("compression, name", [("gzip", "p.gz.parquet"), ("none", "p.parquet"), ("snappy", "p.parquet"), ("zstd", "p.parquet"), ("brotli", "p.parquet"), ("lz4", "p.parquet")])
def test_valid_parquet_passes_quick_and_deep(compression: str, name: str) -> None:
    data = parquet(compression=compression, write_page_checksum=True)
    quick = validate_data_file(Bytes(data), name, deep=False)
    deep = validate_data_file(Bytes(data), name, deep=True)
    assert quick.ok and quick.records == 200 and quick.level is Level.FOOTER
    assert deep.ok and deep.records == 200 and deep.level is Level.DEEP


def test_quick_parquet_check_reads_only_the_tail_and_head() -> None:
    data = parquet(rows=200_000, compression="none")
    source = Bytes(data)
    assert validate_data_file(source, "p.parquet", deep=False).ok
    assert sum(end - start for start, end in source.ranges) <= 64 * 1024 + 4 < len(data)


def test_parquet_truncated_at_any_offset_is_an_error() -> None:
    data = parquet()
    for cut in sorted({0, 1, 4, 11, 12, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 8, len(data) - 4, len(data) - 1}):
        found = codes(data[:cut], "p.gz.parquet")
        assert found, f"truncated at {cut} of {len(data)} passed"


def test_flipped_footer_bytes_are_findings_not_crashes() -> None:
    data = bytearray(parquet())
    footer_length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_length
    failures = 0
    for offset in range(start, len(data) - 8, max(1, footer_length // 40)):
        mutated = bytearray(data)
        mutated[offset] ^= 0xFF
        verdict = validate_data_file(Bytes(bytes(mutated)), "p.gz.parquet", deep=True)
        failures += not verdict.ok
    assert failures > 0


def test_a_wrong_page_crc_is_caught_by_the_deep_check() -> None:
    data = bytearray(parquet(compression="none", write_page_checksum=True))
    metadata = pq.read_metadata(io.BytesIO(bytes(data)))
    column = metadata.row_group(0).column(0)
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    middle = start + column.total_compressed_size - 10  # inside the last page's data
    data[middle] ^= 0x01
    assert not codes(bytes(data), "p.parquet", deep=False)
    assert "parquet.corrupt" in codes(bytes(data), "p.parquet", deep=True)


def test_encrypted_parquet_is_unverifiable_not_valid() -> None:
    data = parquet()[:-4] + b"PARE"
    assert codes(data, "p.gz.parquet") == {"parquet.encrypted"}


def test_codec_that_disagrees_with_the_name_is_a_warning() -> None:
    verdict = validate_data_file(Bytes(parquet(compression="snappy")), "p.gz.parquet", deep=False)
    assert verdict.ok and [f.code for f in verdict.findings] == ["parquet.codec_mismatch"]


def test_a_json_file_with_a_parquet_name_is_an_error() -> None:
    assert codes(gzip.compress(b'{"a":1}\n'), "p.gz.parquet") == {"parquet.bad_magic"}


def ndjson(text: bytes) -> bytes:
    return gzip.compress(text, mtime=0)


@pytest.mark.parametrize(
    "data, name, expected",
    [
        (b"", "p.json.gz", {"file.empty"}),
        (b'{"a":1}\n', "p.json.gz", {"json.not_gzip"}),
        (parquet(), "p.json.gz", {"json.not_gzip"}),
        (b"\xef\xbb\xbf{\"a\":1}\n", "p.json", {"json.bom"}),
        ('{"a":1}\n'.encode("utf-16"), "p.json", {"json.not_utf8"}),
        (b"[1,2]\n", "p.json", {"json.not_object"}),
        (b"null", "p.json", {"json.not_object"}),
    ],
)
def test_quick_json_checks(data: bytes, name: str, expected: set[str]) -> None:
    assert codes(data, name) == expected


@pytest.mark.parametrize(
    "data, expected",
    [
        (ndjson(b'{"a":1}\n{"a":2}\n'), set()),
        (ndjson(b'{"a":1}\r\n\r\n{"a":2}\r\n'), set()),
        (ndjson(b'{"a":1}\n') + ndjson(b'{"a":2}\n'), set()),  # multi-member streams are allowed
        (ndjson(b'{"a":1}\n{"a":\n'), {"json.bad_line"}),
        (ndjson(b'{"a":1}\nnull\n'), {"json.not_object"}),
        (ndjson(b"null"), {"json.not_object"}),
        (ndjson(b'{"a":NaN}\n'), {"json.bad_line"}),
        (ndjson(b'{"a":Infinity}\n'), {"json.bad_line"}),
        (ndjson(b"\xef\xbb\xbf{}\n"), {"json.bom"}),
        (ndjson('{"a":1}\n'.encode("utf-16-le")), {"json.not_utf8"}),
        (ndjson(b'{"a":"\xff"}\n'), {"json.not_utf8"}),
        (ndjson(b'{"a":1}\n')[:-6], {"json.gzip_truncated"}),
        (ndjson(b'{"a":1}\n' * 1000)[:40], {"json.gzip_truncated"}),
        (ndjson(b'{"a":1}\n') + b"garbage", {"json.trailing_bytes"}),
        (ndjson(b'{"a":1}\n') + b"\x00\x00", {"json.trailing_bytes"}),
        (ndjson(b'{"a":1}\n')[:-8] + b"\x00\x00\x00\x00" + ndjson(b'{"a":1}\n')[-4:], {"json.gzip_corrupt"}),
    ],
)
def test_deep_ndjson_checks(data: bytes, expected: set[str]) -> None:
    assert codes(data, "p.json.gz", deep=True) == expected


def test_deep_ndjson_counts_records_and_warns_about_a_missing_final_newline() -> None:
    verdict = validate_data_file(Bytes(ndjson(b'{"a":1}\n\n{"a":2}')), "p.json.gz", deep=True)
    assert verdict.ok and verdict.records == 2
    assert [f.code for f in verdict.findings] == ["json.no_final_newline"]


def test_adobe_sample_json_file_is_valid() -> None:
    sample = next(SAMPLES.glob("part-*.json"))
    verdict = validate_data_file(Bytes(sample.read_bytes()), sample.name, deep=True)
    assert verdict.ok and verdict.records == 2 and verdict.findings == ()


def test_adobe_sample_manifest_parses() -> None:
    sample = next(SAMPLES.glob("manifest-*.json"))
    manifest, findings = parse_manifest(sample.read_bytes(), "mem://m")
    assert findings == [] and manifest is not None
    assert manifest.flow_run_id == "0ac8f3c0-29bd-40aa-82c1-f1b7e0657b19"
    assert [(e.name, e.size) for e in manifest.entries] == [("amazon-s3_segment-name_20230818_010718.json", 145854)]


@pytest.mark.parametrize(
    "body, code",
    [
        (b"", "manifest.empty"),
        (b"{", "manifest.unreadable"),
        (b"\xff\xfe{}", "manifest.unreadable"),
        (b"[]", "manifest.malformed"),
        (json.dumps({"scheduledTime": "2026-11-27T03:00:00Z", "exportResults": []}).encode(), "manifest.malformed"),
        (json.dumps({"flowRunId": "r", "scheduledTime": "yesterday", "exportResults": []}).encode(), "manifest.malformed"),
        (json.dumps({"flowRunId": "r", "scheduledTime": "2026-11-27T03:00:00Z", "exportResults": [{"name": "a", "size": "12"}]}).encode(), "manifest.malformed"),
        (json.dumps({"flowRunId": "r", "scheduledTime": "2026-11-27T03:00:00Z", "exportResults": [{"name": "a", "size": -1}]}).encode(), "manifest.malformed"),
        (json.dumps({"flowRunId": "r", "scheduledTime": "2026-11-27T03:00:00Z", "exportResults": [{"name": "../../etc/passwd", "size": 1}]}).encode(), "manifest.bad_name"),
        (json.dumps({"flowRunId": "r", "scheduledTime": "2026-11-27T03:00:00Z", "exportResults": [{"name": "/abs", "size": 1}]}).encode(), "manifest.bad_name"),
        (b'{"flowRunId":"r","scheduledTime":"2026-11-27T03:00:00Z","exportResults":[{"name":"a","size":NaN}]}', "manifest.unreadable"),
    ],
)
def test_bad_manifests_are_findings(body: bytes, code: str) -> None:
    _, findings = parse_manifest(body, "mem://m")
    assert code in {f.code for f in findings}


def test_a_gzip_bomb_is_a_finding_after_a_few_mebibytes() -> None:
    import zlib

    line = b'{"a":"' + b"x" * (1 << 20) + b'"}\n'
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(compressor.compress(line) for _ in range(256)) + compressor.flush()  # 256 MiB of valid lines
    assert len(bomb) < 1 << 20
    assert codes(bomb, "p.json.gz", deep=True) == {"json.too_large"}


def test_long_lines_are_bounded() -> None:
    from auditor.validate import json_file

    data = b'{"a":"' + b"x" * (json_file.MAX_LINE + 10) + b'"}\n'
    assert codes(data, "p.json", deep=True) == {"json.line_too_long"}


def test_a_footer_whose_column_path_is_not_utf8_is_a_finding() -> None:
    # found by the fuzz test: pyarrow raises UnicodeDecodeError while describing bad chunk offsets
    from tests.validation.test_fuzz import SEEDS, mutate

    data = mutate(SEEDS["p.gz.parquet"][0], [("delete", 0.5, 11), ("flip", 0.7265625, 128)])
    verdict = validate_data_file(Bytes(data), "p.gz.parquet", deep=True)
    assert [f.code for f in verdict.findings] == ["parquet.bad_footer"]
