"""A small run of bench/estate_bench.py, so the benchmark cannot rot (issue 10)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "estate_bench.py"


def test_the_estate_bench_runs_and_its_re_audit_is_incremental_and_reads_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--datasets", "2", "--windows", "40", "--per-window", "2", "--keep", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    assert "compliant; listing full" in lines["(b) first audit"] and "read 240 files" in lines["(b) first audit"]
    incremental = lines["(c) re-audit, incremental"]
    assert re.search(r"compliant; listing incremental \(\d+ prefixes, \d+ listed, \d+ from the catalog\); read 0 files, 0 bytes", incremental), incremental
    assert "listing full" in lines["(d) re-audit, full sweep"] and "read 0 files, 0 bytes" in lines["(d) re-audit, full sweep"]
    assert len(re.findall(r"^RATIO .* / floor: [\d.]+ \(CPU [\d.]+, peak memory [\d.]+\)$", done.stdout, re.MULTILINE)) == 3
    assert re.search(r"^RATIO \(b\) first audit / \(a\+\) floor with reads: [\d.]+; / \(a\+\+\) floor with footers parsed: [\d.]+$", done.stdout, re.MULTILINE), done.stdout
