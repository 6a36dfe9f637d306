"""Parquet checks: the footer from ranged reads (quick), every page with CRCs (deep)."""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.errors import StorageError
from auditor.findings import Finding, error, warning
from auditor.validate import MAX_FOOTER, FileVerdict, Level, Source
from auditor.validate.schema import parquet_schema

MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"


def check(source: Source, *, gzip_expected: bool, deep: bool, guarded: bool = True) -> FileVerdict:
    """Validate one Parquet file; never raises for bad bytes, only StorageError for I/O.

    `guarded=False` decodes the footer with pyarrow's bare Thrift decoder (`_DECODE`): the same
    verdicts in a fifth of the time, but malformed Thrift aborts the process instead of raising, so
    it is for sandbox workers only, whose crash on a file has that file checked again guarded.
    """
    url, size = source.url, source.size
    if size < 12:
        return FileVerdict(Level.FOOTER, (error("parquet.truncated", url, f"{size} bytes is too short to be Parquet"),))
    tail = source.read_range(size - 8, size)  # callers prefetch the likely footer with it (quick_ranges)
    if tail[-4:] == ENCRYPTED_MAGIC:
        return FileVerdict(Level.FOOTER, (error("parquet.encrypted", url, "encrypted footer: contents cannot be verified"),))
    if tail[-4:] != MAGIC:
        return FileVerdict(Level.FOOTER, (error("parquet.bad_magic", url, "no PAR1 magic at the end: truncated or not Parquet"),))
    footer_length = struct.unpack("<I", tail[-8:-4])[0]
    if footer_length == 0 or footer_length + 12 > size or footer_length > MAX_FOOTER:
        return FileVerdict(Level.FOOTER, (error("parquet.bad_footer", url, f"footer length {footer_length} does not fit a {size}-byte file"),))
    footer_start = size - 8 - footer_length
    footer = source.read_range(footer_start, size - 8)
    head = source.read_range(0, 4)
    if head != MAGIC:
        return FileVerdict(Level.FOOTER, (error("parquet.bad_magic", url, "no PAR1 magic at the start"),))
    try:
        if guarded or _DECODE is None:
            metadata, arrow = _parse_footer(footer, footer_length)
        else:
            metadata = _DECODE(pa.py_buffer(footer))
            arrow = metadata.schema.to_arrow_schema()  # what opening a reader does beyond the decoding (and can fail on)
        known = _remembered(metadata, arrow)
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for bad bytes
        return FileVerdict(Level.FOOTER, (error("parquet.bad_footer", url, f"footer metadata cannot be parsed: {e}"),))
    try:
        findings, codecs = _check_metadata(metadata, url, size, footer_start, gzip_expected)
    except Exception as e:  # noqa: BLE001 - any failure to interpret untrusted metadata is a finding
        return FileVerdict(Level.FOOTER, (error("parquet.bad_footer", url, f"footer metadata is inconsistent: {type(e).__name__}: {e}"),))
    try:
        schema = _schema_of(metadata, known)  # the Parquet logical schema: writers differ in the Arrow schema they store
    except Exception as e:  # noqa: BLE001
        findings.append(error("parquet.bad_schema", url, f"schema cannot be read: {e}"))
        schema = None
    verdict = FileVerdict(Level.FOOTER, tuple(findings), metadata.num_rows, schema, codecs)
    if deep and verdict.ok:
        return _deep(source, verdict)
    return verdict


def _parse_footer(footer: bytes, length: int) -> tuple[pq.FileMetaData, pa.Schema]:
    """The footer's metadata, as `pq.read_metadata` reads it, without the ParquetFile around the
    reader (a third of the time of a quick check went into building it); and the Arrow schema the
    reader made of it."""
    data = pa.BufferReader(MAGIC + footer + struct.pack("<I", length) + MAGIC)
    if _READER is None:
        metadata = pq.read_metadata(data)
        return metadata, metadata.schema.to_arrow_schema()
    reader = _READER()
    reader.open(data)
    return reader.metadata, reader.schema_arrow


_READER: Callable[[], Any] | None = getattr(importlib.import_module("pyarrow._parquet"), "ParquetReader", None)  # what ParquetFile opens
# what unpickling a FileMetaData calls: the footer's Thrift decoded into metadata, no reader and no Arrow schema
# around it (12 µs a footer where opening a reader took 56), but declared without C++ exception handling: a
# decoding error is std::terminate, an abort of the process (see `check`)
_DECODE: Callable[[Any], Any] | None = getattr(importlib.import_module("pyarrow._parquet"), "_reconstruct_filemetadata", None)
_SCHEMAS: list[_Known] = []  # recent footers' schemas (most recent first), with their canonical schema text
_SCHEMAS_KEPT = 8


