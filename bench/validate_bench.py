"""Benchmark: deep validation against plain pyarrow decoding, and what a quick check reads.

Run: .venv/bin/python bench/validate_bench.py [--files 12] [--rows 300000] [--workers 2]

Everything is measured in this one run on the same files, so the ratios compare like with like:
- deep validation (isolated workers, page CRCs on, through the store) vs plain pyarrow decoding
  of the same files with the same number of parallel readers;
- the same deep validation in-process, to show what isolation costs;
- bytes a quick check reads per file against that file's footer size;
- quick checks of many small files, isolated vs in-process (per-file overhead of isolation).
"""

from __future__ import annotations

import argparse
import io
import statistics
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.audit import InProcessChecker, run_audit
from auditor.config import settings_from_mapping
from auditor.storage import open_store
from auditor.validate.sandbox import ObjectSource, Sandbox


def write_files(root: Path, files: int, rows: int) -> list[Path]:
    paths = []
    for index in range(files):
        table = pa.table(
            {
                "id": pa.array(range(index * rows, (index + 1) * rows), pa.int64()),
                "city": pa.array([f"city-{i % 97}" for i in range(rows)]),
                "revenue": pa.array([(i % 1000) / 7 for i in range(rows)]),
                "session": pa.array([f"s{i * 7919 % 100003}" for i in range(rows)]),
            }
        )
        path = root / f"ds/exportTime=202611270000/part-{index:05d}-c000.gz.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="gzip", write_page_checksum=True, row_group_size=rows // 3)
        paths.append(path)
    return paths


def timed(label: str, fn: object, repeat: int = 5) -> float:
    """Median of `repeat` runs after one untimed warm-up run."""
    fn()  # type: ignore[operator]
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - start)
    elapsed = statistics.median(runs)
    print(f"  {label:<44} {elapsed:7.3f} s  (median of {repeat}, range {min(runs):.3f}-{max(runs):.3f})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small-files", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_files(root, args.files, args.rows)
        total = sum(p.stat().st_size for p in paths)
        store = open_store(root.as_uri())
        infos = {o.key: o for o in store.list()}
        sources = [ObjectSource(store, infos[str(p.relative_to(root))]) for p in paths]
        print(f"{args.files} files, {args.rows} rows each, {total / 1e6:.1f} MB gzip Parquet; {args.workers} parallel readers")

        def plain() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(lambda p: pq.ParquetFile(p).read(use_threads=False), paths))

        sandbox = Sandbox(workers=args.workers)
        sandbox.check(sources[0], "warm.gz.parquet", deep=False)  # start the workers outside the timing

        def isolated() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                verdicts = list(pool.map(lambda s: sandbox.check(s, s.info.name, deep=True), sources))
            assert all(v.ok and v.records == args.rows for v in verdicts), [v.findings for v in verdicts if not v.ok]

        in_process = InProcessChecker()

        def unisolated() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                verdicts = list(pool.map(lambda s: in_process.check(s, s.info.name, deep=True), sources))
            assert all(v.ok for v in verdicts)

        baseline = timed("plain pyarrow decode (baseline)", plain)
        deep_isolated = timed("deep validation, isolated workers", isolated)
        deep_inline = timed("deep validation, in-process", unisolated)
        print(f"  deep throughput: baseline {total / baseline / 1e6:.0f} MB/s, isolated {total / deep_isolated / 1e6:.0f} MB/s")
        print(f"RATIO deep-isolated / plain pyarrow throughput: {baseline / deep_isolated:.2f}  (aim >= 0.8)")
        print(f"RATIO deep-in-process / plain pyarrow throughput: {baseline / deep_inline:.2f}")

        settings = settings_from_mapping(
            {
                "destinations": [{"name": "d", "url": root.as_uri()}],
                "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z"}}],
            },
            {},
        )
        audit_store = open_store(root.as_uri())
        now = datetime.now(UTC)
        report = run_audit(settings, stores={"d": audit_store}, catalog=None, now=now, started=now, checker=sandbox)
        assert report.exports[0].windows[0].files == len(paths)
        assert report.exports[0].windows[0].status.value in ("ok", "late")  # the files were written just now
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

        def quick(checker: object, prefetch: bool) -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda s: checker.check(s.with_prefetch(s.info.name) if prefetch else s, s.info.name, deep=False), small))  # type: ignore[attr-defined]

        q_inline = timed(f"quick check of {len(small)} files, in-process", lambda: quick(in_process, False), repeat=3)
        q_isolated = timed(f"quick check of {len(small)} files, isolated", lambda: quick(sandbox, True), repeat=3)
        print(f"  {len(small) / q_isolated:.0f} files/s isolated, {len(small) / q_inline:.0f} files/s in-process")
        print(f"RATIO quick isolated / in-process throughput: {q_inline / q_isolated:.2f}")
        sandbox.close()


if __name__ == "__main__":
    main()
