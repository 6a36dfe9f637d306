"""Benchmark: a quick audit and a re-audit of an unchanged healthy tree against one raw listing.

Run: .venv/bin/python bench/audit_bench.py [--files 22000] [--per-window 10] [--datasets 20] [--repeat 3]

Builds a local (`file://`) tree the way AEP writes it: many datasets × many 3-hourly windows ×
a few gzip-Parquet files and one manifest per window (22,000 files = 2,000 windows × (10 data
files + 1 manifest) by default). Then, in this one run, each in a fresh process and timed as a
whole process:
- (a) a floor: one raw `fsspec` `find(detail=True)` listing of the tree;
- (a+) the floor of a first audit: the same listing plus every Parquet footer read (one read of
  each file's last 64 KiB, as a Parquet reader does first) and every manifest read, in one plain
  process;
- (a++) the same reads with every footer parsed by pyarrow (`pq.read_metadata`) and every manifest by
  json: the least work that looks inside every file, which (a+) leaves out;
- (a+++) the same with every footer decoded by the bare Thrift decoder the audit's workers try first
  (faster than `read_metadata`, but it aborts the process on malformed bytes: no plain program would
  use it on untrusted files, so this floor flatters no one);
- (b0) the audit's fixed cost: the same command on the same configuration with every window still to
  come (an empty destination: the interpreter, the imports, the catalog's creation, the workers' start),
  beside the floor's own (`python -c "import fsspec"`);
- (b) a first quick audit: `auditor audit --format json` with a SQLite catalog;
- (c) a re-audit of the unchanged tree (same command, same catalog).
It prints each figure and the ratios (b)/(a+) (goal ≤ 1.3), (b)/(a++) and (c)/(a) (goal ≤ 2), the work per
file apart from the fixed costs ((b) − (b0) against (a+) less the floor's own), and what (c)
read: its report's `assurance.files_read` and `assurance.bytes_read` must be 0 (issue 10).
It also prints each process's peak resident memory (ru_maxrss from wait4: for the audit, the
largest of the audit process and its validation workers) against the listing's (goal ≤ 1.5).
(a), the (a+) floors, (b) (each with a new catalog) and (c) are the medians of `--repeat` runs (peak memory: the largest); CPU seconds (user + system, validation
workers included) are printed beside the wall-clock figures, as they say more on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
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
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)  # a schedule that has not started: the fixed cost's configuration
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


def write_config(path: Path, root: Path, catalog: Path, *, datasets: int, windows: int, start: datetime = START) -> None:
    ids = ", ".join(f'"{d:024x}"' for d in range(datasets))
    end = start + windows * STEP
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
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}", endTime = "{end:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    )


CPU: list[float] = []  # CPU seconds (user + system) of each process run, in order, its children included
PEAK: list[int] = []  # peak resident memory (bytes) of each process run: the largest of it and its children

# Runs each measured command and reports its wall-clock time, CPU and peak memory (wait4's rusage of
# that one child). A small process of its own: Linux counts the memory of the process that starts a
# child in the child's peak (vfork, then exec), and this benchmark has pyarrow loaded.
LAUNCHER = """
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(json.loads(line), stdout=out, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        answer = {"elapsed": elapsed, "cpu": usage.ru_utime + usage.ru_stime, "peak": usage.ru_maxrss * 1024,
                  "code": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(), "stderr": err.read().decode()[-2000:]}
    print(json.dumps(answer), flush=True)
"""
_launcher: subprocess.Popen[str] | None = None


def compile_auditor() -> None:
    """Write the auditor package's bytecode, as installing a wheel does (pip compiles what it installs).

    An editable install run with PYTHONDONTWRITEBYTECODE set (as on the machines here) compiles every
    module of the package again in each process: 36 modules, 0.1 s of each audit's wall-clock time that
    no installed copy pays and no floor here pays either (their libraries come compiled)."""
    import compileall

    import auditor

    compileall.compile_dir(Path(auditor.__file__).parent, quiet=1)


def run(cmd: list[str]) -> tuple[float, str]:
    """Wall-clock seconds of one whole process, and its standard output (its CPU seconds go to CPU, its peak memory to PEAK)."""
    global _launcher
    if _launcher is None:
        compile_auditor()
        _launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert _launcher.stdin is not None and _launcher.stdout is not None
    _launcher.stdin.write(json.dumps(cmd) + "\n")
    _launcher.stdin.flush()
    answer = json.loads(_launcher.stdout.readline())
    CPU.append(answer["cpu"])
    PEAK.append(answer["peak"])
    if answer["code"] != 0:
        raise SystemExit(f"{cmd[:3]} exited {answer['code']}: {answer['stderr']}")
    return float(answer["elapsed"]), str(answer["stdout"])


# The floor's reads: every Parquet file's last 64 KiB and every manifest; with "parse" (a++) each footer
# is also parsed by pyarrow and each manifest by json, the least work that looks inside every file; with
# "decode" (a+++) each footer is decoded by the bare Thrift decoder the audit's workers try first (a private
# pyarrow function that aborts the process on malformed bytes: no plain program would call it on untrusted files).
FOOTERS = """
import io, json, sys, fsspec
mode = sys.argv[3]
if mode != "read":
    import pyarrow as pa, pyarrow.parquet as pq, pyarrow._parquet as decoder
def rows(tail):
    if mode == "parse":
        return pq.read_metadata(io.BytesIO(tail)).num_rows
    footer = int.from_bytes(tail[-8:-4], "little")
    return decoder._reconstruct_filemetadata(pa.py_buffer(tail[-8 - footer : -8])).num_rows
fs = fsspec.filesystem("file")
found = fs.find(sys.argv[1], detail=True)
total = 0
for path, entry in found.items():
    if path.endswith(".parquet"):
        tail = fs.cat_file(path, start=max(0, entry["size"] - 65536))
        total += len(tail) if mode == "read" else rows(tail)
    elif path.endswith(".json"):
        body = fs.cat_file(path)
        total += len(body) if mode == "read" else len(json.loads(body)["exportResults"])
assert len(found) == int(sys.argv[2]), len(found)
print(total)
"""


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
    parser.add_argument("--keep", help="build the tree and catalog in this folder and keep them (a tree already there is reused, its catalog started afresh)")
    args = parser.parse_args()
    windows = max(1, round(args.files / (args.per_window + 1) / args.datasets))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        root, catalog, config = base / "exports", base / "catalog.db", base / "auditor.toml"
        started = time.perf_counter()
        if args.keep and root.exists():  # a tree kept from an earlier run with the same sizes: audited afresh
            files = sum(1 for p in root.rglob("*") if p.is_file())
            catalog.unlink(missing_ok=True)
        else:
            files = build_tree(root, datasets=args.datasets, windows=windows, per_window=args.per_window)
        write_config(config, root, catalog, datasets=args.datasets, windows=windows)
        print(f"tree: {files} files = {args.datasets} datasets × {windows} windows × ({args.per_window} gzip Parquet + 1 manifest), built in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs")
        python = sys.executable
        auditor = [python, "-m", "auditor", "audit", "--config", str(config), "--format", "json"]
        floor_code = f"import fsspec; found = fsspec.filesystem('file').find({str(root)!r}, detail=True); assert len(found) == {files}"
        run([python, "-c", floor_code])  # warm the page cache and the interpreter's files
        floor, floor_cpu, floors, _ = timed([python, "-c", floor_code], args.repeat)
        listing_peak = PEAK[-1]
        print(f"(a) floor: one raw fsspec find(detail=True) listing, whole process: {floor:.2f} s, CPU {floor_cpu:.2f} s, peak memory {listing_peak / 2**20:.0f} MiB  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in floors)})")
        run([python, "-c", FOOTERS, str(root), str(files), "read"])
        reads, reads_cpu, read_runs, read_bytes = timed([python, "-c", FOOTERS, str(root), str(files), "read"], args.repeat)
        print(f"(a+) floor: the listing plus every footer and manifest read, one plain process: {reads:.2f} s, CPU {reads_cpu:.2f} s, {int(read_bytes)} bytes read  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in read_runs)})")
        parsed, parsed_cpu, parsed_runs, _ = timed([python, "-c", FOOTERS, str(root), str(files), "parse"], args.repeat)
        print(f"(a++) the same with every footer parsed (pyarrow) and every manifest parsed (json), one plain process: {parsed:.2f} s, CPU {parsed_cpu:.2f} s  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in parsed_runs)})")
        decoded, decoded_cpu, decoded_runs, _ = timed([python, "-c", FOOTERS, str(root), str(files), "decode"], args.repeat)
        print(f"(a+++) the same with every footer decoded by the audit workers' bare Thrift decoder, one plain process: {decoded:.2f} s, CPU {decoded_cpu:.2f} s  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in decoded_runs)})")
        firsts, first_cpus, first_peaks = [], [], []
        for _ in range(args.repeat):  # each with a new catalog: a first audit every time
            catalog.unlink(missing_ok=True)
            elapsed, out = run(auditor)
            firsts.append(elapsed)
            first_cpus.append(CPU[-1])
            first_peaks.append(PEAK[-1])
            report: dict[str, Any] = json.loads(out)
            assert report["status"] == "compliant", report["status"]
        first, first_cpu, first_peak = statistics.median(firsts), statistics.median(first_cpus), max(first_peaks)
        # the fixed costs, beside the work per file: the audit of the same configuration whose windows are all still
        # to come (an empty destination, nothing to list, read or judge: interpreter, imports, catalog creation,
        # validation workers started), and the floor's own (the interpreter and fsspec imported)
        empty, empty_catalog, empty_config = base / "empty", base / "empty.db", base / "empty.toml"
        empty.mkdir(exist_ok=True)
        write_config(empty_config, empty, empty_catalog, datasets=args.datasets, windows=windows, start=FUTURE)
        idle_runs, idle_cpus, idle_peaks = [], [], []
        for _ in range(args.repeat):
            empty_catalog.unlink(missing_ok=True)
            elapsed, idle_out = run([python, "-m", "auditor", "audit", "--config", str(empty_config), "--format", "json"])
            idle_runs.append(elapsed)
            idle_cpus.append(CPU[-1])
            idle_peaks.append(PEAK[-1])
            assert not json.loads(idle_out)["exports"][0]["windows"], "the empty configuration expects no window yet"
        idle, idle_cpu, idle_peak = statistics.median(idle_runs), statistics.median(idle_cpus), max(idle_peaks)
        bare, _bare_cpu, _bare_runs, _ = timed([python, "-c", "import fsspec"], args.repeat)
        bare_peak = max(PEAK[-args.repeat :])
        print(f"(b0) the audit's fixed cost: the same configuration with no window due yet, whole process: {idle:.2f} s, CPU {idle_cpu:.2f} s, peak memory {idle_peak / 2**20:.0f} MiB  (the floor's: python -c 'import fsspec', {bare:.2f} s, {bare_peak / 2**20:.0f} MiB)")
        print(f"(b) first quick audit, whole process: {first:.2f} s, CPU {first_cpu:.2f} s, peak memory {first_peak / 2**20:.0f} MiB  (read {report['assurance']['files_read']} files, {report['assurance']['bytes_read']} bytes; median of {args.repeat}: {', '.join(f'{f:.2f}' for f in firsts)})")
        re_audit, re_cpu, again, out = timed(auditor, args.repeat)
        re_peak = max(PEAK[-args.repeat :])
        report = json.loads(out)
        assert report["status"] == "compliant", report["status"]
        assurance = report["assurance"]
        print(f"(c) re-audit of the unchanged tree, whole process: {re_audit:.2f} s, CPU {re_cpu:.2f} s, peak memory {re_peak / 2**20:.0f} MiB  (median of {args.repeat}: {', '.join(f'{f:.2f}' for f in again)})")
        print(f"    read {assurance['files_read']} files, {assurance['bytes_read']} data bytes; unchanged {assurance['files_unchanged']}")
        print(f"RATIO first audit / floor with reads: {first / reads:.2f}  (CPU {first_cpu / reads_cpu:.2f}; goal <= 1.3)")
        print(f"RATIO first audit / floor with footers parsed: {first / parsed:.2f}  (CPU {first_cpu / parsed_cpu:.2f})")
        print(f"RATIO first audit / floor with footers decoded as the audit does: {first / decoded:.2f}  (CPU {first_cpu / decoded_cpu:.2f})")
        print(f"RATIO first audit / listing floor: {first / floor:.2f}  (CPU {first_cpu / floor_cpu:.2f})")
        print(f"RATIO re-audit / floor: {re_audit / floor:.2f}  (CPU {re_cpu / floor_cpu:.2f}; goal <= 2)")
        print(f"RATIO peak memory first audit / listing: {first_peak / listing_peak:.2f}  (re-audit {re_peak / listing_peak:.2f}; goal <= 1.5)")
        print(f"RATIO fixed cost alone / floor with reads: {idle / reads:.2f} in time; / listing: {idle_peak / listing_peak:.2f} in peak memory")
        print(f"RATIO work per file, first audit less its fixed cost / floor with reads less its own: {(first - idle) / (reads - bare):.2f}"
              f"  (footers parsed: {(first - idle) / (parsed - bare):.2f}; decoded as the audit does: {(first - idle) / (decoded - bare):.2f})")
        if assurance["files_read"] or assurance["bytes_read"]:
            raise SystemExit("the re-audit of an unchanged tree read data: it must read none")


if __name__ == "__main__":
    main()
