"""Validation in worker processes: crashes, hangs and memory overruns become findings."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from auditor.errors import StorageError
from auditor.validate import FileVerdict
from auditor.validate.sandbox import BytesSource, Limits, Sandbox


def test_a_segfault_is_a_finding_and_the_worker_is_replaced() -> None:
    with Sandbox(workers=1, validator="tests.sandbox_validators:segfault") as sandbox:
        crashed = sandbox.check(BytesSource(b"crash me"), "p.json", deep=True)
        after = sandbox.check(BytesSource(b'{"a":1}\n'), "p.json", deep=True)
    assert [f.code for f in crashed.findings] == ["validate.crashed"]
    assert "SIGSEGV" in crashed.findings[0].message
    assert after.ok and after.records == 1
    assert (sandbox.crashes, sandbox.started) == (1, 2)  # a crash in the reader is the file's verdict at once (a SIGKILL is checked again)


def test_a_hang_is_stopped_at_the_deadline() -> None:
    limits = Limits(timeout_seconds=0.5, min_throughput=1e12)
    with Sandbox(workers=1, limits=limits, validator="tests.sandbox_validators:hang") as sandbox:
        hung = sandbox.check(BytesSource(b"hang"), "p.json", deep=True)
        fine = sandbox.check(BytesSource(b"fine"), "p.json", deep=True)
    assert [f.code for f in hung.findings] == ["validate.timeout"]
    assert fine.ok and sandbox.timeouts == 1


def test_a_runaway_allocation_hits_the_memory_limit() -> None:
    with Sandbox(workers=1, limits=Limits(memory_bytes=512 << 20), validator="tests.sandbox_validators:allocate") as sandbox:
        verdict = sandbox.check(BytesSource(b"x"), "p.json", deep=True)
    assert [f.code for f in verdict.findings] == ["validate.memory_limit"]


def test_a_worker_killed_on_a_file_twice_is_a_finding_the_next_audit_retries() -> None:
    """Killed (SIGKILL) twice, by fresh workers: the machine's OOM killer most likely (a container's memory limit), not
    the bytes: a finding that says so, retried next audit (it was `validate.crashed`, a settled verdict, for good)."""
    from auditor.validate.sandbox import RETRY_CODES

    with Sandbox(workers=1, validator="tests.sandbox_validators:kill_self") as sandbox:
        verdict = sandbox.check(BytesSource(b"x"), "p.json", deep=True)
    assert [f.code for f in verdict.findings] == ["validate.killed"] and "SIGKILL" in verdict.findings[0].message
    assert sandbox.started == 3 and "validate.killed" in RETRY_CODES  # killed twice, then a fresh worker for what comes next


def test_workers_are_long_lived_and_bounded() -> None:
    with Sandbox(workers=2, validator="tests.sandbox_validators:worker_pid") as sandbox, ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(lambda _: sandbox.check(BytesSource(b"x"), "p.json", deep=False).records, range(200)))
    assert 1 <= len(pids) <= 2 and sandbox.started == len(pids)


def test_real_validation_in_a_worker_matches_in_process_validation() -> None:
    from tests.unit.test_validate import parquet

    data = parquet()
    with Sandbox(workers=1) as sandbox:
        isolated = sandbox.check(BytesSource(data), "p.gz.parquet", deep=True)
        truncated = sandbox.check(BytesSource(data[:-20]), "p.gz.parquet", deep=True)
    assert isolated.ok and isolated.records == 200
    assert [f.code for f in truncated.findings] == ["parquet.bad_magic"]


class _Unpicklable(BytesSource):
    """A Source that cannot be sent to a worker: `check` raises between acquire and release."""

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("this source cannot be pickled")


def test_a_call_that_raises_gives_its_slot_back() -> None:
    results: list[FileVerdict] = []

    def checks(sandbox: Sandbox) -> None:
        for _ in range(3):  # more failures than the pool has workers
            with pytest.raises(TypeError, match="cannot be pickled"):
                sandbox.check(_Unpicklable(b'{"a":1}\n'), "p.json", deep=True)
        results.append(sandbox.check(BytesSource(b'{"a":1}\n'), "p.json", deep=True))

    with Sandbox(workers=1) as sandbox:
        thread = threading.Thread(target=checks, args=(sandbox,), daemon=True)  # a leaked slot hangs it: do not hang the suite
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "a check blocked: a worker slot leaked when the call raised"
    [after] = results
    assert after.ok and after.records == 1
    assert sandbox.started == 4  # a worker whose call raised is not reused: each was replaced


def test_a_batch_travels_in_one_message_to_one_worker() -> None:
    with Sandbox(workers=1, validator="tests.sandbox_validators:worker_pid") as sandbox:
        verdicts = sandbox.check_many([(BytesSource(b"x"), "p.json")] * 300, deep=False)
    assert len({v.records for v in verdicts if isinstance(v, FileVerdict)}) == 1 and len(verdicts) == 300
    assert sandbox.started == 1


def test_a_crash_in_a_batch_is_that_files_finding_and_its_batch_mates_keep_their_verdicts() -> None:
    lines = [b'{"a":1}\n', b'{"a":1}\n{"b":2}\n', b"crash", b'{"a":1}\n' * 3, b"not json at all\n"]
    with Sandbox(workers=1, validator="tests.sandbox_validators:segfault") as sandbox:
        verdicts = sandbox.check_many([(BytesSource(data, f"memory://f{i}"), "p.json") for i, data in enumerate(lines)], deep=True)
    assert all(isinstance(v, FileVerdict) for v in verdicts)
    answers = [(v.records, [f.code for f in v.findings]) for v in verdicts if isinstance(v, FileVerdict)]
    assert answers == [(1, []), (2, []), (None, ["validate.crashed"]), (3, []), (None, ["json.not_object"])]
    assert [f.path for f in verdicts[2].findings] == ["memory://f2"]  # type: ignore[union-attr]
    assert (sandbox.crashes, sandbox.started) == (1, 2)  # the rest of the batch went to a fresh worker


def test_a_check_that_did_not_run_until_its_deadline_is_no_verdict() -> None:
    """A worker frozen (SIGSTOP), or starved by its host, past a file's deadline: the file's window was `invalid
    validate.timeout` (bad bytes, for one audit) although its check never ran. It is a read failure now (unknown)."""
    limits = Limits(timeout_seconds=0.5, min_throughput=1e12)
    with Sandbox(workers=1, limits=limits, validator="tests.sandbox_validators:sleep") as sandbox:
        verdicts = sandbox.check_many([(BytesSource(data), "p.json") for data in (b"fine", b"sleep", b"fine")], deep=True)
    assert isinstance(verdicts[1], StorageError) and "its check did not run" in str(verdicts[1])
    assert all(isinstance(v, FileVerdict) and v.ok for v in (verdicts[0], verdicts[2])) and sandbox.timeouts == 0


def test_a_hang_in_a_batch_costs_that_file_only() -> None:
    limits = Limits(timeout_seconds=0.5, min_throughput=1e12)
    with Sandbox(workers=1, limits=limits, validator="tests.sandbox_validators:hang") as sandbox:
        verdicts = sandbox.check_many([(BytesSource(data), "p.json") for data in (b"fine", b"hang", b"fine", b"fine")], deep=True)
    codes = [[f.code for f in v.findings] for v in verdicts if isinstance(v, FileVerdict)]
    assert codes == [[], ["validate.timeout"], [], []]
    assert sandbox.timeouts == 1 and sandbox.started == 2


def test_deep_checks_in_a_batch_read_each_file_once_and_count_the_bytes(tmp_path: Path) -> None:
    from auditor.storage import open_store
    from auditor.validate.sandbox import ObjectSource
    from tests.unit.test_validate import parquet

    for index in range(3):
        (tmp_path / f"part-{index}.gz.parquet").write_bytes(parquet())
    store = open_store(tmp_path.as_uri())
    objects = store.list()
    with Sandbox(workers=1) as sandbox:
        verdicts = sandbox.check_many([(ObjectSource(store, o), o.name) for o in objects], deep=True)
    assert [v.records for v in verdicts if isinstance(v, FileVerdict) and v.ok] == [200, 200, 200]
    assert store.bytes_read == sum(o.size for o in objects)  # read whole by the worker, once, and counted here


def test_the_audit_and_the_parent_side_of_the_sandbox_do_not_load_pyarrow() -> None:
    """The process that hands files to isolated workers never loads the reader it does not trust (and saves its memory)."""
    import subprocess
    import sys

    code = "import sys, auditor.audit, auditor.runtime, auditor.validate.sandbox; print('pyarrow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip() == "False"


def test_deep_checks_are_spread_over_every_worker_by_size() -> None:
    from auditor.audit import DEEP_BATCH_BYTES, DEEP_BATCH_FILES, DEEP_MIN_BATCH_BYTES
    from auditor.storage.base import ObjectInfo
    from auditor.validate.plan import plan_batches

    def files(*sizes: int) -> list[ObjectInfo]:
        return [ObjectInfo(f"ds/f{i}", "memory://x", size, None, None) for i, size in enumerate(sizes)]

    small = plan_batches(files(*[2 << 20] * 4), threads=8, batch_bytes=DEEP_BATCH_BYTES, batch_files=DEEP_BATCH_FILES, min_batch_bytes=DEEP_MIN_BATCH_BYTES)
    assert len(small) == 4  # a small deep audit still gives every worker a file
    estate = plan_batches(files(*[10 << 20] * 32, 40 << 20), threads=8, batch_bytes=DEEP_BATCH_BYTES, batch_files=DEEP_BATCH_FILES, min_batch_bytes=DEEP_MIN_BATCH_BYTES)
    sizes = [sum(f.size for f in unit) for unit in estate]
    assert len(estate) == 16 and sizes == sorted(sizes, reverse=True) and max(sizes) == 40 << 20  # largest first, even units
    assert sorted(f.key for unit in estate for f in unit) == sorted(f.key for f in files(*[10 << 20] * 32, 40 << 20))


def test_warm_starts_every_worker_before_the_first_check_and_the_checks_use_them() -> None:
    with Sandbox(workers=2) as sandbox:
        sandbox.warm()
        assert sandbox.started == 2
        warmed = [sandbox._idle.get(timeout=10), sandbox._idle.get(timeout=10)]
        assert all(w.alive for w in warmed)
        for worker in warmed:
            sandbox._idle.put(worker)
        sandbox.warm()  # a pool already full starts nothing
        with ThreadPoolExecutor(2) as pool:
            verdicts = list(pool.map(lambda _: sandbox.check(BytesSource(b'{"a":1}\n'), "p.json", deep=True), range(4)))
        assert all(v.ok and v.records == 1 for v in verdicts)
        assert sandbox.started == 2  # the checks ran in the warmed workers
    assert all(not w.alive for w in warmed)


def test_a_worker_warmed_while_the_pool_closes_is_stopped_not_left_running() -> None:
    sandbox = Sandbox(workers=1)
    spawn = sandbox._spawn
    started: list[object] = []

    def spawn_then_close():  # type: ignore[no-untyped-def]
        worker = spawn()
        started.append(worker)
        sandbox.close()  # close() runs between the start of the worker and its joining the pool
        return worker

    sandbox._spawn = spawn_then_close  # type: ignore[method-assign]
    sandbox.warm()
    assert len(started) == 1 and not started[0].alive  # type: ignore[attr-defined]
    assert sandbox._idle.empty() and sandbox._live == 0


def test_sigterm_to_every_process_of_a_stopping_service_does_not_kill_a_worker_starting_or_checking() -> None:
    """systemd stops a service by sending SIGTERM to each of its processes: the service finishes the audit in progress,
    and its workers, still starting or mid-check, must not die of it (their files were recorded as crashing)."""
    import os
    import signal
    import time

    with Sandbox(workers=1) as sandbox:
        sandbox.warm()
        worker = sandbox._idle.get(timeout=10)
        time.sleep(0.05)
        os.kill(worker.process.pid, signal.SIGTERM)  # while its interpreter starts and imports the readers
        time.sleep(0.5)
        os.kill(worker.process.pid, signal.SIGTERM)
        sandbox._idle.put(worker)
        verdict = sandbox.check(BytesSource(b'{"a":1}\n'), "p.json", deep=True)
        assert verdict.ok and verdict.records == 1 and worker.alive and sandbox.crashes == 0 and sandbox.started == 1
