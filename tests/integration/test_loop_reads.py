"""/api/restore on a PostgreSQL catalog reads on the service's event loop (issue 10: p99 under 20 clients),
keeps its pooled connections between bursts, and answers 503, then recovers, when the database goes away."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from auditor.catalog.aio import LoopReads
from auditor.catalog.engine import make_engine
from auditor.catalog.repository import Catalog
from auditor.config import load_settings
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.service.app import create_app
from tests.conftest import small_estate

pytestmark = pytest.mark.postgres


@pytest.fixture
def estate(catalog_bench: ModuleType, postgres_url: str, tmp_path: Path) -> Iterator[tuple[Any, Catalog, Any, Path]]:
    """2 datasets × 12 windows × 2 files audited into a scratch PostgreSQL catalog."""
    with small_estate(catalog_bench, postgres_url, tmp_path) as built:
        yield built


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_the_restore_route_reads_postgresql_on_the_event_loop(catalog_bench: ModuleType, estate: tuple[Any, Catalog, Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, catalog, built, config = estate
    at = catalog_bench.START + (catalog_bench.CHAIN - 1) * catalog_bench.STEP
    seen: list[tuple[bool, int]] = []
    read = Catalog.restore_windows

    def watched(self: Catalog, *args: Any, **kwargs: Any) -> Any:
        seen.append((_on_loop(), threading.get_ident()))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Catalog, "restore_windows", watched)
    headers = {"Authorization": f"Bearer {catalog_bench.TOKEN}"}
    params = {"dataset": f"{1:024x}", "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with Runtime(load_settings(config, dict(os.environ))) as runtime, TestClient(create_app(runtime, clock=lambda: built.as_of)) as client:
        answers = [client.get("/api/restore", params=params, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json() == answers[0].json() for a in answers)
    monkeypatch.undo()
    assert answers[0].json() == plan_restore(settings, catalog, f"{1:024x}", at).to_json()  # the same plan the thread-free path gave
    assert len(seen) == 3 and all(on_loop for on_loop, _ in seen)  # on the serving loop, not in a worker thread
    assert len({ident for _, ident in seen}) == 1


def test_the_restore_route_answers_503_while_postgresql_refuses_connections_and_recovers(
    catalog_bench: ModuleType, estate: tuple[Any, Catalog, Any, Path], postgres_server: str, postgres_url: str
) -> None:
    _, _, built, config = estate
    database = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    headers = {"Authorization": f"Bearer {catalog_bench.TOKEN}"}
    params = {"dataset": f"{0:024x}", "at": built.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        with Runtime(load_settings(config, dict(os.environ))) as runtime, TestClient(create_app(runtime, clock=lambda: built.as_of)) as client:
            assert client.get("/api/restore", params=params, headers=headers).status_code == 200  # the pool holds a connection now
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})
            down = client.get("/api/restore", params=params, headers=headers)
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            back = client.get("/api/restore", params=params, headers=headers)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert down.status_code == 503 and "cannot reach the catalog" in down.json()["error"]
    assert back.status_code == 200 and back.json()["complete"] and back.json()["chain"]


def test_twenty_concurrent_reads_keep_their_connections_for_the_next_burst(postgres_url: str) -> None:
    """A pool smaller than the concurrency closed the overflow after every burst, and each new connection is a
    new PostgreSQL backend (forked): under 20 clients that churn set the API's p99. Both pools keep 20."""
    catalog = Catalog(make_engine(postgres_url))
    sleeping = "SELECT pg_backend_pid() FROM pg_sleep(0.2)"

    def backend(reader: Catalog) -> int:
        with reader.reading() as reads, reads._connect() as conn:
            return int(conn.execute(text(sleeping)).scalar_one())

    async def bursts(reads: LoopReads) -> tuple[set[int], set[int]]:
        try:
            first = set(await asyncio.gather(*(reads.run(backend) for _ in range(20))))
            second = set(await asyncio.gather(*(reads.run(backend) for _ in range(20))))
        finally:
            await reads.close()
        return first, second

    try:
        reads = LoopReads(catalog)
        assert reads.available
        first, second = asyncio.run(bursts(reads))
        assert len(first) == 20  # twenty connections at once: the reads waited together on the loop
        assert second <= first  # no new backend for the second burst

        barrier = threading.Barrier(20)

        def threaded(_: int) -> int:
            barrier.wait(10)
            return backend(catalog)

        with ThreadPoolExecutor(20) as pool:
            first = set(pool.map(threaded, range(20)))
            second = set(pool.map(threaded, range(20)))
        assert len(first) == 20 and second <= first
    finally:
        catalog.close()
