"""The catalog at estate scale (issue 10, item 4): restore lookups read indexes, not tables, and the
catalog bench keeps running (a small run of bench/catalog_bench.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auditor.catalog.repository import Catalog
from auditor.restore import plan_restore
from tests.conftest import CATALOG_BENCH, built_estate


@pytest.fixture
def bench(catalog_bench: ModuleType) -> ModuleType:
    return catalog_bench


@pytest.fixture
def estate_catalog(bench: ModuleType, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Catalog, Any]]:
    """A PostgreSQL catalog of 20 datasets (2 exports) × 60 windows × 7 files, every window with a finding,
    audited through Runtime.audit, then VACUUM ANALYZE: large enough that the planner picks on cost."""
    monkeypatch.setattr(bench, "WARNED", 1)  # every window gets a warning: findings has a row per window
    estate = bench.Estate(datasets=20, exports=2, windows=60, per_window=6)
    settings, catalog, _config = built_estate(bench, estate, postgres_url, tmp_path)
    bench.analyze(catalog.engine)
    try:
        yield settings, catalog, estate
    finally:
        catalog.close()


def _cost(catalog: Catalog, statement: str, parameters: Any, *, indexes: bool) -> float:
    with catalog.engine.connect() as conn, conn.begin():
        if not indexes:
            for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
        return float(plan[0]["Plan"]["Total Cost"])


@pytest.mark.postgres
def test_restore_lookups_read_indexes_not_whole_tables(bench: ModuleType, estate_catalog: tuple[Any, Catalog, Any]) -> None:
    settings, catalog, estate = estate_catalog
    counts = catalog.table_counts()
    assert counts["files"] == 8400 and counts["windows"] == 1200 and counts["findings"] == 1200 and counts["window_status_history"] == 1200
    statements = bench.lookup_statements(settings, catalog, estate)
    assert set(statements) >= {"windows up to T", "files of the chain's folders", "findings of a window", "window counts by status", "status history of a window"}
    used: dict[str, set[str]] = {}
    for what, (statement, parameters) in statements.items():
        nodes = bench.explain(catalog.engine, statement, parameters)
        assert bench.seq_scans(nodes, counts) == [], (what, nodes)
        for _node, table, index in nodes:
            if index is not None:
                used.setdefault(what, set()).add(index)
        big = {table for _node, table, _index in nodes if table is not None and counts.get(table, 0) >= 1000}
        if big:  # the planner chose the index on cost: the same statement read without indexes costs more
            assert _cost(catalog, statement, parameters, indexes=False) > _cost(catalog, statement, parameters, indexes=True), what
    assert "uq_windows_export_id" in used["windows up to T"]
    assert "ix_files_folder" in used["files of the chain's folders"]
    assert "ix_findings_window_id" in used["findings of a window"]
    assert "ix_windows_status" in used["window counts by status"]
    assert "ix_window_status_history_at" in used["status history of a window"]
    assert "ix_audits_report_sha256" in used.get("audit by report digest", set()) or counts["audits"] < 1000  # a handful of audits: read whole, rightly

    # a restore lookup: the windows read once (present and last-known status together), no window counts, no report
    with bench.captured(catalog.engine) as seen:
        plan = plan_restore(settings, catalog, f"{1:024x}", bench.START + (bench.CHAIN - 1) * bench.STEP)
    assert plan.complete and len(plan.steps) == bench.CHAIN and sum(len(s.files) for s in plan.steps) == bench.CHAIN * estate.per_window
    assert len([s for s, _ in seen if "FROM windows" in s]) == 1
    assert all("GROUP BY" not in s for s, _ in seen)
    assert all("audits.report," not in s and not s.rstrip().endswith("audits.report") for s, _ in seen)
    assert len(seen) == 3  # the answering audit (dataset and export joined), windows, files


@pytest.mark.postgres
def test_the_catalog_bench_runs(tmp_path: Path, postgres_server: str) -> None:
    done = subprocess.run(
        [sys.executable, str(CATALOG_BENCH), "--files", "700", "--datasets", "2", "--exports", "2", "--per-window", "2", "--lookups", "20", "--clients", "3",
         "--requests", "5", "--postgres-admin", postgres_server],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for label in ("SQLite", "PostgreSQL"):
        assert f"RATIO {label} restore lookup / floor:" in done.stdout
        assert f"RATIO {label} API restore / healthz under 3 clients:" in done.stdout
