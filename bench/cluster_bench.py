"""Benchmark: deep checks locally vs on a two-worker Dask cluster on this machine, and the bytes
that crossed the cluster's connections.

Run: .venv/bin/python bench/cluster_bench.py [--files 40] [--rows 250000] [--repeat 3]

Both sides get the same parallelism: locally a sandbox of 2 validation processes, on the cluster
2 workers with 1 thread each (so 2 validation processes). Every connection of the cluster goes
through a counting TCP proxy: the client's connection to the scheduler, the workers' connections
to the scheduler, and every connection made to a worker (the scheduler gathering results,
peers). Worker's own counter `transfer_outgoing_bytes_total` (results served) is printed too.
The files are read by the workers straight from the store (a local folder here): those bytes
never cross a Dask connection, and the figures show it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: validate_bench beside this file
import validate_bench

from auditor.audit import AuditOptions, run_audit
from auditor.cluster import ClusterChecker
from auditor.config import settings_from_mapping
from auditor.report import AuditReport
from auditor.storage import open_store
from auditor.validate.sandbox import Sandbox

DASK = Path(sys.executable).parent / "dask"


def write_files(root: Path, files: int, rows: int) -> int:
    """validate_bench's files (in three row groups each); their bytes in all."""
    return sum(path.stat().st_size for path in validate_bench.write_files(root, files, rows, row_groups=3))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proxies:
    """Counting TCP proxies on 127.0.0.1, all served by one event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.counts: dict[str, list[int]] = {}  # name -> [bytes towards the target, bytes back]
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def add(self, name: str, target: int) -> int:
        port = free_port()
        self.counts[name] = [0, 0]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: int) -> None:
                try:
                    while data := await source.read(1 << 16):
                        self.counts[name][direction] += len(data)
                        sink.write(data)
                        await sink.drain()
                except (ConnectionError, OSError):
                    pass
                finally:
                    sink.close()

            await asyncio.gather(pipe(reader, upstream_writer, 0), pipe(upstream_reader, writer, 1))

        async def serve() -> None:
            await asyncio.start_server(handle, "127.0.0.1", port)

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return port

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {name: (c[0], c[1]) for name, c in self.counts.items()}


def wait_for(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def timed(label: str, fn: Callable[[], AuditReport], total: int, repeat: int, *, warm_up: bool = True) -> float:
    """Median of `repeat` runs, after one untimed warm-up run (which starts the validation processes)."""
    if warm_up:
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = fn()
        runs.append(time.perf_counter() - start)
        assert report.exports[0].windows[0].status.value in ("ok", "late"), report.errors
        assert report.assurance.deep_verified == report.assurance.files
    elapsed = statistics.median(runs)
    print(f"  {label:<40} {elapsed:7.3f} s  {total / elapsed / 1e6:6.1f} MB/s  (median of {repeat}, range {min(runs):.3f}-{max(runs):.3f})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        total = write_files(root, args.files, args.rows)
        settings = settings_from_mapping(
            {
                "destinations": [{"name": "d", "url": root.as_uri()}],
                "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z"}}],
            },
            {},
        )
        print(f"{args.files} files, {args.rows} rows each, {total / 1e6:.1f} MB gzip Parquet with page CRCs; {os.cpu_count()} CPUs; 2 validation processes on each side")

        def audit(checker: Sandbox | ClusterChecker) -> AuditReport:
            now = datetime.now(UTC)
            return run_audit(settings, stores={"d": open_store(root.as_uri())}, catalog=None, now=now, started=now, options=AuditOptions(deep=True), checker=checker)

        with Sandbox(workers=2) as sandbox:
            local = timed("deep, local sandbox (2 processes)", lambda: audit(sandbox), total, args.repeat)

        proxies = Proxies()
        scheduler_port = free_port()
        client_port = proxies.add("client <-> scheduler", scheduler_port)
        workers_to_scheduler = proxies.add("workers -> scheduler", scheduler_port)
        processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port), "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            wait_for(scheduler_port)
            for index in range(2):
                listen = free_port()
                contact = proxies.add(f"into worker {index}", listen)
                processes.append(
                    subprocess.Popen(
                        [
                            str(DASK), "worker", f"tcp://127.0.0.1:{workers_to_scheduler}", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                            "--listen-address", f"tcp://127.0.0.1:{listen}", "--contact-address", f"tcp://127.0.0.1:{contact}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            from distributed import Client

            address = f"tcp://127.0.0.1:{client_port}"
            with Client(address, set_as_default=False) as watcher:
                watcher.wait_for_workers(2, timeout=60)
            with Sandbox(workers=1) as quick, ClusterChecker(address, local=quick) as checker:
                audit(checker)  # the warm-up: connect, start the workers' validation processes
                before = proxies.snapshot()
                tasks_before = checker.tasks
                remote = timed("deep, Dask cluster (2 workers x 1 thread)", lambda: audit(checker), total, args.repeat, warm_up=False)
                after = proxies.snapshot()
                tasks = (checker.tasks - tasks_before) / args.repeat
            with Client(address, set_as_default=False) as watcher:
                served = watcher.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
        finally:
            for proc in processes:
                proc.kill()
                proc.wait(10)
        print(f"RATIO cluster / local deep throughput: {local / remote:.2f}")
        audits = args.repeat
        print(f"bytes per audit over Dask connections ({tasks:.0f} tasks per audit; the files themselves: {total:,} bytes):")
        crossed = 0
        for name in after:
            sent = (after[name][0] - before[name][0]) / audits
            back = (after[name][1] - before[name][1]) / audits
            crossed += int(sent + back)
            print(f"  {name:<22} {sent:>12,.0f} out {back:>12,.0f} back")
        print(f"  all connections        {crossed:>12,} bytes = {crossed / args.files:,.0f} per file = {crossed / total:.4%} of the data")
        print(f"  workers' transfer_outgoing_bytes_total (results served, all runs incl. warm-up): {sum(served.values()):,} bytes")


if __name__ == "__main__":
    main()
