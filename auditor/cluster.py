"""Deep checks on a Dask distributed cluster: past one machine, with the same verdicts.

`ClusterChecker` is a `Checker` (auditor.audit) whose quick checks stay in this process's
sandbox and whose deep checks go to an existing Dask scheduler:

- **Work units by size.** The files to deep-check are grouped into batches of about
  `batch_bytes` (less when the audit is small, so every worker thread gets work), at most
  `batch_files` files each, filled evenly; a file larger than that is a batch of its own.
- **Workers read the bytes.** A batch carries the destination (its fsspec URL and options,
  sealed: pickled, and left out of every repr) and the files' listing entries. The worker opens
  the store itself and reads the objects directly; only verdicts and a byte count come back.
  Task keys are `auditor-deep-<random>-<n>`: no path, no URL, no option.
- **Isolation on the worker.** Each Dask worker process keeps a `Sandbox` (validate.sandbox) with
  one validation process per worker thread, so a file that crashes the reader, hangs or exhausts
  memory is a finding for that file, never a dead Dask worker (`KilledWorker`).
- **Faults.** A batch whose worker dies is rerun elsewhere by the scheduler. When the scheduler
  cannot be reached, or the connection to it is lost mid-audit, every file without a verdict is
  answered with the reason: the audit makes those windows `unknown` (exit 3), never `missing`.
  The task function never raises (a failing Dask task is logged with its arguments).

The scheduler and the workers need the auditor installed, the same version as the client
(`pip install 'export-auditor[cluster]'`): Dask unpickles the task on the scheduler and runs it
on the workers. `tls://` addresses use Dask's own security settings (distributed.comm.tls.*).
"""

from __future__ import annotations

import atexit
import os
import pickle
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Self

from auditor.audit import Checker
from auditor.errors import StorageError
from auditor.storage.base import ObjectInfo, Store, scrub
from auditor.validate import FileVerdict, Source, plan
from auditor.validate.sandbox import DEFAULT_VALIDATOR, Limits, ObjectSource, Sandbox

BATCH_BYTES = 256 << 20  # a work unit: a few seconds of decoding for one worker thread
MIN_BATCH_BYTES = plan.MIN_BATCH_BYTES
BATCH_FILES = 500
TASK_PREFIX = "auditor-deep"
WORKER_WAIT = 120.0  # seconds the cluster may have no worker at all before the files still out are answered "could not be deep-checked"
SCHEDULER_ANSWER = 10.0  # seconds the scheduler has to say how many workers it has; no answer counts as none
STALL_SLACK = 120.0  # beyond the longest batch's validation deadlines: time for a worker to start and read its batch
POLL = 1.0  # how often, while no batch finishes, the audit asks the scheduler how many workers it has
WAIT_STEP = 0.02  # seconds between looks at the batches that finished

Answer = tuple[str, FileVerdict | str]  # (object key, its verdict or why it could not be checked)


def plan_batches(files: Sequence[ObjectInfo], *, threads: int, batch_bytes: int = BATCH_BYTES, batch_files: int = BATCH_FILES) -> list[tuple[ObjectInfo, ...]]:
    """Work units for the cluster's worker threads (validate.plan.plan_batches with the cluster's sizes)."""
    return plan.plan_batches(files, threads=threads, batch_bytes=batch_bytes, batch_files=batch_files)


@dataclass(frozen=True)
class Batch:
    """One work unit as it travels to a worker.

    `destination` is the pickled Store (URL and options, credentials included): it is opened only
    on the worker, never by the scheduler, and no repr shows it.
    """

    files: tuple[ObjectInfo, ...]
    limits: Limits
    validator: str
    destination: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Batch({len(self.files)} files, {sum(f.size for f in self.files)} bytes)"


def check_batch(batch: Batch) -> tuple[list[Answer], int]:
    """The Dask task: deep-check every file of `batch` in this worker's sandbox.

    Returns (answers, bytes read from the store). Never raises: a destination that cannot be
    opened or a file that cannot be read is answered with the reason (the file is `unknown`).
    """
    try:
        store = pickle.loads(batch.destination)  # our own payload: the auditor that submitted it pickled the store
    except StorageError as e:
        return [(f.key, str(e)) for f in batch.files], 0
    except Exception as e:  # noqa: BLE001 - the task must not fail: Dask would log its arguments
        return [(f.key, f"the destination cannot be opened on a Dask worker: {_describe(e)}") for f in batch.files], 0
    answers: list[Answer] = []
    try:
        sandbox = _worker_sandbox(batch.limits, batch.validator)
    except Exception as e:  # noqa: BLE001
        return [(f.key, f"no validation worker could be started on a Dask worker: {_describe(e)}") for f in batch.files], 0
    try:
        # one message to one validation process: it reads the next file while it decodes this one
        verdicts = sandbox.check_many([(ObjectSource(store, info), info.name) for info in batch.files], deep=True)
    except Exception as e:  # noqa: BLE001
        return [(f.key, f"could not be deep-checked on a Dask worker: {_describe(e)}") for f in batch.files], int(getattr(store, "bytes_read", 0))
    for info, verdict in zip(batch.files, verdicts, strict=True):
        answers.append((info.key, str(verdict) if isinstance(verdict, StorageError) else verdict))
    return answers, int(getattr(store, "bytes_read", 0))


