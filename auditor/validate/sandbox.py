"""Validators in long-lived worker processes: a crash, a hang or a runaway allocation on hostile
bytes becomes a finding for that one file, and the audit goes on.

Library readers (pyarrow included) are not trusted with malformed input: every data file is
checked in a worker process with a memory limit and a deadline. Workers are plain interpreters
(`python -m auditor.validate.sandbox`) that talk to the parent over a pair of pipes; each is
reused for many files, and one that dies or overruns is replaced.

Files travel in batches (`Sandbox.check_many`): one message carries many files to a worker, and
the verdicts come back together, so a quick check of a small file costs no round trip of its own.
The worker writes the index of the file it is checking to a page of memory it shares with the
parent (the progress board), so the parent knows, without a message per file, which file a worker
was on when it crashed or overran its deadline: that file gets the finding, and the files of the
batch that had no verdict yet are checked again by a fresh worker, neither lost nor blamed.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import mmap
import os
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any, Self

from auditor.errors import StorageError
from auditor.findings import error
from auditor.storage.base import ObjectInfo, Store, scrub
from auditor.validate import MAX_FOOTER, FileVerdict, Level, Source, footer_length, quick_ranges

log = logging.getLogger(__name__)

DEFAULT_VALIDATOR = "auditor.validate:validate_data_file"
# a worker's first try at a file when the pool runs the default validator: the same checks, Parquet footers decoded
# without pyarrow's exception guard (a fifth of the time); a file it crashes on is checked again with the default
UNGUARDED_VALIDATOR = "auditor.validate:validate_data_file_unguarded"
UNGUARDED_CRASHES = 8  # after this many files crashed the unguarded decoder, a pool checks with the guarded one only
# Findings that say "could not finish checking" rather than "the bytes are bad": retried next audit (a memory limit
# too: the configuration's, which may have been raised since)
RETRY_CODES = frozenset({"validate.timeout", "validate.memory_limit", "validate.killed"})
STARTUP_TIMEOUT = 120.0  # seconds a new worker may take to import its readers
FLUSH_SECONDS = 0.2  # a worker sends the verdicts it has at least this often (progress bars move)
POLL_SECONDS = 0.25  # how often the parent looks at the progress board while a batch runs
STALLED_SHARE = 0.05  # a check that used less CPU than this share of its deadline did not run: its verdict is no verdict
READ_AHEAD_MAX = 256 << 20  # a deep check reads the next file of its batch whole while it decodes this one, up to this size (and 1/16 of the memory limit)
_BOARD = struct.Struct("<Q")  # (task number << 32) | (index of the file being checked + 1)

Outcome = tuple[Any, ...]  # (kind, detail): "ok" with a verdict, "io", "memory", "error", "crash" (with the return code: kind, detail, code), "timeout", "stalled"


def cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform says)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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

    def __reduce__(self) -> tuple[Any, ...]:
        # as a validation worker needs it, for each file of a batch: where the object is and its size (not its time or
        # ETag), one tuple; pickled as a dataclass, it cost the parent and the worker 4 µs a file between them
        return (_object_source, (self.store, self.info.key, self.info.root, self.info.size, self.prefetched))

    def with_prefetch(self, name: str, *, tail: int | None = None) -> ObjectSource:
        """Read the quick check's ranges here (in the I/O thread) so the worker only parses."""
        chunks = tuple((start, self.store.read_range(self.info.key, start, end)) for start, end in quick_ranges(name, self.size, tail=tail))
        return ObjectSource(self.store, self.info, chunks)

    def footer_tail(self) -> int | None:
        """How much of the end a quick check of the next Parquet file of this dataset should fetch: this
        file's footer, as its prefetched tail announces it, with room for the next to be a little larger."""
        if not self.prefetched:
            return None
        start, tail = self.prefetched[-1]
        length = footer_length(tail) if start + len(tail) == self.size else None
        if length is None or length > MAX_FOOTER or length + 8 > self.size:  # a hostile file teaches nothing
            return None
        return length + 8 + length // 8 + 256


def _object_source(store: Store, key: str, root: str, size: int, prefetched: tuple[tuple[int, bytes], ...]) -> ObjectSource:
    return ObjectSource(store, ObjectInfo(key, root, size, None, None), prefetched)


@dataclass(frozen=True)
class BytesSource:
    """Bytes in memory as a Source (fuzzing, tests, small payloads, a file read ahead whole)."""

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


