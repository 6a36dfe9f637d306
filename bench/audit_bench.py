"""Benchmark: a quick audit and a re-audit of an unchanged healthy tree against one raw listing.

Run: .venv/bin/python bench/audit_bench.py [--files 22000] [--per-window 10] [--datasets 20] [--repeat 3]

Builds a local (`file://`) tree the way AEP writes it: many datasets × many 3-hourly windows ×
a few gzip-Parquet files and one manifest per window (22,000 files = 2,000 windows × (10 data
files + 1 manifest) by default). Then, in this one run, each in a fresh process and timed as a
whole process:
- (a) the floor: one raw `fsspec` `find(detail=True)` listing of the tree;
- (b) a first quick audit: `auditor audit --format json` with a SQLite catalog;
- (c) a re-audit of the unchanged tree (same command, same catalog).
It prints each figure, the ratios (b)/(a) and (c)/(a), and what (c) read: its report's
`assurance.files_read` and `assurance.bytes_read` must be 0 (goal: (c) ≤ 2× (a), issue 10).
(a) and (c) are the medians of `--repeat` runs; CPU seconds (user + system) are printed beside the
wall-clock figures, as they say more on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.exporter import encode_records, spark_name

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=3)
DESTINATION_ID = "d0420d72-756c-4159-9e7f-7d3e2f8b501e"


def build_tree(root: Path, *, datasets: int, windows: int, per_window: int) -> int:
    """Write `datasets` × `windows` export folders of `per_window` gzip-Parquet files and a manifest; returns the file count.

    The data files of one slot index share their bytes (a quick audit reads footers, so this is as
    good as distinct files and much faster to write); names, manifests and times are per folder.
    """
    import random

    parts = [encode_records([{"id": i * 100 + j, "city": f"city-{j % 7}", "revenue": j / 7} for j in range(50)], file_format="parquet", compression="gzip") for i in range(per_window)]
    count = 0
    for d in range(datasets):
        dataset = f"{d:024x}"
        for w in range(windows):
            when = START + w * STEP
            folder = f"{dataset}/exportTime={when:%Y%m%d%H%M}"
            path = root / folder
            path.mkdir(parents=True)
            rng = random.Random(f"{dataset}-{w}")
            stamp = (when + timedelta(minutes=10)).timestamp()
            results = []
            for index, data in enumerate(parts):
                name = spark_name(index, ".gz.parquet", rng)
                (path / name).write_bytes(data)
                os.utime(path / name, (stamp, stamp))
                results.append({"sinkPath": f"/{root.as_posix().strip('/')}/{folder}", "name": name, "size": len(data)})
            run_id = f"{rng.getrandbits(64):016x}"
            manifest = path / f"manifest-{DESTINATION_ID}-{run_id}.json"
            manifest.write_text(json.dumps({"flowRunId": run_id, "scheduledTime": f"{when:%Y-%m-%dT%H:%M:%SZ}", "exportResults": results}, separators=(",", ":")))
            os.utime(manifest, (stamp, stamp))
            count += per_window + 1
    return count


def write_config(path: Path, root: Path, catalog: Path, *, datasets: int, windows: int) -> None:
    ids = ", ".join(f'"{d:024x}"' for d in range(datasets))
    end = START + windows * STEP
    path.write_text(
        f"""
[catalog]
url = "sqlite:///{catalog}"

[[destinations]]
name = "bench"
url = "{root.as_uri()}"

[[exports]]
name = "bench"
destination = "bench"
datasets = [{ids}]
format = "parquet"
compression = "gzip"
manifest = true
grace = "1h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{START:%Y-%m-%dT%H:%M:%SZ}", endTime = "{end:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    )


CPU: list[float] = []  # CPU seconds (user + system) of each process run, in order


def run(cmd: list[str]) -> tuple[float, str]:
    """Wall-clock seconds of one whole process, and its standard output (its CPU seconds go to CPU)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def timed(cmd: list[str], repeat: int) -> tuple[float, float, list[float], str]:
    """Median wall-clock and median CPU seconds of `repeat` runs, every wall-clock figure, the last output."""
    walls, cpus, out = [], [], ""
    for _ in range(repeat):
        elapsed, out = run(cmd)
        walls.append(elapsed)
        cpus.append(CPU[-1])
    return statistics.median(walls), statistics.median(cpus), walls, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=22_000, help="about this many files in the tree (default 22000)")
    parser.add_argument("--per-window", type=int, default=10, help="data files per window (plus one manifest)")
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the floor and of the re-audit (median)")
    parser.add_argument("--keep", help="build the tree and catalog in this folder and keep them")
    args = parser.parse_args()
    windows = max(1, round(args.files / (args.per_window + 1) / args.datasets))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        root, catalog, config = base / "exports", base / "catalog.db", base / "auditor.toml"
        started = time.perf_counter()
        files = build_tree(root, datasets=args.datasets, windows=windows, per_window=args.per_window)
        write_config(config, root, catalog, datasets=args.datasets, windows=windows)
        print(f"tree: {files} files = {args.datasets} datasets × {windows} windows × ({args.per_window} gzip Parquet + 1 manifest), built in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs")
        python = sys.executable
        auditor = [python, "-m", "auditor", "audit", "--config", str(config), "--format", "json"]
        floor_code = f"import fsspec; found = fsspec.filesystem('file').find({str(root)!r}, detail=True); assert len(found) == {files}"
        run([python, "-c", floor_code])  # warm the page cache and the interpreter's files
        floor, floor_cpu, floors, _ = timed([python, "-c", floor_code], args.repeat)
        print(f"(a) floor: one raw fsspec find(detail=True) listing, whole process: {floor:.2f} s, CPU {floor_cpu:.2f} s  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in floors)})")
        first, out = run(auditor)
        first_cpu = CPU[-1]
        report: dict[str, Any] = json.loads(out)
        assert report["status"] == "compliant", report["status"]
        print(f"(b) first quick audit, whole process: {first:.2f} s, CPU {first_cpu:.2f} s  (read {report['assurance']['files_read']} files, {report['assurance']['bytes_read']} bytes)")
        re_audit, re_cpu, again, out = timed(auditor, args.repeat)
        report = json.loads(out)
        assert report["status"] == "compliant", report["status"]
        assurance = report["assurance"]
        print(f"(c) re-audit of the unchanged tree, whole process: {re_audit:.2f} s, CPU {re_cpu:.2f} s  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in again)})")
        print(f"    read {assurance['files_read']} files, {assurance['bytes_read']} data bytes; unchanged {assurance['files_unchanged']}")
        print(f"RATIO first audit / floor: {first / floor:.2f}  (CPU {first_cpu / floor_cpu:.2f})")
        print(f"RATIO re-audit / floor: {re_audit / floor:.2f}  (CPU {re_cpu / floor_cpu:.2f}; goal <= 2)")
        if assurance["files_read"] or assurance["bytes_read"]:
            raise SystemExit("the re-audit of an unchanged tree read data: it must read none")


if __name__ == "__main__":
    main()
