"""Benchmark: an estate of a million files: the first audit, the incremental re-audit and a full sweep,
against one raw listing of the same tree.

Run: .venv/bin/python bench/estate_bench.py [--datasets 50] [--windows 2920] [--per-window 6] [--keep DIR]

Builds a local (`file://`) tree the way AEP writes it: `datasets` datasets × `windows` 3-hourly
windows (2,920 = a year) × `per-window` gzip-Parquet files and one manifest each (by default 50 ×
2,920 × 7 = 1,022,000 files). Data files are hard links to a few real Parquet files (a quick audit
reads footers, and links make a million files cheap to write); manifests are written per folder.
Then, each as a whole process (wall clock, CPU, peak memory):
- (a) the floor: one raw fsspec `find(detail=True)` listing of the tree; and the first audit's floors
  from audit_bench.py at this scale (`--no-floors` leaves them out): (a+) the listing plus every footer
  and manifest read, (a++) the same with every footer parsed by pyarrow;
- (b) the first quick audit with a SQLite catalog (a full sweep: it reads every footer);
- (c) the re-audit of the unchanged tree (incremental: it lists only windows that can still change);
- (d) the same re-audit forced to sweep in full (`--full-sweep`), as it runs once a day.
Goal (issue 10): (c) ≤ 2× (a) with 0 data bytes read, and memory that does not grow with the estate
beyond the catalog's own view of it; (d) says what the daily sweep costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_bench import CPU, FOOTERS, PEAK, run

STEP = timedelta(hours=3)
DESTINATION_ID = "d0420d72-756c-4159-9e7f-7d3e2f8b501e"
LINKS_PER_FILE = 60_000  # ext4 allows 65,000 links to one inode


def build_tree(root: Path, *, datasets: int, windows: int, per_window: int, start: datetime) -> int:
    from auditor.exporter import encode_records

    sources = root.parent / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    links = datasets * windows
    copies = -(-links // LINKS_PER_FILE)
    early = (start - timedelta(days=1)).timestamp()
    names = [f"part-{i:05d}-tid-bench-c000.gz.parquet" for i in range(per_window)]
    originals: list[list[Path]] = []
    for c in range(copies):
        row = []
        for i in range(per_window):
            path = sources / f"{c}-{i}.gz.parquet"
            path.write_bytes(encode_records([{"id": i * 1000 + j, "city": f"c{j % 7}", "revenue": j / 7} for j in range(50)], file_format="parquet", compression="gzip"))
            os.utime(path, (early, early))
            row.append(path)
        originals.append(row)
    sizes = [p.stat().st_size for p in originals[0]]
    count = 0
    for d in range(datasets):
        dataset = f"{d:024x}"
        for w in range(windows):
            when = start + w * STEP
            folder = root / dataset / f"exportTime={when:%Y%m%d%H%M}"
            folder.mkdir(parents=True)
            row = originals[(d * windows + w) // LINKS_PER_FILE]
            for name, source in zip(names, row, strict=True):
                os.link(source, folder / name)
            manifest = folder / f"manifest-{DESTINATION_ID}-{d:04d}{w:06d}.json"
            results = [{"sinkPath": f"/{root.as_posix().strip('/')}/{dataset}/exportTime={when:%Y%m%d%H%M}", "name": n, "size": s} for n, s in zip(names, sizes, strict=True)]
            manifest.write_text(json.dumps({"flowRunId": f"{d:04d}{w:06d}", "scheduledTime": f"{when:%Y-%m-%dT%H:%M:%SZ}", "exportResults": results}))
            stamp = (when + timedelta(minutes=10)).timestamp()
            os.utime(manifest, (stamp, stamp))
            count += per_window + 1
    return count


def write_config(path: Path, root: Path, catalog: Path, *, datasets: int, start: datetime) -> None:
    ids = ", ".join(f'"{d:024x}"' for d in range(datasets))
    path.write_text(
        f"""
[catalog]
url = "sqlite:///{catalog}"

[[destinations]]
name = "estate"
url = "{root.as_uri()}"