_SANDBOXES: dict[tuple[Limits, str], Sandbox] = {}
_SANDBOX_LOCK = threading.Lock()


def _worker_sandbox(limits: Limits, validator: str) -> Sandbox:
    """This Dask worker's pool of validation processes: one per worker thread, started once."""
    with _SANDBOX_LOCK:
        sandbox = _SANDBOXES.get((limits, validator))
        if sandbox is None:
            sandbox = Sandbox(workers=_worker_threads(), limits=limits, validator=validator)
            atexit.register(sandbox.close)
            _SANDBOXES[(limits, validator)] = sandbox
        return sandbox


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1


def _knock(address: str, timeout: float | None) -> None:
    """Ask the scheduler who it is; raises when it cannot be reached.

    Done before a Client is built, because a Client that fails to connect complains once more
    when it is garbage-collected ("Exception ignored in Client.__del__"), after the audit's message.
    """
    import asyncio

    from distributed.core import rpc
    from distributed.security import Security

    async def identify() -> None:
        async with rpc(address, connection_args=Security().get_connection_args("client"), timeout=timeout) as scheduler:
            await scheduler.identity()

    asyncio.run(identify())


def _describe(e: BaseException) -> str:
    return scrub(f"{type(e).__name__}: {e}")[:300]


class ClusterChecker:
    """A Checker whose deep checks run on the Dask cluster at `address`; quick checks stay with `local`.

    `deep_check` connects (once; again after a lost connection), submits every batch before it
    returns, and yields verdicts as they come back. It never raises: a file the cluster could not
    check is answered with the reason, and its window is `unknown`.

        with ClusterChecker("tcp://10.0.0.5:8786", local=Sandbox()) as checker:
            report = run_audit(settings, ..., options=AuditOptions(deep=True), checker=checker)
    """

    def __init__(
        self,
        address: str,
        *,
        local: Checker,
        limits: Limits | None = None,
        validator: str = DEFAULT_VALIDATOR,
        batch_bytes: int = BATCH_BYTES,
        batch_files: int = BATCH_FILES,
        connect_timeout: float | None = None,
        worker_wait: float = WORKER_WAIT,
        stall_slack: float = STALL_SLACK,
    ) -> None:
        self.address = address
        self.local = local
        self.isolated = local.isolated  # deep checks are isolated on the workers in any case
        self.limits = limits or Limits()
        self.validator = validator
        self.batch_bytes, self.batch_files = batch_bytes, batch_files
        self.connect_timeout = connect_timeout  # None: Dask's distributed.comm.timeouts.connect
        # Dask keeps work for a worker that may yet come; an audit does not wait for ever: with no worker for this long
        # (or a scheduler that does not say), what is still out is answered "could not be deep-checked" (its windows
        # unknown). A batch that is merely slow is bounded on its worker by each file's validation deadline, and a worker
        # that stops answering (frozen: it enforces no deadline) by the audit: nothing finished for longer than the
        # longest batch's deadlines and STALL_SLACK ends the wait the same way.
        self.worker_wait, self.stall_slack = worker_wait, stall_slack
        self.tasks = 0  # work units submitted so far
        self._client: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check(self, source: Source, name: str, *, deep: bool) -> FileVerdict:
        return self.local.check(source, name, deep=deep)

    def check_many(self, items: Sequence[tuple[Source, str]], *, deep: bool) -> list[FileVerdict | StorageError]:
        return self.local.check_many(items, deep=deep)

    def warm(self) -> None:
        warm = getattr(self.local, "warm", None)
        if warm is not None:
            warm()

    def deep_check(self, store: Store, files: Sequence[ObjectInfo]) -> Iterator[Answer]:
        """Submit deep checks of `files` (objects of `store`) now; yield (key, verdict or reason) as they finish."""
        if not files:
            return iter(())
        try:
            destination = pickle.dumps(store)
        except Exception as e:  # noqa: BLE001 - a store that cannot travel is a reason, not a crash
            return iter([(f.key, f"the destination cannot be sent to the Dask cluster: {_describe(e)}") for f in files])
        try:
            client = self._connect()
            threads = sum(client.nthreads().values())
        except Exception as e:  # noqa: BLE001 - unreachable, refused, TLS misconfigured …
            reason = f"could not be deep-checked: the Dask scheduler at {self.address} cannot be reached ({_describe(e)}){self._tls_hint()}"
            return iter([(f.key, reason) for f in files])
        token = uuid.uuid4().hex[:12]
        batches = plan_batches(files, threads=threads or 1, batch_bytes=self.batch_bytes, batch_files=self.batch_files)
        pending: dict[Any, tuple[ObjectInfo, ...]] = {}
        unsent: list[ObjectInfo] = []
        problem = ""
        for index, batch in enumerate(batches):
            try:
                future = client.submit(check_batch, Batch(batch, self.limits, self.validator, destination), key=f"{TASK_PREFIX}-{token}-{index}", pure=False)
            except Exception as e:  # noqa: BLE001 - the connection went away while submitting
                unsent += batch
                problem = _describe(e)
                continue
            pending[future] = batch
        self.tasks += len(pending)
        lost: list[Answer] = [(f.key, f"could not be deep-checked: the Dask scheduler at {self.address} did not take the work ({problem})") for f in unsent]
        return self._answers(client, pending, store, lost)

    def _answers(self, client: Any, pending: dict[Any, tuple[ObjectInfo, ...]], store: Store, lost: list[Answer]) -> Iterator[Answer]:
        from distributed import as_completed

        yield from lost
        finished = as_completed(list(pending), loop=client.loop)
        workerless_since: float | None = None
        asked = progressed = time.monotonic()
        stall = max((sum(self.limits.deadline(f.size) for f in files) for files in pending.values()), default=0.0) + self.stall_slack
        try:
            while pending:
                if not finished.has_ready():
                    time.sleep(WAIT_STEP)
                    if time.monotonic() - progressed >= stall:
                        reason = f"could not be deep-checked: the Dask cluster at {self.address} finished nothing for {stall:.0f} s (a worker or its scheduler stopped answering)"
                        yield from ((f.key, reason) for files in pending.values() for f in files)
                        return  # what is still out is cancelled below
                    if time.monotonic() - asked >= POLL:  # nothing finished for a while: is there a worker to finish it?
                        asked = time.monotonic()
                        workerless_since = self._workerless_since(client, workerless_since)
                        if workerless_since is not None and asked - workerless_since >= self.worker_wait:
                            reason = f"could not be deep-checked: the Dask cluster at {self.address} had no worker for {self.worker_wait:.0f} s"
                            yield from ((f.key, reason) for files in pending.values() for f in files)
                            return  # what is still out is cancelled below
                    continue
                workerless_since, asked = None, time.monotonic()
                progressed = asked
                for future in finished.next_batch(block=False):
                    files = pending.pop(future)
                    try:
                        answers, read = future.result()
                    except Exception as e:  # noqa: BLE001 - the connection was lost, or the task died on every worker it tried
                        reason = self._reason(e)
                        yield from ((f.key, reason) for f in files)
                        continue
                    store.count(read)
                    yield from answers
        finally:
            if pending:  # an audit that stopped early leaves nothing running on the cluster
                with suppress(Exception):
                    client.cancel(list(pending))

    @staticmethod
    def _workerless_since(client: Any, since: float | None) -> float | None:
        """Since when the cluster has had no worker, or a scheduler that does not answer (a frozen one kept the call
        waiting, and the audit with it, for as long as it was frozen); None: it has one now, or the connection was lost
        (which ends the work's futures on its own)."""
        try:
            workers = len(client.nthreads(callback_timeout=SCHEDULER_ANSWER))
        except TimeoutError:
            workers = 0
        except Exception:  # noqa: BLE001
            return None
        if workers:
            return None
        return since if since is not None else time.monotonic()

    def _reason(self, e: BaseException) -> str:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        if isinstance(e, FutureCancelledError):
            return f"could not be deep-checked: the connection to the Dask scheduler at {self.address} was lost"
        if isinstance(e, KilledWorker):
            return f"could not be deep-checked: every Dask worker that ran its batch died ({self.address})"
        return f"could not be deep-checked on the Dask cluster at {self.address}: {_describe(e)}"

    def _tls_hint(self) -> str:
        if self.address.startswith("tls://"):
            return "; tls:// uses Dask's TLS settings: distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and .key"
        return ""

    def _connect(self) -> Any:
        with self._lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            self._close_client()
            from distributed import Client

            _knock(self.address, self.connect_timeout)
            timeout = {} if self.connect_timeout is None else {"timeout": self.connect_timeout}
            self._client = Client(self.address, set_as_default=False, **timeout)
            return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):
                client.close(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._close_client()
