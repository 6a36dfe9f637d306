"""Deep and sampled audits over time: a --sample rotation that covers every file whatever else audits in between, and
checks that did not finish (out of time, out of memory, a worker killed from outside, a file that changed under the
read) that are never taken for a verdict on the bytes, nor for a deep check."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.catalog.repository import open_catalog
from auditor.evidence_html import render_evidence
from tests.conftest import Tree, t
from tests.integration.test_ledger import run


def _config(tmp_path: Path, tree: Tree, *, fmt: str = "parquet", end: str = "2026-11-27T12:00:00Z", validation: str = "isolate = false") -> Path:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
{validation}
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "e"
destination = "d"
datasets = ["ds"]
format = "{fmt}"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z", endTime = "{end}" }}
"""
    )
    return config


def _audit(config: Path, *args: str, as_of: str = "2026-11-28T12:00:00Z") -> tuple[int, dict[str, Any]]:
    code, out = run("audit", "--config", str(config), "--as-of", as_of, "--format", "json", *args)
    return code, json.loads(out)


def _deep_at(tmp_path: Path) -> dict[str, Any]:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        return {k: r.deep_at for k, r in catalog.known_files("d").items() if r.role == "data"}
    finally:
        catalog.close()


def test_a_sample_rotation_covers_every_file_whatever_audits_in_between(tree: Tree, tmp_path: Path) -> None:
    """The turn was the number of audits recorded, quick ones included: a daily --sample 50 beside a quick audit after
    each took turn 0 every time, and half the files were never deep-checked."""
    for hour in (0, 3, 6, 9):
        tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), manifest=False)
    config = _config(tmp_path, tree)
    turns = []
    for day in range(4):
        noon = t("2026-11-28T12:00") + timedelta(days=day)
        _code, report = _audit(config, "--sample", "50", as_of=noon.strftime("%Y-%m-%dT%H:%M:%SZ"))
        turns.append(report["method"]["sample_turn"]["turn"])
        _audit(config, as_of=(noon + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))  # a quick audit in between
    assert turns == [0, 1, 0, 1]
    assert all(at is not None for at in _deep_at(tmp_path).values()), _deep_at(tmp_path)


def test_a_deep_check_that_runs_out_of_time_is_no_deep_check(tree: Tree, tmp_path: Path) -> None:
    """A deep check stopped at its deadline was recorded as a deep check (the report counted the file deep-verified),
    and the quick audit that retried it kept that date: a file no deep check ever finished, deep-verified for good."""
    [path] = [p for p in tree.export("ds", t("2026-11-27T00:00"), file_format="json", manifest=False, parts=1) if p.name.startswith("part-")]
    tree.rewrite(path, gzip.compress(gzip.decompress(path.read_bytes()) * 20000, 1))
    config = _config(tmp_path, tree, fmt="json", end="2026-11-27T03:00:00Z", validation="workers = 1\ntimeout_seconds = 0.2\nmin_throughput_mb = 100000")
    _code, report = _audit(config, "--deep")
    codes = [f["code"] for f in report["exports"][0]["windows"][0]["findings"]]
    assert "validate.timeout" in codes and report["assurance"]["deep_verified"] == 0, (codes, report["assurance"])
    _code, report = _audit(config, as_of="2026-11-28T13:00:00Z")  # retried by a quick check
    assert report["assurance"]["deep_verified"] == 0 and list(_deep_at(tmp_path).values()) == [None]


def test_a_file_too_big_for_the_memory_limit_is_no_corrupt_file_and_is_read_again_once_the_limit_is_raised(tree: Tree, tmp_path: Path) -> None:
    """A valid Parquet file whose one row group decodes to 320 MiB, under memory_mb = 256: its deep check called it
    `parquet.corrupt` (pyarrow's out-of-memory taken for bad pages), and once memory_mb was raised no audit read it
    again: invalid for good."""
    [path] = [p for p in tree.export("ds", t("2026-11-27T00:00"), manifest=False, parts=1) if p.name.startswith("part-")]
    out = io.BytesIO()
    pq.write_table(pa.table({"n": pa.nulls(40_000_000, pa.int64()).fill_null(0)}), out, row_group_size=40_000_000, compression="gzip")
    tree.rewrite(path, out.getvalue())
    config = _config(tmp_path, tree, end="2026-11-27T03:00:00Z", validation="workers = 1\nmemory_mb = 256")
    code, report = _audit(config, "--deep")
    codes = {f["code"] for f in report["exports"][0]["windows"][0]["findings"]}
    assert code == 1 and "validate.memory_limit" in codes and "parquet.corrupt" not in codes, codes
    config.write_text(config.read_text().replace("memory_mb = 256", "memory_mb = 4096"))
    code, report = _audit(config, "--deep", as_of="2026-11-28T13:00:00Z")
    assert code == 0 and report["exports"][0]["windows"][0]["status"] == "ok" and report["assurance"]["deep_verified"] == 1


