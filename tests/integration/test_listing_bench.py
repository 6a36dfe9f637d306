"""A small run of bench/listing_bench.py (S3 on moto, LIST requests counted), so the benchmark cannot rot (issue 10)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "listing_bench.py"


def test_the_listing_bench_counts_list_requests_and_the_re_audit_agrees_with_a_full_sweep() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--windows", "24", "--datasets", "2", "--per-window", "1"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+) windows: raw \((\d+), \d+\), first \((\d+), (\d+)\), re-audit \((\d+), (\d+)\) in [\d.]+ s, full sweep \((\d+), \d+\); same verdicts: (\w+)$", done.stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["24"], done.stdout
    for _windows, raw, first_lists, first_all, again_lists, again_all, swept, same in rows:
        assert int(raw) >= 1 and int(first_lists) == int(swept) == int(raw)  # a full sweep lists like the raw listing
        assert int(first_all) > int(first_lists)  # the first audit also read every file
        assert int(again_all) == int(again_lists)  # the unchanged tree: the re-audit only lists, it reads nothing
        assert same == "True"
    sweeps = re.findall(r"^\s+24 windows: (inventory|listing): LIST requests (\d+) \(all requests (\d+)\) .* same verdicts as a live sweep: (\w+)$", done.stdout, re.MULTILINE)
    assert len(sweeps) == 1 and sweeps[0][3] == "True", done.stdout  # (e): the scheduled sweep with an inventory report agrees
    if sweeps[0][0] == "listing":  # a tree this small lists for less than its open windows' prefixes: the report is not even read
        assert sweeps[0][1] == sweeps[0][2], done.stdout
