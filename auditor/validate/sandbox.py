"""Validators in long-lived worker processes: a crash, a hang or a runaway allocation on hostile
bytes becomes a finding for that one file, and the audit goes on.

Library readers (pyarrow included) are not trusted with malformed input: every data file is
checked in a worker process with a memory limit and a deadline. Workers are plain interpreters
(`python -m auditor.validate.sandbox`) that talk to the parent over a pair of pipes; each is
reused for many files, and one that dies or overruns is replaced.
"""

from __future__ import annotations

import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any, Self

from auditor.errors import StorageError
from auditor.findings import error
from auditor.storage.base import ObjectInfo, Store
from auditor.validate import FileVerdict, Level, Source, quick_ranges

DEFAULT_VALIDATOR = "auditor.validate:validate_data_file"
# Findings that say "could not finish checking" rather than "the bytes are bad": retried next audit.
RETRY_CODES = frozenset({"validate.timeout"})
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import its readers


@dataclass(frozen=True)
class Limits:
    """Bounds per file: memory of a worker, and a deadline that grows with the file's size."""

    memory_bytes: int = 4 << 30
    timeout_seconds: float = 60.0
    min_throughput: float = float(4 << 20)  # bytes per second

    def deadline(self, size: int) -> float:
        return self.timeout_seconds + size / self.min_throughput


@dataclass(frozen=True)
class ObjectSource:
    """One object of a store as a validation Source; ranges the parent already read ride along."""

    store: Store
    info: ObjectInfo
    prefetched: tuple[tuple[int, bytes], ...] = field(default=())

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def size(self) -> int:
        return self.info.size

    def read_range(self, start: int, end: int) -> bytes:
        for offset, data in self.prefetched:
            if offset <= start and end <= offset + len(data):
                return data[start - offset : end - offset]
        return self.store.read_range(self.info.key, start, end)

    def open(self) -> IO[bytes]:
        return self.store.open(self.info.key)

    def with_prefetch(self, name: str, *, tail: int | None = None) -> ObjectSource:
        """Read the quick check's ranges here (in the I/O thread) so the worker only parses."""
        chunks = tuple((start, self.store.read_range(self.info.key, start, end)) for start, end in quick_ranges(name, self.size, tail=tail))
        return ObjectSource(self.store, self.info, chunks)


@dataclass(frozen=True)
class BytesSource:
    """Bytes in memory as a Source (fuzzing, tests, small payloads)."""

    data: bytes
    url: str = "memory://input"

    @property
    def size(self) -> int:
        return len(self.data)

    def read_range(self, start: int, end: int) -> bytes:
        return self.data[start:end]

    def open(self) -> IO[bytes]:
        import io

        return io.BytesIO(self.data)


def _import(path: str) -> Callable[..., FileVerdict]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _serve(conn: Connection, reply: Connection, memory_bytes: int) -> None:
    """Worker loop: receive (validator, source, name, deep), send back an outcome tuple."""
    import auditor.validate.json_file
    import auditor.validate.parquet_file  # noqa: F401 - import before the memory limit applies

    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    try:
        reply.send(("ready",))  # a file's deadline starts now, not while this interpreter was starting
    except (OSError, ValueError):
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        path, source, name, deep = task
        try:
            verdict = _import(path)(source, name, deep=deep)
            outcome: tuple[Any, ...] = ("ok", verdict)
        except StorageError as e:
            outcome = ("io", str(e))
        except MemoryError:
            outcome = ("memory", "")
        except Exception as e:  # noqa: BLE001 - any other failure is reported, never fatal
            kind = "memory" if type(e).__name__ == "ArrowMemoryError" else "error"
            outcome = (kind, f"{type(e).__name__}: {e}"[:500])
        store = getattr(source, "store", None)
        try:
            reply.send((*outcome, store.bytes_read if store is not None else 0))
        except (OSError, ValueError):
            return


