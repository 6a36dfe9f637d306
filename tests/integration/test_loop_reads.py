"""/api/restore on a PostgreSQL catalog reads on the service's event loop (issue 10: p99 under 20 clients),
keeps its pooled connections between bursts, and answers 503, then recovers, when the database goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from auditor.catalog.aio import LoopReads
from auditor.catalog.engine import make_engine
from auditor.catalog.repository import Catalog
from auditor.config import load_settings
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.service.app import create_app
from tests.conftest import small_estate
from tests.servers import free_port

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


def test_the_restore_route_reads_postgresql_on_the_event_loop(
    catalog_bench: ModuleType, estate: tuple[Any, Catalog, Any, Path], monkeypatch: pytest.MonkeyPatch, postgres_server: str, postgres_url: str
) -> None:
    settings, catalog, built, config = estate
    catalog.engine.dispose()  # the fixture's connections: what is open afterwards is the service's
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
    left_open = _backends(postgres_server, postgres_url.rsplit("/", 1)[1])
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json() == answers[0].json() for a in answers)
    monkeypatch.undo()
    assert answers[0].json() == plan_restore(settings, catalog, f"{1:024x}", at).to_json()  # the same plan the thread-free path gave
    assert len(seen) == 3 and all(on_loop for on_loop, _ in seen)  # on the serving loop, not in a worker thread
    assert len({ident for _, ident in seen}) == 1
    assert left_open == 0  # the service closed its connections when it stopped (the loop's pool with its loop)


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


def _backends(admin_url: str, database: str) -> int:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": database}).scalar_one())
    finally:
        admin.dispose()


SLEEPING = "SELECT pg_backend_pid() FROM pg_sleep(0.3)"


def _backend(reader: Catalog) -> int:
    with reader.reading() as reads, reads._connect() as conn:
        return int(conn.execute(text(SLEEPING)).scalar_one())


def test_twenty_concurrent_lookups_keep_their_connections_for_the_next_burst(postgres_url: str) -> None:
    """Each new connection is a new PostgreSQL backend (forked): a pool smaller than the lookups' concurrency closed
    its overflow after every burst and opened it again, and under 20 clients that churn set the API's p99."""
    catalog = Catalog(make_engine(postgres_url))

    async def bursts(reads: LoopReads) -> tuple[set[int], set[int]]:
        try:
            first = set(await asyncio.gather(*(reads.run(_backend) for _ in range(20))))
            second = set(await asyncio.gather(*(reads.run(_backend) for _ in range(20))))
        finally:
            await reads.close()
        return first, second

    try:
        reads = LoopReads(catalog)
        assert reads.available
        first, second = asyncio.run(bursts(reads))
    finally:
        catalog.close()
    assert len(first) == 20  # twenty connections at once: the reads waited together on the loop, not in turn
    assert second <= first  # no new backend for the second burst


def test_a_process_never_holds_more_than_40_connections_however_many_read_at_once(postgres_url: str, postgres_server: str) -> None:
    """80 reads at once, half in threads and half on the event loop: they share 40 connections and wait their turn
    (two replicas must fit PostgreSQL's default max_connections of 100), and none fails; afterwards 30 stay open."""
    catalog = Catalog(make_engine(postgres_url))
    database = postgres_url.rsplit("/", 1)[1]
    barrier = threading.Barrier(40)

    def threaded(_: int) -> int:
        barrier.wait(10)
        return _backend(catalog)

    async def on_the_loop() -> set[int]:
        return set(await asyncio.gather(*(reads.run(_backend) for _ in range(40))))

    reads = LoopReads(catalog)
    loop = asyncio.new_event_loop()
    try:
        with ThreadPoolExecutor(40) as pool:
            in_threads = pool.map(threaded, range(40))
            on_loop = loop.run_until_complete(on_the_loop())
            in_threads_seen = set(in_threads)
        after = _backends(postgres_server, database)
    finally:
        loop.run_until_complete(reads.close())
        loop.close()
        catalog.close()
    assert len(on_loop) == 20 and len(in_threads_seen) <= 20  # the loop's 20, the threads' 10 kept plus 10 in a burst
    assert len(on_loop | in_threads_seen) <= 40
    assert after <= 30  # the threads' burst connections were closed when given back; the loop's stay for the next burst


def test_auditor_serve_waits_for_a_stalled_postgresql_on_its_event_loop_not_in_a_thread_per_lookup(
    catalog_bench: ModuleType, estate: tuple[Any, Catalog, Any, Path], postgres_server: str, postgres_url: str, tmp_path: Path
) -> None:
    """The real `auditor serve` process: while another session holds every catalog table, 30 lookups wait on the
    event loop (the process does not grow a thread per lookup), within the 40-connection budget; once the tables
    are free every lookup answers, and a service stopped by SIGTERM leaves no connection behind."""
    _, catalog, built, config = estate
    catalog.engine.dispose()
    database = postgres_url.rsplit("/", 1)[1]
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([sys.executable, "-m", "auditor", "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {catalog_bench.TOKEN}"}
    locker = create_engine(postgres_url)
    with locker.connect() as conn:
        audited = conn.scalar(text("SELECT count(*) FROM audits"))
    try:
        deadline = time.monotonic() + 60
        while True:  # the worker audits both (empty, memory://) destinations at start: wait until it has, so the lock below
            # does not meet an audit's own locks half-way (PostgreSQL then cancels one side as a deadlock)
            try:
                if httpx.get(f"{base}/healthz", headers=headers, timeout=5).status_code in (200, 503):
                    with locker.connect() as conn:
                        if conn.scalar(text("SELECT count(*) FROM audits")) >= audited + 2:
                            break
            except httpx.HTTPError:
                pass
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.2)
        at = built.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
        with locker.connect() as lock:
            for attempt in range(5):  # a session the test does not know of (autovacuum does not count) could still meet it
                try:
                    lock.execute(text("LOCK TABLE windows, files, datasets, exports, audits IN ACCESS EXCLUSIVE MODE"))  # until the commit below
                    break
                except OperationalError:
                    lock.rollback()
                    assert attempt < 4, "the tables could not be locked"
                    time.sleep(0.5)

            async def burst() -> tuple[list[httpx.Response], int, int]:
                async with httpx.AsyncClient(headers=headers, timeout=120, limits=httpx.Limits(max_connections=100)) as client:
                    asks = [asyncio.create_task(client.get(f"{base}/api/restore", params={"dataset": f"{i % 2:024x}", "at": at})) for i in range(30)]
                    await asyncio.sleep(3)  # every lookup is in, waiting for the tables
                    threads = len(os.listdir(f"/proc/{serve.pid}/task"))
                    waiting = _backends(postgres_server, database)
                    await asyncio.to_thread(lock.commit)
                    return list(await asyncio.gather(*asks)), threads, waiting

            answers, threads, waiting = asyncio.run(burst())
        locker.dispose()
        serve.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (the app's lifespan closes the loop's pool), then raises SIGTERM again
        assert serve.wait(30) in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-2000:]
        left = _backends(postgres_server, database)
        for _ in range(50):  # a backend leaves pg_stat_activity a moment after its client hung up
            if left == 0:
                break
            time.sleep(0.1)
            left = _backends(postgres_server, database)
    finally:
        if serve.poll() is None:
            serve.kill()
        locker.dispose()
        log.close()
    assert [a.status_code for a in answers] == [200] * 30
    assert threads < 20  # 30 lookups in the thread pool were 30 threads more
    assert waiting <= 40 + 1  # the lock's own session besides
    assert left == 0

