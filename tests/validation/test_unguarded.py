"""The sandbox's first try at a Parquet footer: pyarrow's bare Thrift decoder, which aborts the worker on
malformed bytes where the guarded reader raises. A file it crashes on is checked again guarded, so the
verdict of every file is the guarded reader's, whatever the decoder did; its aborts stay out of the
parent's stderr."""

from __future__ import annotations

import io
import random
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.validate import FileVerdict, validate_data_file
from auditor.validate.sandbox import UNGUARDED_CRASHES, BytesSource, Limits, Sandbox
from tests.validation.corpus import footer_start, valid_parquet
from tests.validation.thrift_footer import INT32, OPTIONAL, REPEATED, element, parquet_file

LIMITS = Limits(memory_bytes=1 << 30, timeout_seconds=20)


def _nested() -> bytes:
    table = pa.table(
        {
            "id": [1, 2, 3],
            "tags": [["a"], [], ["b", "c"]],
            "attrs": [{"k": 1, "v": "x"}, None, {"k": 2, "v": "y"}],
            "m": pa.array([[("a", 1)], [], None], type=pa.map_(pa.string(), pa.int32())),
            "at": pa.array([1, 2, 3], type=pa.timestamp("us", tz="UTC")),
            "amount": pa.array([1, 2, 3], type=pa.decimal128(10, 2)),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="gzip")
    return out.getvalue()


def _without_arrow_schema() -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(20)), "s": [str(i) for i in range(20)]}), out, store_schema=False)
    return out.getvalue()


def _crashes_the_decoder(data: bytes) -> bytes:
    """`data` with its footer cut short inside its Thrift (the length still says the whole): the decoder runs out of bytes."""
    start = footer_start(data)
    mutated = bytearray(data)
    mutated[start + 3] ^= 0xFF
    return bytes(mutated)


def _verdict(v: FileVerdict | Exception) -> object:
    if isinstance(v, Exception):
        return ("error", str(v))
    return (int(v.level), [(f.code, f.message) for f in v.findings], v.records, v.schema, v.codecs)


def test_a_footer_that_crashes_the_unguarded_decoder_gets_the_guarded_verdict_and_its_batch_mates_theirs(capfd: pytest.CaptureFixture[str]) -> None:
    good, bad = valid_parquet(120), _crashes_the_decoder(valid_parquet(80))
    with Sandbox(workers=1) as sandbox:
        first, crashed, last = sandbox.check_many([(BytesSource(good), "a.gz.parquet"), (BytesSource(bad), "b.gz.parquet"), (BytesSource(good), "c.gz.parquet")], deep=False)
        assert sandbox.unguarded_crashes == 1  # the decoder did abort on it: the guarded reader answered instead
        assert sandbox.crashes == 0  # not a crash of the file's reader
    assert first.ok and first.records == 120 and last.ok and last.records == 120
    assert _verdict(crashed) == _verdict(validate_data_file(BytesSource(bad), "b.gz.parquet", deep=False))
    assert [f.code for f in crashed.findings] == ["parquet.bad_footer"]
    assert "terminate called" not in capfd.readouterr().err  # the worker's abort is not on the parent's stderr


def test_after_so_many_decoder_crashes_a_pool_checks_guarded_only() -> None:
    bad = _crashes_the_decoder(valid_parquet(80))
    with Sandbox(workers=1, unguarded=2) as sandbox:
        verdicts = sandbox.check_many([(BytesSource(bad), f"{i}.gz.parquet") for i in range(3)], deep=False)
        assert [[f.code for f in v.findings] for v in verdicts] == [["parquet.bad_footer"]] * 3
        assert (sandbox.unguarded_crashes, sandbox.started) == (2, 3)  # two aborts, two workers started after them; the third guarded
        again = sandbox.check(BytesSource(bad), "3.gz.parquet", deep=False)
        assert [f.code for f in again.findings] == ["parquet.bad_footer"]
        assert (sandbox.unguarded_crashes, sandbox.started) == (2, 3)  # guarded at once: no abort, no new worker
    assert UNGUARDED_CRASHES > 0


def test_a_crash_finding_carries_the_readers_last_words_and_they_stay_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with Sandbox(workers=1, validator="tests.sandbox_validators:abort") as sandbox:
        crashed = sandbox.check(BytesSource(b"abort here"), "p.json", deep=True)
        after = sandbox.check(BytesSource(b'{"a":1}\n'), "p.json", deep=True)
        talked, silent = sandbox.check_many([(BytesSource(b"warn"), "a.json"), (BytesSource(b"segv"), "b.json")], deep=True)
    # a crash (not a kill, whatever its words say), with the message of the exception that aborted the worker
    assert [f.code for f in crashed.findings] == ["validate.crashed"]
    assert "SIGABRT: the reader's last words on column 'SIGKILL'" in crashed.findings[0].message
    assert after.ok and after.records == 1
    assert talked.ok
    # a crash that said nothing is given no words, not those of a file checked before it in its batch
    assert [f.code for f in silent.findings] == ["validate.crashed"]
    assert "another file" not in silent.findings[0].message and "SIGSEGV" in silent.findings[0].message
    assert "last words" not in capfd.readouterr().err