[[exports]]
name = "estate"
destination = "estate"
datasets = [{ids}]
format = "parquet"
compression = "gzip"
manifest = true
grace = "3h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--windows", type=int, default=2920, help="3-hourly windows per dataset (2,920: a year)")
    parser.add_argument("--per-window", type=int, default=6, help="data files per window (plus one manifest)")
    parser.add_argument("--keep", help="build the tree here and keep it (a tree already there is reused; its catalog starts afresh)")
    parser.add_argument("--no-floors", dest="floors", action="store_false", help="leave out the first audit's floors (a+) and (a++): every footer read, and parsed")
    args = parser.parse_args(argv)
    # the last window is the one just before now, so the audits see a healthy estate with today's windows open
    now = datetime.now(UTC)
    last = now.replace(hour=now.hour - now.hour % 3, minute=0, second=0, microsecond=0) - STEP
    start = last - (args.windows - 1) * STEP
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        root, catalog, config = base / "exports", base / "catalog.db", base / "auditor.toml"
        meta = base / "tree.json"
        began = time.perf_counter()
        if args.keep and meta.exists() and json.loads(meta.read_text())["args"] == [args.datasets, args.windows, args.per_window]:
            kept = json.loads(meta.read_text())
            files, start = kept["files"], datetime.fromisoformat(kept["start"])
        else:
            files = build_tree(root, datasets=args.datasets, windows=args.windows, per_window=args.per_window, start=start)
            meta.write_text(json.dumps({"args": [args.datasets, args.windows, args.per_window], "files": files, "start": start.isoformat()}))
        catalog.unlink(missing_ok=True)
        write_config(config, root, catalog, datasets=args.datasets, start=start)
        print(f"estate: {files} files = {args.datasets} datasets × {args.windows} windows × ({args.per_window} gzip Parquet + 1 manifest); ready in {time.perf_counter() - began:.0f} s; {os.cpu_count()} CPUs")
        python = sys.executable
        floor_code = f"import fsspec; found = fsspec.filesystem('file').find({str(root)!r}, detail=True); assert len(found) == {files}"
        run([python, "-c", floor_code])  # warm the page cache
        floor, _ = run([python, "-c", floor_code])
        floor_cpu, floor_peak = CPU[-1], PEAK[-1]
        print(f"(a) floor: one raw fsspec find(detail=True), whole process: {floor:.1f} s, CPU {floor_cpu:.1f} s, peak memory {floor_peak / 2**20:.0f} MiB")
        # the first audit's floors at this scale (audit_bench.py's): every footer and manifest read (a+), and parsed (a++)
        floors = {}
        if args.floors:
            run([python, "-c", FOOTERS, str(root), str(files), "read"])  # warm the page cache with the files' tails too
            for mode, label in (("read", "(a+) the listing plus every footer and manifest read"), ("parse", "(a++) the same, every footer parsed (pyarrow) and manifest (json)")):
                elapsed, _ = run([python, "-c", FOOTERS, str(root), str(files), mode])
                floors[mode] = elapsed
                print(f"{label}, one plain process: {elapsed:.1f} s, CPU {CPU[-1]:.1f} s, peak memory {PEAK[-1] / 2**20:.0f} MiB")
        audit = [python, "-m", "auditor", "audit", "--config", str(config), "--format", "json", "--output", str(base / "report.json")]
        figures = {}
        for label, extra in (("(b) first audit", []), ("(c) re-audit, incremental", []), ("(d) re-audit, full sweep", ["--full-sweep"])):
            (base / "report.json").unlink(missing_ok=True)  # a run that fails writes none: no figure from the run before
            elapsed, _ = run(["sh", "-c", '"$@"; test $? -le 3', "audit", *audit, *extra])  # any verdict (exit 0, 1 or 3) is a figure
            report = json.loads((base / "report.json").read_text())
            a, listing = report["assurance"], report["method"]["listing"]["estate"]
            figures[label] = (elapsed, CPU[-1], PEAK[-1])
            print(
                f"{label}: {elapsed:.1f} s, CPU {CPU[-1]:.1f} s, peak memory {PEAK[-1] / 2**20:.0f} MiB; {report['status']}; "
                f"listing {listing['mode']} ({listing['prefixes']} prefixes, {listing['listed_objects']} listed, {listing['carried_from_catalog']} from the catalog); "
                f"read {a['files_read']} files, {a['bytes_read']} bytes"
            )
        for label, (elapsed, cpu, peak) in figures.items():
            print(f"RATIO {label} / floor: {elapsed / floor:.2f} (CPU {cpu / floor_cpu:.2f}, peak memory {peak / floor_peak:.2f})")
        if floors:
            first = figures["(b) first audit"][0]
            print(f"RATIO (b) first audit / (a+) floor with reads: {first / floors['read']:.2f}; / (a++) floor with footers parsed: {first / floors['parse']:.2f}")


if __name__ == "__main__":
    main()