class _Worker:
    def __init__(self, memory_bytes: int) -> None:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditor.validate.sandbox", str(to_child_r), str(to_parent_w), str(memory_bytes)],
            pass_fds=(to_child_r, to_parent_w),
            stdin=subprocess.DEVNULL,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},  # import what the parent imports
        )
        os.close(to_child_r)
        os.close(to_parent_w)
        self._send = Connection(to_child_w, readable=False)
        self.conn = Connection(to_parent_r, writable=False)
        self._ready = False

    def call(self, task: tuple[Any, ...], timeout: float) -> tuple[Any, ...]:
        try:
            if not self._ready:  # start-up (an interpreter, pyarrow) is not the file's time: a loaded machine is slow at it
                if not self.conn.poll(STARTUP_TIMEOUT) or self.conn.recv() != ("ready",):
                    self.kill()
                    return ("crash", f"the worker did not start within {STARTUP_TIMEOUT:.0f} s", 0)
                self._ready = True
            self._send.send(task)
            if not self.conn.poll(timeout):
                self.kill()
                return ("timeout", f"{timeout:.0f} s", 0)
            return tuple(self.conn.recv())
        except (EOFError, OSError):
            code = self.process.wait(5)
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            self.kill()
            return ("crash", how, 0)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.conn.closed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        for conn in (self._send, self.conn):
            if not conn.closed:
                conn.close()

    def stop(self) -> None:
        try:
            self._send.send(None)
            self.process.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class Sandbox:
    """A bounded pool of validation worker processes (a `Checker` for the audit).

    `check` never raises for bad bytes: a crash, timeout or memory overrun is an error finding.
    It raises StorageError when the worker could not read the object (the window is `unknown`).
    """

    def __init__(self, *, workers: int | None = None, limits: Limits | None = None, validator: str = DEFAULT_VALIDATOR) -> None:
        self.isolated = True
        self.size = max(1, workers or min(8, 2 * (os.cpu_count() or 1)))
        self.limits = limits or Limits()
        self.validator = validator
        self.crashes = self.timeouts = self.started = 0
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._live = 0
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict:
        deadline = self.limits.deadline(source.size)
        worker = self._acquire()
        finished = False
        try:
            outcome = worker.call((self.validator, source, name, deep), deadline)
            finished = True
        finally:
            if not finished:
                # the call raised (a source that cannot be sent, an interrupt while waiting): the
                # worker may hold a half-sent task or an unread answer, so it is replaced, not reused
                worker.kill()
            self._release(worker)
        kind, detail, read = outcome[0], outcome[1], outcome[-1]
        store = getattr(source, "store", None)
        if store is not None and read:
            store.count(read)
        level = Level.DEEP if deep else Level.FOOTER
        if kind == "ok":
            return detail  # type: ignore[no-any-return]
        if kind == "io":
            raise StorageError(detail)
        if kind == "timeout":
            self.timeouts += 1
            return FileVerdict(level, (error("validate.timeout", source.url, f"checking did not finish within {detail}; the file could not be verified"),))
        if kind == "crash":
            self.crashes += 1
            return FileVerdict(level, (error("validate.crashed", source.url, f"the file reader crashed on this file ({detail}): it cannot be read safely"),))
        if kind == "memory":
            limit = self.limits.memory_bytes >> 20
            return FileVerdict(level, (error("validate.memory_limit", source.url, f"reading it needs more than the {limit} MiB a worker may use (validation.memory_mb) {detail}".rstrip()),))
        return FileVerdict(level, (error("validate.failed", source.url, f"validation failed unexpectedly: {detail}"),))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return

    def _acquire(self) -> _Worker:
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("sandbox is closed")
                try:
                    return self._idle.get_nowait()
                except queue.Empty:
                    pass
                spawn = self._live < self.size
                if spawn:
                    self._live += 1
                    self.started += 1
            if spawn:
                return self._spawn()
            try:
                # a slot can come free without a worker (a replacement failed to start): look again
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                continue

    def _release(self, worker: _Worker) -> None:
        if worker.alive:
            self._idle.put(worker)
            return
        worker.kill()
        with self._lock:
            if self._closed:
                self._live -= 1
                return
            self.started += 1
        # keep the pool full so that threads waiting in _acquire are served
        self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        """A new worker for a slot already counted in `_live`; the slot is given back if it fails."""
        try:
            return _Worker(self.limits.memory_bytes)
        except BaseException:
            with self._lock:
                self._live -= 1
            raise


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), int(sys.argv[3]))