def _list_column_file() -> bytes:
    out = io.BytesIO()
    table = pa.table({"id": pa.array(range(100), pa.int64()), "tags": [[str(i)] * (i % 3) for i in range(100)]})
    pq.write_table(table, out, store_schema=False, compression="gzip")
    return out.getvalue()


def _list_made_map(data: bytes) -> bytes:
    """`data` with its list column's LIST annotation made MAP, one bit: a LogicalType union holding field 3 (LIST, an
    empty struct) is `3C 00 00` in Thrift's compact encoding; field 2 (MAP) is `2C 00 00`. The leaf columns stay
    the same, so `ParquetSchema.equals` holds against the unflipped file; the schema no longer converts."""
    start = footer_start(data)
    at = data.index(b"\x3c\x00\x00", start)
    return data[:at] + b"\x2c" + data[at + 1 :]


def test_a_footer_whose_schema_differs_from_its_siblings_only_in_a_group_is_checked_as_its_own() -> None:
    good = _list_column_file()
    bad = _list_made_map(good)
    items = [(BytesSource(good, "memory://0"), "part-0.gz.parquet"), (BytesSource(bad, "memory://1"), "part-1.gz.parquet")]
    for deep in (False, True):
        with Sandbox(workers=1, limits=LIMITS) as first, Sandbox(workers=1, limits=LIMITS, unguarded=0) as only:
            unguarded, guarded = first.check_many(items, deep=deep), only.check_many(items, deep=deep)  # the sibling first, in one worker
        assert [f.code for f in guarded[1].findings] == ["parquet.bad_footer"] and "Map keys" in guarded[1].findings[0].message
        assert [_verdict(v) for v in unguarded] == [_verdict(v) for v in guarded]
        assert guarded[0].ok


def test_a_file_whose_struct_is_renamed_has_its_own_schema_text() -> None:
    """Two files alike in their leaf columns, not in the name of the group above one: each keeps its own schema (the
    rename is schema drift the audit reports)."""
    files = []
    for name in ("st", "other"):
        out = io.BytesIO()
        pq.write_table(pa.table({"id": [1, 2], name: [{"k": 1}, {"k": 2}]}), out, store_schema=False)
        files.append(out.getvalue())
    first, renamed = (validate_data_file(BytesSource(data), "p.parquet", deep=False) for data in files)
    assert first.schema == '[["id","int64"],["st","struct<k: int64>"]]'
    assert renamed.schema == '[["id","int64"],["other","struct<k: int64>"]]'


def test_a_footer_printed_like_its_sibling_but_read_otherwise_is_checked_as_its_own() -> None:
    """A name is printed as it is: a plain group named "l (List)" prints as a group `l` annotated LIST, which a reader
    refuses with two children. The look-alike checked first must not spare the second its conversion."""
    plain = parquet_file([element("schema", children=1), element("l (List)", repetition=OPTIONAL, children=2), element("x", kind=INT32, repetition=REPEATED), element("y", kind=INT32, repetition=REPEATED)])
    annotated = parquet_file([element("schema", children=1), element("l", repetition=OPTIONAL, children=2, annotated_list=True), element("x", kind=INT32, repetition=REPEATED), element("y", kind=INT32, repetition=REPEATED)])
    items = [(BytesSource(plain, "memory://0"), "0.parquet"), (BytesSource(annotated, "memory://1"), "1.parquet")]
    with Sandbox(workers=1, limits=LIMITS) as first, Sandbox(workers=1, limits=LIMITS, unguarded=0) as only:
        unguarded, guarded = first.check_many(items, deep=False), only.check_many(items, deep=False)
    assert guarded[0].ok and [f.code for f in guarded[1].findings] == ["parquet.bad_footer"]
    assert [_verdict(v) for v in unguarded] == [_verdict(v) for v in guarded]


@pytest.mark.parametrize(
    ("first", "second", "text"),
    [
        ({"a (String)": pa.array([b"x"], pa.binary())}, {"a": pa.array(["x"], pa.string())}, '[["a","string"]]'),
        ({"a;\n  optional int64 field_id=-1 b": pa.array([1], pa.int64())}, {"a": [1], "b": [2]}, '[["a","int64"],["b","int64"]]'),
    ],
    ids=["a name that prints as an annotation", "a name that prints as another column"],
)
def test_a_schema_printed_like_another_keeps_its_own_text(first: dict[str, object], second: dict[str, object], text: str) -> None:
    files = []
    for columns in (first, second):
        out = io.BytesIO()
        pq.write_table(pa.table(columns), out, store_schema=False)
        files.append(out.getvalue())
    with Sandbox(workers=1, limits=LIMITS) as sandbox:
        verdicts = sandbox.check_many([(BytesSource(data), "p.parquet") for data in files], deep=False)
    assert verdicts[1].ok and verdicts[1].schema == text
    assert validate_data_file(BytesSource(files[1]), "p.parquet", deep=False).schema == text  # guarded, in process, after the first


