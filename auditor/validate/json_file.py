"""NDJSON checks: gzip magic and first bytes (quick); every line parsed strictly (deep)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

from auditor.findings import Finding, error, warning
from auditor.validate import FileVerdict, Level, Source

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
MAX_LINE = 64 * 1024 * 1024
MAX_DECOMPRESSED = 64 * 1024 * 1024 * 1024
MAX_RATIO = 200  # past RATIO_FLOOR, expanding more than this is a gzip bomb, not an export
RATIO_FLOOR = 16 << 20


class _Corrupt(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check(source: Source, *, gzip_expected: bool, deep: bool) -> FileVerdict:
    """Validate one NDJSON file (gzip or plain); never raises for bad bytes."""
    head = source.read_range(0, min(source.size, 4))
    gzipped = head[:2] == GZIP_MAGIC
    if gzip_expected and not gzipped:
        return FileVerdict(Level.FOOTER, (error("json.not_gzip", source.url, "name says .json.gz but the file is not gzip"),))
    findings: list[Finding] = []
    if not gzip_expected and gzipped:
        findings.append(warning("json.compression_mismatch", source.url, "name says .json but the file is gzip"))
    if not gzipped:
        problem = _first_bytes_problem(head)
        if problem:
            return FileVerdict(Level.FOOTER, (error(problem[0], source.url, problem[1]),))
    if not deep:
        return FileVerdict(Level.FOOTER, tuple(findings))
    try:
        records, final_newline = _count_records(_decompressed(source) if gzipped else _raw(source))
    except _Corrupt as e:
        return FileVerdict(Level.DEEP, (*findings, error(e.code, source.url, str(e))))
    if not final_newline:
        findings.append(warning("json.no_final_newline", source.url, "the last line has no newline"))
    return FileVerdict(Level.DEEP, tuple(findings), records)


def _first_bytes_problem(head: bytes) -> tuple[str, str] | None:
    if head.startswith(b"\xef\xbb\xbf"):
        return "json.bom", "starts with a UTF-8 byte-order mark"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "json.not_utf8", "UTF-16 text, not UTF-8"
    stripped = head.lstrip(b" \t\r\n")
    if stripped and stripped[:1] != b"{":
        return "json.not_object", f"does not start with a JSON object (first bytes {head[:4]!r})"
    return None


def _raw(source: Source) -> Iterator[bytes]:
    with source.open() as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _decompressed(source: Source) -> Iterator[bytes]:
    """Every gzip member in turn, CRC and length checked by zlib; garbage after them is corrupt.

    Output is bounded in total and relative to the input read so far, so a gzip bomb is a
    finding after a few MiB instead of an exhausted machine.
    """
    produced = consumed = 0
    decoder = zlib.decompressobj(wbits=31)
    with source.open() as handle:
        pending = b""
        while True:
            chunk = pending or handle.read(CHUNK)
            consumed += 0 if pending else len(chunk)
            pending = b""
            if not chunk:
                break
            try:
                out = decoder.decompress(chunk, CHUNK)
                while out:
                    produced += len(out)
                    if produced > MAX_DECOMPRESSED or (produced > RATIO_FLOOR and produced > MAX_RATIO * consumed):
                        raise _Corrupt("json.too_large", f"{consumed} compressed bytes expand to more than {produced}: a gzip bomb")
                    yield out
                    out = decoder.decompress(decoder.unconsumed_tail, CHUNK) if decoder.unconsumed_tail else b""
            except zlib.error as e:
                raise _Corrupt("json.gzip_corrupt", f"gzip stream is corrupt: {e}") from None
            if decoder.eof:
                rest = decoder.unused_data or handle.read(CHUNK)
                if not rest:
                    return
                if not rest.startswith(GZIP_MAGIC[: len(rest)]) or rest.strip(b"\x00") == b"":
                    raise _Corrupt("json.trailing_bytes", "bytes after the end of the gzip stream")
                decoder = zlib.decompressobj(wbits=31)
                pending = rest
    if not decoder.eof:
        raise _Corrupt("json.gzip_truncated", "gzip stream ends early (truncated)")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _count_records(chunks: Iterator[bytes]) -> tuple[int, bool]:
    """Parse every line of the stream; returns (records, whether it ends with a newline)."""
    records = line_number = 0
    partial: list[bytes] = []  # the line being assembled across chunks
    partial_length = 0
    first, last = True, b""
    for chunk in chunks:
        if not chunk:
            continue
        if first and chunk.startswith(b"\xef\xbb\xbf"):
            raise _Corrupt("json.bom", "starts with a UTF-8 byte-order mark")
        first, last = False, chunk[-1:]
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            partial.append(chunk)
            partial_length += len(chunk)
            if partial_length > MAX_LINE:
                raise _Corrupt("json.line_too_long", f"line {line_number + 1} is longer than {MAX_LINE} bytes")
            continue
        head = b"".join((*partial, pieces[0])) if partial else pieces[0]
        for line in (head, *pieces[1:-1]):
            line_number += 1
            if len(line) > MAX_LINE:
                raise _Corrupt("json.line_too_long", f"line {line_number} is longer than {MAX_LINE} bytes")
            records += _parse_line(line, line_number)
        partial, partial_length = ([pieces[-1]], len(pieces[-1])) if pieces[-1] else ([], 0)
    if partial:
        line_number += 1
        records += _parse_line(b"".join(partial), line_number)
    return records, last == b"\n" or line_number == 0


def _parse_line(line: bytes, number: int) -> int:
    line = line.removesuffix(b"\r")
    if not line.strip(b" \t"):
        return 0
    if b"\x00" in line:
        raise _Corrupt("json.not_utf8", f"line {number} holds NUL bytes: UTF-16 or binary, not UTF-8")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt("json.not_utf8", f"line {number} is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise _Corrupt("json.bad_line", f"line {number} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(value, dict):
        raise _Corrupt("json.not_object", f"line {number} is {type(value).__name__ if value is not None else 'null'}, not a JSON object")
    return 1
