"""A corpus of broken export files, built from valid ones: each case names the error it must raise."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq


def valid_parquet(rows: int = 300, compression: str = "gzip", checksums: bool = True) -> bytes:
    table = pa.table({"id": list(range(rows)), "city": [f"city-{i % 11}" for i in range(rows)], "revenue": [i * 0.5 for i in range(rows)]})
    out = io.BytesIO()
    pq.write_table(table, out, compression=compression, write_page_checksum=checksums)
    return out.getvalue()


def valid_ndjson(rows: int = 50) -> bytes:
    return b"".join(json.dumps({"id": i, "city": f"c{i}"}).encode() + b"\n" for i in range(rows))


def _first_page(data: bytes) -> int:
    column = pq.read_metadata(io.BytesIO(data)).row_group(0).column(0)
    return int(column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset)


def _varint_end(data: bytes | bytearray, at: int) -> int:
    while data[at] & 0x80:
        at += 1
    return at + 1


def wrong_page_crc(data: bytes) -> bytes:
    """Change the CRC stored in the first page header, leaving the page itself intact.

    A PageHeader in Thrift compact encoding starts with fields 1-3 (type, sizes) and then field 4,
    the crc, each an i32: a 0x15 field header followed by a zigzag varint.
    """
    mutated = bytearray(data)
    at = _first_page(data)
    for _ in range(3):
        assert mutated[at] == 0x15, "page header layout not as expected"
        at = _varint_end(mutated, at + 1)
    assert mutated[at] == 0x15, "page header has no CRC"
    mutated[at + 1] ^= 0x02  # a different value, same varint length
    return bytes(mutated)


def flip(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    mutated = bytearray(data)
    mutated[offset] ^= mask
    return bytes(mutated)


def footer_start(data: bytes) -> int:
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little")


@dataclass(frozen=True)
class Case:
    name: str
    file_format: str  # parquet | json
    build: Callable[[], bytes]
    code: str  # the error finding it must produce
    deep: bool = False  # only the deep check can see it


P = valid_parquet()
CASES = [
    Case("zero bytes", "parquet", lambda: b"", "file.empty"),
    Case("truncated to 1 byte", "parquet", lambda: P[:1], "parquet.truncated"),
    Case("truncated in the data", "parquet", lambda: P[: len(P) // 3], "parquet.bad_magic"),
    Case("truncated in the footer", "parquet", lambda: P[: footer_start(P) + 5], "parquet.bad_magic"),
    Case("truncated by the last byte", "parquet", lambda: P[:-1], "parquet.bad_magic"),
    Case("footer length corrupted", "parquet", lambda: flip(P, len(P) - 6, 0x7F), "parquet.bad_footer"),
    Case("footer bytes overwritten", "parquet", lambda: P[: footer_start(P)] + b"\xff" * 16 + P[footer_start(P) + 16 :], "parquet.bad_footer"),
    Case("page header overwritten", "parquet", lambda: P[: _first_page(P)] + b"\xff" * 8 + P[_first_page(P) + 8 :], "parquet.corrupt", deep=True),
    Case("page data bit flip", "parquet", lambda: flip(P, footer_start(P) - 40, 0x01), "parquet.corrupt", deep=True),
    Case("wrong page CRC", "parquet", lambda: wrong_page_crc(P), "parquet.corrupt", deep=True),
    Case("encrypted footer", "parquet", lambda: P[:-4] + b"PARE", "parquet.encrypted"),
    Case("valid Parquet named .json.gz", "json", lambda: P, "json.not_gzip"),
    Case("gzip cut short", "json", lambda: gzip.compress(valid_ndjson())[:-30], "json.gzip_truncated", deep=True),
    Case("broken line", "json", lambda: gzip.compress(valid_ndjson(3) + b'{"id": 4, "city"\n'), "json.bad_line", deep=True),
    Case("a null line", "json", lambda: gzip.compress(valid_ndjson(3) + b"null\n" + valid_ndjson(2)), "json.not_object", deep=True),
    Case("only null", "json", lambda: gzip.compress(b"null"), "json.not_object", deep=True),
    Case("UTF-16", "json", lambda: gzip.compress(valid_ndjson(3).decode().encode("utf-16")), "json.not_utf8", deep=True),
    Case("byte-order mark", "json", lambda: gzip.compress(b"\xef\xbb\xbf" + valid_ndjson(3)), "json.bom", deep=True),
    Case("NaN", "json", lambda: gzip.compress(b'{"id": NaN}\n'), "json.bad_line", deep=True),
    Case("bytes after the gzip stream", "json", lambda: gzip.compress(valid_ndjson(3)) + b"\x00junk", "json.trailing_bytes", deep=True),
    Case("gzip CRC wrong", "json", lambda: flip(gzip.compress(valid_ndjson(3)), -6, 0x01), "json.gzip_corrupt", deep=True),
]