def _load(source: Any, limit: int) -> Any:
    """A whole object read ahead (a worker's read-ahead thread): a BytesSource, or the source itself
    when it is larger than `limit` or not an object. A StorageError is kept for the check of that file to report."""
    if not isinstance(source, ObjectSource) or not 0 < source.size <= limit:
        return source
    try:
        return BytesSource(source.store.read_range(source.info.key, 0, source.size), source.url)
    except StorageError as e:
        return e
    except Exception:  # noqa: BLE001 - out of memory …: the check streams it instead
        return source


_TAILS: dict[str, int] = {}  # dataset prefix -> how much of a Parquet file's end a quick check there fetches (what this worker learned)
_TAILS_KEPT = 4096


def _prefetched(source: ObjectSource, name: str) -> ObjectSource | StorageError:
    """A quick check's ranges read in the worker (a store whose reads cost the parent more than the worker),
    as much of the end as the dataset's footers have needed so far (a blind 64 KiB for its first file)."""
    group = source.info.url.rsplit("/", 2)[0]  # the dataset's prefix (in its store): the files of a dataset have footers alike
    try:
        fetched = source.with_prefetch(name, tail=_TAILS.get(group))
    except StorageError as e:
        _TAILS.pop(group, None)  # learn again from the next file
        return e
    learned = fetched.footer_tail()
    if learned is not None:
        if len(_TAILS) >= _TAILS_KEPT:
            _TAILS.clear()
        _TAILS[group] = learned
    return fetched


def _check_one(validator: Callable[..., FileVerdict], source: Any, name: str, deep: bool) -> Outcome:
    try:
        if isinstance(source, StorageError):
            raise source
        return ("ok", validator(source, name, deep=deep))
    except StorageError as e:
        return ("io", str(e))
    except MemoryError:
        return ("memory", "")
    except Exception as e:  # noqa: BLE001 - any other failure is reported, never fatal
        kind = "memory" if type(e).__name__ == "ArrowMemoryError" else "error"
        return (kind, f"{type(e).__name__}: {e}"[:500])


