"""The cyclic garbage collector is paused while audits run (it rescanned millions of catalog rows for nothing)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from auditor.runtime import Runtime, cyclic_gc_paused
from tests.conftest import Tree, t, write_config


def test_the_collector_is_off_during_an_audit_and_back_on_after(tree: Tree, tmp_path: Path) -> None:
    tree.export("ds", t("2026-11-27T00:00"))
    settings = write_config(
        tmp_path / "auditor.toml",
        f"sqlite:///{tmp_path / 'c.db'}",
        destinations=[{"name": "d", "url": tree.url}],
        exports=[{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z"}}],
    )
    seen: list[bool] = []
    assert gc.isenabled()
    with Runtime(settings) as runtime:
        report = runtime.audit(now=t("2026-11-27T12:00"), progress=lambda *_: seen.append(gc.isenabled()))
    assert report is not None and report.status == "compliant"
    assert seen and not any(seen)
    assert gc.isenabled()


def test_overlapping_audits_in_threads_turn_it_back_on_once_the_last_ends_and_never_turn_on_a_disabled_one() -> None:
    first_in, second_done, release = threading.Event(), threading.Event(), threading.Event()

    def long_audit() -> None:
        with cyclic_gc_paused():
            first_in.set()
            release.wait(10)

    thread = threading.Thread(target=long_audit)
    thread.start()
    first_in.wait(10)
    with cyclic_gc_paused():
        assert not gc.isenabled()
    second_done.set()
    assert not gc.isenabled()  # the first audit still runs
    release.set()
    thread.join(10)
    assert gc.isenabled()
    gc.disable()  # a program that runs without the collector keeps it off
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_service_puts_what_it_was_built_with_out_of_the_collectors_sight_when_it_starts(tree: Tree, tmp_path: Path) -> None:
    """A full collection rescanned the imports and the app on every pass (54 ms under 20 clients: the lookups' p99)."""
    from fastapi.testclient import TestClient

    from auditor.service.app import create_app

    settings = write_config(tmp_path / "auditor.toml", f"sqlite:///{tmp_path / 'c.db'}", destinations=[{"name": "d", "url": tree.url}], exports=[])
    gc.unfreeze()
    try:
        with Runtime(settings) as runtime:
            app = create_app(runtime)
            assert gc.get_freeze_count() == 0
            with TestClient(app) as client:
                frozen = gc.get_freeze_count()
                assert client.get("/healthz").status_code in (200, 401)
        assert frozen > 10_000  # the imports, the app, the catalog's engine
    finally:
        gc.unfreeze()
