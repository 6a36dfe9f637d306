"""A restore lookup's cost in connections (issue 10): its reads share one pooled connection, on SQLite
and PostgreSQL, and /api/restore answers the plan's JSON as it is."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from auditor.catalog.repository import Catalog
from auditor.config import load_settings
from auditor.errors import CatalogError
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.service.app import create_app
from tests.conftest import CATALOG_BENCH, small_estate


@pytest.fixture
def bench(catalog_bench: ModuleType) -> ModuleType:
    return catalog_bench


@pytest.fixture
def estate(bench: ModuleType, catalog_url: str, tmp_path: Path) -> Iterator[tuple[Any, Catalog, Any, Path]]:
    """2 datasets × 12 windows × 2 files audited into the catalog."""
    with small_estate(bench, catalog_url, tmp_path) as built:
        yield built


def _checkouts(catalog: Catalog) -> tuple[list[int], list[str]]:
    """Counters the pool's checkouts and the SELECTs fill meanwhile (listen, then read them)."""
    checkouts: list[int] = []
    statements: list[str] = []
    event.listen(catalog.engine.pool, "checkout", lambda *_: checkouts.append(1))
    event.listen(catalog.engine, "before_cursor_execute", lambda _c, _cu, statement, *_: statements.append(statement))
    return checkouts, statements


def test_a_restore_lookup_reads_on_one_pooled_connection(bench: ModuleType, estate: tuple[Any, Catalog, Any, Path]) -> None:
    settings, catalog, built, _ = estate
    at = bench.START + (bench.CHAIN - 1) * bench.STEP
    plan_restore(settings, catalog, f"{0:024x}", at)  # the pool holds a connection now
    checkouts, statements = _checkouts(catalog)
    plan = plan_restore(settings, catalog, f"{0:024x}", at)
    assert plan.complete and len(plan.steps) == bench.CHAIN and sum(len(s.files) for s in plan.steps) == bench.CHAIN * built.per_window
    assert len(checkouts) == 1 and len(statements) == 3  # the answering audit, windows, files: one checkout (was one each)

    # a broken chain reads the findings of the break too, on the same connection
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE windows SET status = 'missing', known_status = 'missing' WHERE scheduled = (SELECT min(scheduled) FROM windows)"))
    checkouts.clear()
    statements.clear()
    broken = plan_restore(settings, catalog, f"{0:024x}", at)
    assert not broken.complete and broken.broken is not None and broken.broken.status == "missing"
    assert len(checkouts) == 1 and len(statements) == 4  # and the findings of the window that breaks it
    with catalog.engine.connect() as conn:  # the lookup's connection went back to the pool as it came (PostgreSQL: it autocommitted)
        assert conn.get_isolation_level() != "AUTOCOMMIT"


def test_a_database_error_on_the_shared_connection_is_a_catalog_error(estate: tuple[Any, Catalog, Any, Path]) -> None:
    _, catalog, built, _ = estate
    bench_end = built.as_of
    with catalog.reading() as reads:
        assert reads.audit(1) is not None
        with catalog.engine.begin() as conn:
            conn.execute(text("ALTER TABLE findings RENAME TO findings_gone"))
        scheduled = reads.restore_windows("e00", f"{0:024x}", bench_end)[0][0].scheduled
        with pytest.raises(CatalogError, match="catalog operation failed"):
            reads.window_findings("e00", f"{0:024x}", scheduled)


def test_the_restore_route_answers_the_plan_as_json(bench: ModuleType, estate: tuple[Any, Catalog, Any, Path]) -> None:
    settings, catalog, built, config = estate
    at = bench.START + (bench.CHAIN - 1) * bench.STEP
    with Runtime(load_settings(config, dict(os.environ))) as runtime:
        client = TestClient(create_app(runtime, clock=lambda: built.as_of))
        headers = {"Authorization": f"Bearer {bench.TOKEN}"}
        answer = client.get("/api/restore", params={"dataset": f"{1:024x}", "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}, headers=headers)
        missing = client.get("/api/restore", params={"dataset": "nope", "at": "2025-01-02T00:00:00Z"}, headers=headers)
        nobody = client.get("/api/restore", params={"dataset": f"{1:024x}", "at": "2025-01-02T00:00:00Z"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == plan_restore(settings, catalog, f"{1:024x}", at).to_json()
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert nobody.status_code == 401


def test_the_api_load_bench_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(CATALOG_BENCH.parent / "api_load.py"), "--clients", "2", "--requests", "3", "--processes", "2"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("server CPU") == 2 and "RATIO restore lookups / healthz throughput:" in done.stdout
    assert "2 uvicorn process(es) of their own on one port" in done.stdout