def _serve(conn: Connection, reply: Connection, memory_bytes: int, board_fd: int) -> None:
    """Worker loop: receive (task number, validator, [(source, name)…], deep); send back lists of
    outcomes in order (at least every FLUSH_SECONDS) with the bytes read per store so far."""
    import auditor.validate.json_file
    import auditor.validate.parquet_file  # noqa: F401 - import before the memory limit applies

    board = mmap.mmap(board_fd, _BOARD.size)
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    ahead = ThreadPoolExecutor(1)
    # files held whole (this one and the next) stay a small share of the worker's memory limit, so
    # that a file near the limit is not pushed over it by its neighbour
    limit = min(READ_AHEAD_MAX, memory_bytes // 16) if memory_bytes else READ_AHEAD_MAX
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
        number, path, items, deep = task
        stores: dict[int, Any] = {}  # the batch's stores (usually one), in order of first use
        for source, _name in items:
            store = getattr(source, "store", None)
            if store is not None:
                stores.setdefault(id(store), store)
        try:
            validator = _import(path)
        except Exception as e:  # noqa: BLE001
            failed = ("error", f"the validator cannot be loaded: {type(e).__name__}: {e}"[:500])
            _board_write(board, number, len(items))
            if not _send(reply, [failed] * len(items), stores):
                return
            continue
        outcomes: list[Outcome] = []
        flushed = time.monotonic()
        pending: Future[Any] | None = ahead.submit(_load, items[0][0], limit) if deep and items else None
        for index, (source, name) in enumerate(items):
            _board_write(board, number, index)
            if pending is not None:
                source = pending.result()
                pending = ahead.submit(_load, items[index + 1][0], limit) if index + 1 < len(items) else None
            elif not deep and isinstance(source, ObjectSource) and not source.prefetched:
                source = _prefetched(source, name)
            outcomes.append(_check_one(validator, source, name, deep))
            del source
            now = time.monotonic()
            if index + 1 == len(items) or now - flushed >= FLUSH_SECONDS:
                if not _send(reply, outcomes, stores):
                    return
                outcomes, flushed = [], now


def _board_write(board: mmap.mmap, number: int, index: int) -> None:
    _BOARD.pack_into(board, 0, ((number & 0xFFFFFFFF) << 32) | (index + 1))


def _send(reply: Connection, outcomes: list[Outcome], stores: dict[int, Any]) -> bool:
    try:
        reply.send((outcomes, [int(getattr(s, "bytes_read", 0)) for s in stores.values()]))
    except (OSError, ValueError):
        return False
    return True


@dataclass
class _Run:
    """What one worker made of a batch: outcomes for its first files, in order; and, when it stopped
    early, the position of the file it stopped on and why (crash, timeout)."""

    outcomes: list[Outcome]
    stopped: tuple[int, Outcome] | None
    reads: list[int]  # bytes read per store of the batch (in order of first use), as last reported


class _Worker:
    def __init__(self, memory_bytes: int) -> None:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        # what the worker writes to stderr (a C++ reader's last words as it aborts) is kept here, not passed on to the
        # parent's terminal or log: appended to, emptied before each batch, read when the worker crashes
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - held for the worker's life, closed by kill()
        fcntl.fcntl(self._stderr.fileno(), fcntl.F_SETFL, fcntl.fcntl(self._stderr.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        with tempfile.TemporaryFile() as backing:
            backing.truncate(mmap.PAGESIZE)
            self._board = mmap.mmap(backing.fileno(), _BOARD.size)
            board_fd = backing.fileno()
            self.process = subprocess.Popen(
                # SIGTERM and SIGINT ignored from the start (an ignored signal stays ignored across exec): sent to every
                # process of a service as it stops (systemd's default), or to a terminal's process group, they would
                # kill a worker still starting or mid-check, and its files would be recorded as crashing their reader
                ["/bin/sh", "-c", 'trap "" TERM INT; exec "$0" "$@"', sys.executable, "-m", "auditor.validate.sandbox",
                 str(to_child_r), str(to_parent_w), str(memory_bytes), str(board_fd)],
                pass_fds=(to_child_r, to_parent_w, board_fd),
                stdin=subprocess.DEVNULL,
                stderr=self._stderr,
                close_fds=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},  # import what the parent imports
            )
        os.close(to_child_r)
        os.close(to_parent_w)
        self._send = Connection(to_child_w, readable=False)
        self.conn = Connection(to_parent_r, writable=False)
        self._ready = False
        self._tasks = 0

    def _position(self, number: int) -> int:
        """The index of the file the worker is checking in task `number`, -1 before it starts."""
        value = _BOARD.unpack_from(self._board, 0)[0]
        return (value & 0xFFFFFFFF) - 1 if value >> 32 == number & 0xFFFFFFFF else -1

    def run(self, validator: str, items: Sequence[tuple[Source, str]], deep: bool, limits: Limits) -> _Run:
        """Check `items` in this worker; each file has its own deadline, from when the worker starts it."""
        outcomes: list[Outcome] = []
        reads: list[int] = []
        self._tasks += 1
        number = self._tasks
        try:
            os.ftruncate(self._stderr.fileno(), 0)
            if not self._ready:  # start-up (an interpreter, pyarrow) is not the file's time: a loaded machine is slow at it
                if not self.conn.poll(STARTUP_TIMEOUT) or self.conn.recv() != ("ready",):
                    self.kill()
                    return _Run([], (0, ("crash", f"the worker did not start within {STARTUP_TIMEOUT:.0f} s", None)), [])
                self._ready = True
            self._send.send((number, validator, list(items), deep))
            at, since, cpu = -1, time.monotonic(), self._cpu()
            while len(outcomes) < len(items):
                now = time.monotonic()
                current = max(self._position(number), len(outcomes))
                if current != at:
                    at, since, cpu = current, now, self._cpu()
                deadline = limits.deadline(items[at][0].size)
                left = since + deadline - now
                if left <= 0:
                    used = self._cpu() - cpu
                    self.kill()
                    if cpu >= 0 and used < STALLED_SHARE * deadline:  # it hardly ran: a frozen host or worker, not the bytes
                        return _Run(outcomes, (at, ("stalled", f"it ran {used:.1f} s of CPU in {deadline:.0f} s")), reads)
                    return _Run(outcomes, (at, ("timeout", f"{deadline:.0f} s")), reads)
                if self.conn.poll(min(left, POLL_SECONDS)):
                    got, reads = self.conn.recv()
                    outcomes += got
            return _Run(outcomes, None, reads)
        except (EOFError, OSError):
            code = self.process.wait(5)
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            if code == -signal.SIGABRT:  # a C++ reader's uncaught exception: its message is what it last wrote
                how += self._last_words()
            elif code > 0:  # the worker's interpreter failed (a traceback): for whoever runs the auditor, not the finding
                log.warning("a validation worker exited with code %d; it last wrote: %s", code, scrub(self._tail()) or "nothing")
            at = max(self._position(number), len(outcomes))
            self.kill()
            return _Run(outcomes, (min(at, len(items) - 1), ("crash", how, code)), reads)

    def _last_words(self) -> str:
        """The message of the C++ exception whose std::terminate aborted the worker (what it wrote last to stderr after
        `what():`), as ": <message>"; "" when there is none. Nothing else the worker wrote goes into a finding."""
        text = self._tail()
        words = " ".join(text.rpartition("what():")[2].split())[:200] if "what():" in text else ""
        return f": {words}" if words else ""

    def _tail(self, size: int = 2048) -> str:
        """The last `size` bytes the worker wrote to stderr in its current batch."""
        try:
            end = os.fstat(self._stderr.fileno()).st_size
            return os.pread(self._stderr.fileno(), size, max(0, end - size)).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _cpu(self) -> float:
        """The worker's CPU seconds so far (user and system, from /proc); -1 where the system does not say."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return -1.0

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
        if not self._board.closed:
            self._board.close()
        self._stderr.close()


class Sandbox:
    """A bounded pool of validation worker processes (a `Checker` for the audit).

    `check` and `check_many` never raise for bad bytes: a crash, timeout or memory overrun is an
    error finding for the one file that caused it. `check` raises StorageError when the worker could
    not read the object (the window is `unknown`); `check_many` answers that file with the error.
    The pool holds one worker per CPU unless told otherwise.
    """

    def __init__(self, *, workers: int | None = None, limits: Limits | None = None, validator: str = DEFAULT_VALIDATOR, unguarded: int = UNGUARDED_CRASHES) -> None:
        self.isolated = True
        self.size = max(1, workers or cpus())
        self.limits = limits or Limits()
        self.validator = validator
        self.crashes = self.timeouts = self.started = 0
        self.unguarded = unguarded  # files the unguarded first try may crash on before the pool checks guarded only (0: never tried)
        self.unguarded_crashes = 0  # files whose unguarded first try aborted a worker (checked again guarded)
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._live = 0
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict:
        [answer] = self.check_many([(source, name)], deep=deep)
        if isinstance(answer, StorageError):
            raise answer
        return answer

    def check_many(self, items: Sequence[tuple[Source, str]], *, deep: bool) -> list[FileVerdict | StorageError]:
        """Check a batch of files in one worker (in one message); verdicts in the order of `items`.

        A file that crashes, hangs or overruns the worker gets that finding; the files after it (and
        any whose verdict was lost with the worker) go to a fresh worker. A file the worker could not
        read is answered with the StorageError. With the default validator, files are first checked
        unguarded (`UNGUARDED_VALIDATOR`); a file that crashes that is checked again guarded, and that
        verdict is its own.
        """
        answers, aborted = self._check_many(items, deep, UNGUARDED_VALIDATOR if self.validator == DEFAULT_VALIDATOR else self.validator)
        if aborted:
            for index, answer in zip(aborted, self._check_many([items[i] for i in aborted], deep, self.validator)[0], strict=True):
                answers[index] = answer
        return [a for a in answers if a is not None]  # every file has its answer: the pool's own validator gives each one

    def _check_many(self, items: Sequence[tuple[Source, str]], deep: bool, validator: str) -> tuple[list[FileVerdict | StorageError | None], list[int]]:
        """`check_many` with `validator`. When that is the unguarded first try, the files whose check aborted a worker
        (SIGABRT: the decoder's uncaught exception) get no verdict (None) but are listed, by index, to be checked again
        with the pool's validator; and once the pool has seen `unguarded` such aborts, the rest goes guarded at once."""
        answers: list[FileVerdict | StorageError | None] = [None] * len(items)
        aborted: list[int] = []
        todo = list(range(len(items)))
        killed: set[int] = set()  # files a worker was killed on once: checked again by a fresh worker before it is their verdict
        while todo:
            worker = self._acquire()  # (may wait for a worker: the abort count is read once it has one)
            if validator != self.validator and self.unguarded_crashes >= self.unguarded:
                validator = self.validator
            finished = False
            try:
                run = worker.run(validator, [items[i] for i in todo], deep, self.limits)
                finished = True
                code = run.stopped[1][2] if run.stopped is not None and run.stopped[1][0] == "crash" else None
                unguarded_abort = code == -signal.SIGABRT and validator != self.validator  # the decoder's, not yet the file's verdict
                if unguarded_abort:
                    with self._lock:  # counted before the worker's slot is handed on (_release), so the next run sees it
                        self.unguarded_crashes += 1
            finally:
                if not finished:
                    # the call raised (a source that cannot be sent, an interrupt while waiting): the
                    # worker may hold a half-sent task or an unread answer, so it is replaced, not reused
                    worker.kill()
                self._release(worker)
            self._count_reads([items[i][0] for i in todo], run.reads)
            for position, outcome in enumerate(run.outcomes):
                answers[todo[position]] = self._verdict(items[todo[position]][0], outcome, deep)
            if run.stopped is None:
                todo = todo[len(run.outcomes) :]
                continue
            culprit, outcome = run.stopped
            if code == -signal.SIGKILL and todo[culprit] not in killed:
                # killed, not crashed in the reader (SIGSEGV, SIGABRT: the bytes' doing): a worker is also killed by things
                # that are not the file's doing (the machine's OOM killer, a person), so the file is checked once more by a
                # fresh worker, and being killed there too is its verdict
                killed.add(todo[culprit])
                todo = todo[len(run.outcomes) :]
                continue
            if unguarded_abort:
                aborted.append(todo[culprit])
            else:
                answers[todo[culprit]] = self._verdict(items[todo[culprit]][0], outcome, deep)
            todo = [todo[k] for k in range(len(run.outcomes), len(todo)) if k != culprit]
        return answers, aborted

    @staticmethod
    def _count_reads(sources: Sequence[Source], reads: list[int]) -> None:
        """Add what the worker read to the parent's stores (the worker reads through copies of them)."""
        stores: dict[int, Any] = {}
        for source in sources:
            store = getattr(source, "store", None)
            if store is not None:
                stores.setdefault(id(store), store)
        for store, read in zip(stores.values(), reads, strict=False):
            if read:
                store.count(read)

    def _verdict(self, source: Source, outcome: Outcome, deep: bool) -> FileVerdict | StorageError:
        kind, detail = outcome[0], outcome[1]
        level = Level.SIZED  # a check that did not finish verified nothing past the size (no deep check to its credit)
        if kind == "ok":
            return detail  # type: ignore[no-any-return]
        if kind == "io":
            return StorageError(detail)
        if kind == "stalled":  # the check did not run (SIGSTOP, a paused VM, a starved host): unknown, read again next audit
            return StorageError(f"could not check {source.url}: its check did not run ({detail}): the host or the worker was held up")
        if kind == "timeout":
            self.timeouts += 1
            return FileVerdict(level, (error("validate.timeout", source.url, f"checking did not finish within {detail}; the file could not be verified"),))
        if kind == "crash" and outcome[2] == -signal.SIGKILL:  # twice (check_many): the machine's OOM killer, most likely; not the bytes'
            self.crashes += 1
            return FileVerdict(level, (error("validate.killed", source.url, f"the worker checking it was killed twice ({detail}): out of the machine's memory? It is checked again next audit"),))
        if kind == "crash":
            self.crashes += 1
            return FileVerdict(level, (error("validate.crashed", source.url, f"the file reader crashed on this file ({detail}): it cannot be read safely"),))
        if kind == "memory":
            limit = self.limits.memory_bytes >> 20
            return FileVerdict(level, (error("validate.memory_limit", source.url, f"reading it needs more than the {limit} MiB a worker may use (validation.memory_mb) {detail}".rstrip()),))
        return FileVerdict(level, (error("validate.failed", source.url, f"validation failed unexpectedly: {detail}"),))

    def warm(self) -> None:
        """Start every worker now, so that they load their readers while the audit lists, not at its first check."""
        while True:
            with self._lock:
                if self._closed or self._live >= self.size:
                    return
                self._live += 1
                self.started += 1
            self._shelve(self._spawn())

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                # an idle worker holds nothing and writes nothing: killed, it is gone at once (asked to stop, each
                # took 30-70 ms to wind its interpreter down, one after the other, at the end of every audit)
                self._idle.get_nowait().kill()
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
            self._shelve(worker)
            return
        worker.kill()
        with self._lock:
            if self._closed:
                self._live -= 1
                return
            self.started += 1
        # keep the pool full so that threads waiting in _acquire are served
        self._shelve(self._spawn())

    def _shelve(self, worker: _Worker) -> None:
        """Put a live worker among the idle ones; a pool closed meanwhile has drained those, so it is stopped instead."""
        with self._lock:
            kept = not self._closed
            if kept:
                self._idle.put(worker)
            else:
                self._live -= 1
        if not kept:
            worker.kill()

    def _spawn(self) -> _Worker:
        """A new worker for a slot already counted in `_live`; the slot is given back if it fails."""
        try:
            return _Worker(self.limits.memory_bytes)
        except BaseException:
            with self._lock:
                self._live -= 1
            raise


if __name__ == "__main__":
    # run the module's own copy (not __main__'s), so that the sources it receives are its classes
    from auditor.validate.sandbox import _serve as serve

    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), int(sys.argv[3]), int(sys.argv[4]))