def test_a_worker_killed_from_outside_is_no_verdict_on_the_file(tree: Tree, tmp_path: Path) -> None:
    """The validation worker killed mid-check (the machine's OOM killer, a person): the file was `invalid
    validate.crashed` for good. It is checked again by a fresh worker, and is ok."""
    [path] = [p for p in tree.export("ds", t("2026-11-27T00:00"), file_format="json", manifest=False, parts=1) if p.name.startswith("part-")]
    tree.rewrite(path, gzip.compress(gzip.decompress(path.read_bytes()) * 20000, 1))
    config = _config(tmp_path, tree, fmt="json", end="2026-11-27T03:00:00Z", validation="workers = 1")
    killed: list[int] = []

    def kill_the_checking_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    parent = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                # this audit's worker (the CLI runs in this process): not one of a test running beside this one
                if parent == os.getpid() and b"auditor.validate.sandbox" in cmdline and b"/bin/sh" not in cmdline.split(b"\0")[0]:
                    time.sleep(0.5)  # into the check
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_checking_worker)
    killer.start()
    code, report = _audit(config, "--deep")
    killer.join()
    window = report["exports"][0]["windows"][0]
    assert killed and code == 0 and window["status"] == "ok" and report["assurance"]["deep_verified"] == 1, window


def test_a_sample_turn_whose_deep_checks_did_not_finish_is_taken_again(tree: Tree, tmp_path: Path) -> None:
    """The turn moved on even when its deep checks came back unfinished (a cluster down, a deadline too short): with
    outages in step with the turns, some files were never deep-checked. Such a turn is taken again."""
    for hour in (0, 3):
        [path] = [p for p in tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=False, parts=1) if p.name.startswith("part-")]
        tree.rewrite(path, gzip.compress(gzip.decompress(path.read_bytes()) * 20000, 1))
    config = _config(tmp_path, tree, fmt="json", end="2026-11-27T06:00:00Z", validation="workers = 1\ntimeout_seconds = 0.2\nmin_throughput_mb = 100000")
    turns, reports = [], []
    for hour in (12, 13, 14, 15):
        _code, report = _audit(config, "--sample", "50", as_of=f"2026-11-28T{hour}:00:00Z")
        turns.append((report["method"]["sample_turn"]["turn"], report["method"]["sample_turn"]["complete"]))
        reports.append(report)
    stuck = next(i for i, (_turn, complete) in enumerate(turns) if not complete)  # a turn whose files are too slow for the deadline
    assert stuck <= 1 and all(turn == turns[stuck] for turn in turns[stuck:]), turns  # taken again, not passed over
    # the report and its evidence page say how many files of the turn went without a deep check
    turn = turns[stuck][0]
    in_turn = [key for key in _deep_at(tmp_path) if zlib.crc32(key.encode()) % 2 == turn]  # the files whose turn it is
    assert in_turn and reports[stuck]["method"]["sample_turn"]["unchecked"] == len(in_turn), (in_turn, reports[stuck]["method"])
    page = render_evidence(reports[stuck], audit_id=None)
    assert f'id="turn-unfinished">not finished: {len(in_turn)} file(s) of this turn not deep-checked' in page, page
    config.write_text(config.read_text().replace("timeout_seconds = 0.2", "timeout_seconds = 60"))
    seen = []
    for hour in (16, 17):
        _code, report = _audit(config, "--sample", "50", as_of=f"2026-11-28T{hour}:00:00Z")
        seen.append((report["method"]["sample_turn"]["turn"], report["method"]["sample_turn"]["complete"]))
    assert seen == [(turns[stuck][0], True), (1 - turns[stuck][0], True)], seen  # the same turn, finished this time; then the next
    assert report["method"]["sample_turn"]["unchecked"] == 0 and "turn-unfinished" not in render_evidence(report, audit_id=None)
    assert all(at is not None for at in _deep_at(tmp_path).values()), _deep_at(tmp_path)