@dataclass
class _Known:
    """A footer's Parquet schema tree (printed: every node's name, repetition, type, annotation and field id), its
    Arrow schema (what a reader makes of the tree and of the key-value metadata, where writers store theirs) and that
    key-value metadata, with its canonical schema text once one is worked out (`text` None: not yet remembered)."""

    arrow: Any
    tree: str
    kv: dict[bytes, bytes] | None
    text: str | None = None


def _remembered(metadata: pq.FileMetaData, arrow: pa.Schema) -> _Known:
    """The remembered schema a footer shares, moved to the front; or a new entry, not remembered until `_schema_of`
    works out its text. The whole tree is compared, as printed (5 µs for a few columns), not by `ParquetSchema.equals`,
    which compares leaf columns only (a group renamed, or annotated LIST where it was MAP, passed for its sibling and
    was given its schema text); and the Arrow schema too, since the printed tree is ambiguous: a name is printed as it
    is, and a group named "l (List)" prints as a group `l` annotated LIST."""
    kv = metadata.metadata
    tree = repr(metadata.schema).partition("\n")[2]  # (the first line is the object's address)
    for index, known in enumerate(_SCHEMAS):
        if known.tree == tree and known.kv == kv and known.arrow.equals(arrow):
            if index:
                _SCHEMAS.insert(0, _SCHEMAS.pop(index))
            return known
    return _Known(arrow, tree, kv)


def _schema_of(metadata: pq.FileMetaData, known: _Known) -> str:
    """`parquet_schema`, remembered: the files of a dataset share a schema, and working out its text costs
    more than the rest of a quick check. The text depends only on the Parquet schema and the Arrow schema
    (`_remembered` compares both), so a file equal in both reuses it."""
    if known.text is None:
        known.text = parquet_schema(metadata, known.arrow)
        _SCHEMAS.insert(0, known)
        del _SCHEMAS[_SCHEMAS_KEPT:]
    return known.text


def _check_metadata(metadata: pq.FileMetaData, url: str, size: int, footer_start: int, gzip_expected: bool) -> tuple[list[Finding], tuple[str, ...]]:
    findings: list[Finding] = []
    codecs: set[str] = set()
    rows = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        rows += group.num_rows
        for column in range(group.num_columns):
            chunk = group.column(column)
            codecs.add(str(chunk.compression))
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page and chunk.dictionary_page_offset else chunk.data_page_offset
            end = start + chunk.total_compressed_size
            if start < 4 or end > footer_start:
                findings.append(error("parquet.bad_offsets", url, f"row group {index} column {chunk.path_in_schema} lies outside the data section [{start}, {end}) of a {size}-byte file"))
                return findings, tuple(sorted(codecs))
    if rows != metadata.num_rows:
        findings.append(error("parquet.row_count", url, f"row groups hold {rows} rows, footer says {metadata.num_rows}"))
    if metadata.num_row_groups and gzip_expected and codecs - {"GZIP"}:
        findings.append(warning("parquet.codec_mismatch", url, f"name says .gz.parquet but pages use {', '.join(sorted(codecs))}"))
    if metadata.num_row_groups and not gzip_expected and "GZIP" in codecs:
        findings.append(warning("parquet.codec_mismatch", url, "name says uncompressed .parquet but pages use GZIP"))
    return findings, tuple(sorted(codecs))


def _deep(source: Source, verdict: FileVerdict) -> FileVerdict:
    """Decode every row group with page CRC verification on."""
    rows = 0
    try:
        data = getattr(source, "data", None)  # a file read ahead whole: pyarrow reads it without calling back into Python
        with (pa.BufferReader(data) if isinstance(data, bytes) else source.open()) as handle:
            reader = pq.ParquetFile(handle, page_checksum_verification=True)
            for index in range(reader.num_row_groups):
                table = reader.read_row_group(index, use_threads=False)
                expected = reader.metadata.row_group(index).num_rows
                if table.num_rows != expected:
                    finding = error("parquet.row_count", source.url, f"row group {index} decodes to {table.num_rows} rows, its metadata says {expected}")
                    return FileVerdict(Level.DEEP, (*verdict.findings, finding), verdict.records, verdict.schema, verdict.codecs)
                rows += table.num_rows
    except (StorageError, MemoryError, pa.ArrowMemoryError):
        raise  # not the bytes' fault: a read that failed, a worker's memory limit (the sandbox says so, and retries it)
    except Exception as e:  # noqa: BLE001 - the reader may fail in any way on bad pages
        return FileVerdict(Level.DEEP, (*verdict.findings, error("parquet.corrupt", source.url, f"pages cannot be decoded: {e}")), verdict.records, verdict.schema, verdict.codecs)
    findings = verdict.findings
    if rows != verdict.records:
        findings = (*findings, error("parquet.row_count", source.url, f"decoded {rows} rows, footer says {verdict.records}"))
    return FileVerdict(Level.DEEP, findings, verdict.records, verdict.schema, verdict.codecs)