def test_the_abort_limit_holds_under_many_threads_within_a_worker_of_it() -> None:
    """The audit calls the pool from many threads: each read the abort count before waiting for a worker, and ran
    unguarded whatever it was by then (8 aborts with a limit of 1). The count is now read with a worker in hand and
    raised before the worker is handed on, so at most the pool's other workers overshoot it."""
    bad = _crashes_the_decoder(valid_parquet(80))
    with Sandbox(workers=2, limits=LIMITS, unguarded=1) as sandbox:
        with ThreadPoolExecutor(8) as pool:
            verdicts = [v for batch in pool.map(lambda t: sandbox.check_many([(BytesSource(bad), f"{t}-{i}.gz.parquet") for i in range(5)], deep=False), range(8)) for v in batch]
        assert 1 <= sandbox.unguarded_crashes <= 2
    assert [[f.code for f in v.findings] for v in verdicts] == [["parquet.bad_footer"]] * 40


def test_a_worker_that_exits_leaves_its_last_words_in_the_log_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="auditor.validate.sandbox"), Sandbox(workers=1, validator="tests.sandbox_validators:abort") as sandbox:
        verdict = sandbox.check(BytesSource(b"exit"), "p.json", deep=True)
    assert [f.code for f in verdict.findings] == ["validate.crashed"] and "exit code 3" in verdict.findings[0].message
    assert "Traceback" not in verdict.findings[0].message  # the traceback is for the log, not the finding
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "exited with code 3" in logged and "RuntimeError: the worker broke" in logged
    assert "hunter2" not in logged and "sig=REDACTED" in logged


def test_the_pool_checks_guarded_only_once_it_has_seen_so_many_aborts_even_within_one_batch() -> None:
    bad = _crashes_the_decoder(valid_parquet(80))
    with Sandbox(workers=1, limits=LIMITS, unguarded=8) as sandbox:
        verdicts = sandbox.check_many([(BytesSource(bad), f"{i}.gz.parquet") for i in range(40)], deep=False)
        assert (sandbox.unguarded_crashes, sandbox.started) == (8, 9)  # eight aborts, eight workers started after them; the rest guarded
    assert [[f.code for f in v.findings] for v in verdicts] == [["parquet.bad_footer"]] * 40


def _mutants(count: int) -> list[bytes]:
    """Footers damaged the way a Thrift decoder is hurt most: bytes flipped, set to type and stop markers, inserted."""
    seeds = [valid_parquet(120, "gzip"), valid_parquet(60, "snappy"), _nested(), _without_arrow_schema()]
    rnd = random.Random(20261201)
    out = []
    for _ in range(count):
        data = bytearray(rnd.choice(seeds))
        length = int.from_bytes(data[-8:-4], "little")
        start = len(data) - 8 - length
        for _change in range(rnd.randint(1, 3)):
            at, kind = rnd.randrange(start, len(data) - 8), rnd.random()
            if kind < 0.6:
                data[at] ^= rnd.randint(1, 255)
            elif kind < 0.8:
                data[at] = rnd.choice([0x00, 0xFF, 0x7F, 0x80, 0x15, 0x18, 0x19, 0x1C])
            else:
                data[at:at] = bytes([rnd.randint(0, 255)])
                length += 1
                data[-8:-4] = length.to_bytes(4, "little")
        out.append(bytes(data))
    return out


def test_every_damaged_footer_gets_the_same_verdict_unguarded_first_as_guarded_only() -> None:
    mutants = _mutants(240)
    items = [(BytesSource(m, f"memory://{i}"), "p.gz.parquet") for i, m in enumerate(mutants)]
    batches = [items[i : i + 40] for i in range(0, len(items), 40)]

    def checked(sandbox: Sandbox) -> list[FileVerdict]:
        with ThreadPoolExecutor(2) as pool:
            return [v for batch in pool.map(lambda b: sandbox.check_many(b, deep=False), batches) for v in batch]  # type: ignore[misc]

    with Sandbox(workers=2, limits=LIMITS, unguarded=len(items)) as unguarded, Sandbox(workers=2, limits=LIMITS, unguarded=0) as guarded:
        first, only = checked(unguarded), checked(guarded)
        assert unguarded.unguarded_crashes > len(items) // 4  # the decoder aborted on many: the fallback was exercised
        assert guarded.unguarded_crashes == 0
    different = [(i, _verdict(a), _verdict(b)) for i, (a, b) in enumerate(zip(first, only, strict=True)) if _verdict(a) != _verdict(b)]
    assert different == []
    codes = {f.code for v in only for f in v.findings}
    assert {"parquet.bad_footer", "parquet.codec_mismatch"} <= codes  # damage the decoder survives is judged alike too
    assert any(v.ok for v in only)
