"""Benchmark: a deep audit against pyarrow decoding the same files with page CRCs, and what a quick check reads.

Run: .venv/bin/python bench/validate_bench.py [--files 32] [--rows 1200000] [--workers N] [--repeat 3]

Everything is measured in this one run on the same files, so the ratios compare like with like:
- the floor: pyarrow in one process, multi-threaded, decoding every file with page checksum
  verification on (the faster of a file per thread and one file at a time with pyarrow's threads);
- a deep audit (`run_audit(deep=True)`) with isolated validation workers (one per CPU unless
  --workers says otherwise): listing, reading through the store, decoding with CRCs, verdicts;
- the same deep audit validating in-process, to show what isolation costs;
- bytes a quick check reads per file against that file's footer size;
- quick checks of many small files in batches, isolated vs in-process (per-file cost of isolation).
The files are ~10 MB of gzip Parquet each by default (one file written, the others copies of it).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.audit import AuditOptions, InProcessChecker, run_audit
from auditor.config import settings_from_mapping
from auditor.storage import open_store
from auditor.validate.sandbox import ObjectSource, Sandbox, cpus


def write_files(root: Path, files: int, rows: int, *, row_groups: int = 4) -> list[Path]:
    """`files` gzip-Parquet files of `rows` rows in `row_groups` row groups, with page CRCs, in one export folder
    (the first written, the rest copies: writing gzip is slow, reading is what is measured)."""
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "city": pa.array([f"city-{i % 97}" for i in range(rows)]),
            "revenue": pa.array([(i % 1000) / 7 for i in range(rows)]),
            "session": pa.array([f"s{i * 7919 % 100003}" for i in range(rows)]),
        }
    )
    folder = root / "ds/exportTime=202611270000"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{index:05d}-c000.gz.parquet" for index in range(files)]
    pq.write_table(table, paths[0], compression="gzip", write_page_checksum=True, row_group_size=max(1, rows // row_groups))
    for path in paths[1:]:
        shutil.copyfile(paths[0], path)
    return paths


def cpu_seconds() -> float:
    """CPU seconds of this process and its children so far, live ones included (the validation
    workers outlive each run): on a shared machine, wall-clock time says more about the others."""
    used = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        used += usage.ru_utime + usage.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            used += (int(fields[11]) + int(fields[12])) / tick
    return used


def measure(variants: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """(median wall-clock, median CPU seconds) of each variant: one untimed warm-up each, then `repeat`
    rounds that take the variants in turn, so that a busy spell on the machine hits them all alike."""
    for fn in variants.values():
        fn()
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus_used: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            cpu, start = cpu_seconds(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - start)
            cpus_used[name].append(cpu_seconds() - cpu)
    result = {}
    for name in variants:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus_used[name])
        print(f"  {name:<62} {wall:7.3f} s, CPU {cpu:7.3f} s  (median of {repeat}; wall {min(walls[name]):.3f}-{max(walls[name]):.3f})")
        result[name] = (wall, cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--rows", type=int, default=1_900_000, help="rows per file (1.9M: about 10 MB of gzip Parquet)")
    parser.add_argument("--workers", type=int, default=0, help="validation workers and floor threads (default: one per CPU)")
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workers = args.workers or cpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_files(root, args.files, args.rows)
        total = sum(p.stat().st_size for p in paths)
        print(f"{args.files} files, {args.rows} rows each, {total / 1e6:.1f} MB gzip Parquet; {workers} workers / threads; {cpus()} CPUs")

        def per_thread() -> None:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda p: pq.ParquetFile(p, page_checksum_verification=True).read(use_threads=False), paths))

        def pyarrow_threads() -> None:
            for path in paths:
                pq.ParquetFile(path, page_checksum_verification=True).read(use_threads=True)

        settings = settings_from_mapping(
            {
                "destinations": [{"name": "d", "url": root.as_uri()}],
                "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z"}}],
            },
            {},
        )
        sandbox = Sandbox(workers=workers)
        in_process = InProcessChecker()

        def deep_audit(checker: Sandbox | InProcessChecker) -> Callable[[], None]:
            def audit() -> None:
                now = datetime.now(UTC)
                report = run_audit(settings, stores={"d": open_store(root.as_uri())}, catalog=None, now=now, started=now, options=AuditOptions(deep=True), checker=checker)
                window = report.exports[0].windows[0]
                assert window.files == len(paths) and not [f for f in window.findings if f.is_error], window.findings
                assert report.assurance.read_files == len(paths)

            return audit

        floor_a, floor_b = "floor: pyarrow, a file per thread, page CRCs", "floor: pyarrow, a file at a time, pyarrow's threads, page CRCs"
        got = measure({floor_a: per_thread, floor_b: pyarrow_threads, "deep audit, isolated workers": deep_audit(sandbox), "deep audit, validating in-process": deep_audit(in_process)}, args.repeat)
        floor, floor_cpu = min(got[floor_a], got[floor_b])
        isolated, isolated_cpu = got["deep audit, isolated workers"]
        inline, inline_cpu = got["deep audit, validating in-process"]
        print(f"  throughput: floor {total / floor / 1e6:.0f} MB/s, deep audit isolated {total / isolated / 1e6:.0f} MB/s, in-process {total / inline / 1e6:.0f} MB/s")
        print(f"  per CPU second: floor {total / floor_cpu / 1e6:.0f} MB, deep audit isolated {total / isolated_cpu / 1e6:.0f} MB, in-process {total / inline_cpu / 1e6:.0f} MB")
        print(f"RATIO deep audit (isolated) / pyarrow decode-with-CRC throughput: {floor / isolated:.2f}  (per CPU second {floor_cpu / isolated_cpu:.2f}; goal >= 0.9)")
        print(f"RATIO deep audit (in-process) / pyarrow decode-with-CRC throughput: {floor / inline:.2f}  (per CPU second {floor_cpu / inline_cpu:.2f})")

        audit_store = open_store(root.as_uri())
        now = datetime.now(UTC)
        report = run_audit(settings, stores={"d": audit_store}, catalog=None, now=now, started=now, checker=sandbox)
        assert report.exports[0].windows[0].files == len(paths)
        footers = [struct.unpack("<I", p.read_bytes()[-8:-4])[0] + 8 for p in paths]
        per_file = audit_store.bytes_read / len(paths)
        mean_footer = sum(footers) / len(footers)
        print(f"quick audit of {len(paths)} files: {per_file:.0f} bytes read per file; footer {mean_footer:.0f} bytes; file {total / len(paths):.0f} bytes")
        print(f"RATIO quick-check bytes read / footer size: {per_file / mean_footer:.2f}  (of the file: {per_file / (total / len(paths)):.5f})")

        small_root = root / "small"
        small_root.mkdir()
        tiny = io.BytesIO()
        pq.write_table(pa.table({"id": list(range(50))}), tiny, compression="gzip")
        for index in range(args.small_files):
            (small_root / f"part-{index:05d}.gz.parquet").write_bytes(tiny.getvalue())
        small_store = open_store(small_root.as_uri())
        small = [ObjectSource(small_store, o) for o in small_store.list()]
        batches = [small[i : i + 256] for i in range(0, len(small), 256)]

        def quick(checker: Sandbox | InProcessChecker) -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda batch: checker.check_many([(s.with_prefetch(s.info.name), s.info.name) for s in batch], deep=False), batches))

        quick_in, quick_iso = f"quick check of {len(small)} files, in-process", f"quick check of {len(small)} files, isolated, batches of 256"
        got = measure({quick_in: lambda: quick(in_process), quick_iso: lambda: quick(sandbox)}, args.repeat)
        q_inline, q_isolated = got[quick_in][0], got[quick_iso][0]
        print(f"  {len(small) / q_isolated:.0f} files/s isolated, {len(small) / q_inline:.0f} files/s in-process")
        print(f"RATIO quick isolated / in-process throughput: {q_inline / q_isolated:.2f}")
        sandbox.close()


if __name__ == "__main__":
    main()
