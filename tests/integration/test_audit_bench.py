"""A small run of bench/audit_bench.py, so the benchmark cannot rot (issue 10)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "audit_bench.py"


def test_the_audit_bench_runs_and_a_re_audit_reads_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--files", "110", "--datasets", "2", "--per-window", "4", "--repeat", "1", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RATIO re-audit / floor:" in done.stdout
    assert "read 0 files, 0 data bytes" in done.stdout
    assert "RATIO first audit / floor with reads:" in done.stdout
    assert "RATIO first audit / floor with footers parsed:" in done.stdout
    assert "RATIO peak memory first audit / listing:" in done.stdout
    assert "RATIO work per file, first audit less its fixed cost" in done.stdout


def test_the_validate_bench_runs() -> None:
    bench = BENCH.parent / "validate_bench.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--files", "3", "--rows", "3000", "--repeat", "1", "--small-files", "30", "--workers", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RATIO deep audit (isolated) / pyarrow decode-with-CRC throughput:" in done.stdout


def test_the_cluster_bench_runs_and_the_files_do_not_cross_dask() -> None:
    """A small run of bench/cluster_bench.py: a real scheduler and two workers behind counting proxies."""
    bench = BENCH.parent / "cluster_bench.py"
    done = subprocess.run([sys.executable, str(bench), "--files", "4", "--rows", "20000", "--repeat", "1"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RATIO cluster / local deep throughput:" in done.stdout
    data = int(re.search(r"the files themselves: ([\d,]+) bytes", done.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    crossed = int(re.search(r"all connections\s+([\d,]+) bytes", done.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 0 < crossed < data / 4, done.stdout  # the workers read the files from the store: only tasks and verdicts cross
