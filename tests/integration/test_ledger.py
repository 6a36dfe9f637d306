"""The catalog is a ledger: partial audits touch only their scope, back-dated audits are history,
restore lookups answer from the catalog, one runtime per process, a worker that cannot die quietly,
and a catalog written by the previous release upgrades with everything in it."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from auditor.catalog.repository import open_catalog
from auditor.cli import main
from auditor.config import load_settings
from auditor.runtime import Runtime
from auditor.service.app import create_app
from auditor.service.metrics import render_metrics
from auditor.service.worker import Worker
from tests.conftest import Tree, t
from tests.integration.test_alerts import upgraded
from tests.integration.test_audit_tree import PROFILES, WEB, build_defect_tree

NOW = "2026-11-28T12:00:00Z"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def with_alerts(config: Path) -> Path:
    """A missing-window rule to a webhook nobody listens on (notices stay pending: state to compare)."""
    config.write_text(
        config.read_text()
        + '\n[[channels]]\nname = "void"\nkind = "webhook"\nurl = "http://127.0.0.1:9/hook"\n\n[[alerts]]\nname = "missed"\nwhen = "missing"\nchannels = ["void"]\n'
    )
    return config


def present(catalog: Any) -> dict[str, Any]:
    """Everything that makes up the present state, for before/after comparisons."""
    return {
        "datasets": catalog.datasets(),
        "windows": {e: catalog.windows(e) for e in ("web", "profiles", "snapshot", "archive")},
        "known": {e: catalog.windows(e, known=True) for e in ("web", "profiles", "snapshot", "archive")},
        "findings": catalog.window_findings("web", WEB, t("2026-11-27T12:00")),
        "episodes": sorted((e.key, e.closed_at) for e in catalog.episodes()),
    }


def test_a_partial_audit_leaves_every_other_export_as_it_was(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    assert run("audit", "--config", str(config), "--as-of", NOW, "--format", "json")[0] == 1
    catalog = open_catalog(catalog_url)
    before = {d.export: d for d in catalog.datasets()}
    windows_before = {e: catalog.windows(e) for e in ("profiles", "snapshot", "archive")}
    assert before["profiles"].restorable_until is not None and before["snapshot"].restorable_until is not None

    code, _ = run("restore", WEB, "--at", NOW, "--refresh", "--config", str(config))  # audits web alone, now
    assert code == 1

    after = {d.export: d for d in catalog.datasets()}
    assert after["web"].audit_id != before["web"].audit_id  # web was audited again
    for name in ("profiles", "snapshot", "archive"):
        assert after[name] == before[name]
        assert catalog.windows(name) == windows_before[name]
    newest = catalog.audits(1)[0]
    assert newest.scope == ("web",) and newest.live_exports == ("web",)
    rpo = {line.split('export="')[1].split('"')[0] for line in render_metrics(catalog, None, now=t("2026-11-28T12:00")).splitlines() if line.startswith("auditor_rpo_seconds{")}
    assert rpo == {"web", "profiles", "snapshot"}  # no series vanished (archive was never readable)


def test_a_back_dated_audit_is_history_and_never_changes_the_present(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = with_alerts(build_defect_tree(tree, tmp_path, catalog_url))
    assert run("audit", "--config", str(config), "--as-of", NOW, "--format", "json")[0] == 1
    catalog = open_catalog(catalog_url)
    live = catalog.audits(1)[0]
    before = present(catalog)
    assert ("missed|web|" + WEB + "|2026-11-27T06:00:00Z", None) in before["episodes"]

    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-27T10:30:00Z", "--format", "json")  # 09:00 was missing then
    assert code == 1 and json.loads(out)["as_of"] == "2026-11-27T10:30:00Z"

    assert present(catalog) == before  # windows, last known statuses, findings, restore points and alert episodes
    historical = catalog.audits(1)[0]
    assert historical.id != live.id and historical.historical and set(historical.scope) == {"web", "profiles", "snapshot", "archive"}
    report = catalog.audit_report(historical.id)
    assert report is not None and report["as_of"] == "2026-11-27T10:30:00Z"
    nine = next(w for e in report["exports"] if e["name"] == "web" for w in e["windows"] if w["scheduled"] == "2026-11-27T09:00:00Z")
    assert nine["status"] == "missing"
    history = catalog.window_history("web", WEB, t("2026-11-27T09:00"))
    assert [(h.at, h.status, h.live) for h in history] == [(t("2026-11-27T10:30"), "missing", False), (t("2026-11-28T12:00"), "late", True)]
    assert catalog.status_at("web", WEB, t("2026-11-27T09:00"), t("2026-11-27T11:00")).status == "missing"  # type: ignore[union-attr]
    assert catalog.status_at("web", WEB, t("2026-11-27T09:00"), t("2026-11-28T13:00")).status == "late"  # type: ignore[union-attr]

    assert run("audit", "--config", str(config), "--as-of", NOW, "--format", "json")[0] == 1  # the same as-of again is live
    assert catalog.audits(1)[0].live_exports == ("archive", "profiles", "snapshot", "web")


def test_restore_answers_from_the_catalog_while_storage_is_away(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    assert run("audit", "--config", str(config), "--as-of", NOW, "--format", "json")[0] == 1
    audit_id = open_catalog(f"sqlite:///{tmp_path / 'c.db'}").audits(1)[0].id
    moved = tree.root.rename(tree.root.with_name("gone"))

    code, out = run("restore", WEB, "--at", "2026-11-27T05:00:00Z", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 0 and plan["complete"] and plan["source"] == "catalog" and plan["audit"]["id"] == audit_id
    assert [len(step["files"]) for step in plan["chain"]] == [2, 2] and not any(step["unverified"] for step in plan["chain"])

    code, out = run("restore", WEB, "--at", "2026-11-27T05:00:00Z", "--format", "json", "--refresh", "--config", str(config))
    plan = json.loads(out)
    assert code == 0 and plan["complete"] and plan["audit"]["id"] > audit_id  # audited again, could not read, still answers
    assert all(step["unverified"] for step in plan["chain"]) and "could not be read" in plan["notes"][0]
    moved.rename(tree.root)


def test_a_pending_last_window_does_not_break_the_chain(tree: Tree, tmp_path: Path) -> None:
    tree.export("ds", t("2026-11-27T00:00"), manifest=True)
    tree.export("ds", t("2026-11-27T03:00"), manifest=True)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
manifest = true
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
"""
    )
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-27T06:30:00Z", "--format", "json")
    assert code == 0 and json.loads(out)["exports"][0]["restorable_until"] == "2026-11-27T03:00:00Z"

    code, out = run("restore", "ds", "--at", "2026-11-27T06:30:00Z", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 0 and plan["complete"] is True and plan["broken"] is None
    assert plan["restorable_until"] == "2026-11-27T03:00:00Z" and plan["pending"] == ["2026-11-27T06:00:00Z"]
    assert [step["scheduled"] for step in plan["chain"]] == ["2026-11-27T00:00:00Z", "2026-11-27T03:00:00Z"]
    code, out = run("restore", "ds", "--at", "2026-11-27T06:30:00Z", "--config", str(config))
    assert code == 0 and "COMPLETE" in out and "Pending: 2026-11-27T06:00:00Z" in out


def test_a_dataset_in_several_exports_needs_a_choice_in_the_cli_and_the_api(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    text = config.read_text()
    text += f'\n[[exports]]\nname = "web-copy"\ndestination = "backups"\ndatasets = ["{WEB}"]\nformat = "parquet"\nschedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}\n'
    text = text.replace("[catalog]", '[service]\ntokens = [{ name = "r", token = "read-token", role = "read" }]\n\n[catalog]', 1)
    config.write_text(text)
    assert run("audit", "--config", str(config), "--as-of", NOW, "--format", "json")[0] == 1

    result = CliRunner().invoke(main, ["restore", WEB, "--at", NOW, "--config", str(config)])
    assert result.exit_code == 2 and "web, web-copy" in result.output and "--export" in result.output
    assert run("restore", WEB, "--at", "2026-11-27T05:00:00Z", "--export", "web", "--config", str(config))[0] == 0

    with Runtime(load_settings(config, {})) as runtime:
        client = TestClient(create_app(runtime))
        headers = {"Authorization": "Bearer read-token"}
        ambiguous = client.get("/api/restore", params={"dataset": WEB, "at": NOW}, headers=headers)
        assert ambiguous.status_code == 409 and ambiguous.json()["error"]["candidates"] == ["web", "web-copy"]
        chosen = client.get("/api/restore", params={"dataset": WEB, "at": "2026-11-27T05:00:00Z", "export": "web"}, headers=headers)
        assert chosen.status_code == 200 and chosen.json()["complete"] is True
        assert client.get("/api/restore", params={"dataset": PROFILES, "at": NOW}, headers=headers).status_code == 200


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts descriptors through /proc")
def test_one_runtime_keeps_its_descriptors_over_a_hundred_audits(tree: Tree, tmp_path: Path) -> None:
    tree.export("ds", t("2026-11-27T00:00"), manifest=True)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
manifest = true
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-28T00:00:00Z" }}
"""
    )
    runtime = Runtime(load_settings(config, {}))
    worker = Worker(runtime, clock=lambda: t("2026-11-28T12:00"))
    try:
        for _ in range(5):
            worker.audit_now(t("2026-11-28T12:00"))
        before = _fd_count()
        for _ in range(100):
            report = worker.audit_now(t("2026-11-28T12:00"))
            assert report is not None and report.status == "compliant"
        after = _fd_count()
        assert after - before <= 2, f"{after - before} descriptors more after 100 audits"
        assert runtime.catalog.audit_count() == 105
    finally:
        runtime.close()
    assert _fd_count() < before


def test_the_worker_cannot_die_quietly(tree: Tree, tmp_path: Path) -> None:
    tree.export("ds", t("2026-11-27T00:00"))
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[service]
tokens = [{{ name = "r", token = "read-token", role = "read" }}]
open_metrics = true
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
audit_every = "1m"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-28T00:00:00Z" }}
"""
    )
    clock = {"now": t("2026-11-28T12:00"), "wall": t("2026-11-28T12:00")}
    runtime = Runtime(load_settings(config, {}))
    worker = Worker(runtime, clock=lambda: clock["now"], wall_clock=lambda: clock["wall"])
    real_audit = runtime.audit
    failures = {"left": 10**6}

    def flaky_audit(**kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the storage SDK blew up")
        return real_audit(**kwargs)

    runtime.audit = flaky_audit  # type: ignore[method-assign]
    client = TestClient(create_app(runtime, worker, clock=lambda: clock["now"]))
    try:
        for second in range(20):  # the step fails and is retried with backoff (after 2, 4, 8 s …), never raising
            clock["now"] = clock["wall"] = t("2026-11-28T12:00") + timedelta(seconds=second)
            worker.run_once()
        assert worker.errors["audit"] == 4 and worker.steps["audit"].failures == 4  # at 0, 2, 6 and 14 s
        health = client.get("/healthz")
        assert health.status_code == 503 and "the storage SDK blew up" in health.json()["reason"]
        assert 'auditor_worker_errors_total{step="audit"} 4.0' in client.get("/metrics").text
        failures["left"] = 0

        clock["now"] = clock["wall"] = t("2026-11-28T12:10")
        assert worker.run_once() is True  # the backoff has passed: audited
        assert client.get("/healthz").status_code == 200 and runtime.catalog.audit_count() == 1

        clock["wall"] = t("2026-11-28T13:00")  # the loop has not completed a turn for 50 minutes
        stale = client.get("/healthz")
        assert stale.status_code == 503 and "has not completed" in stale.json()["reason"]
    finally:
        runtime.close()


def test_a_worker_whose_catalog_goes_away_keeps_running_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[channels]]
name = "void"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
[[destinations]]
name = "d"
url = "{(tmp_path / 'exports').as_uri()}"
"""
    )
    (tmp_path / "exports").mkdir()
    runtime = Runtime(load_settings(config, {}))
    runtime.catalog.audit_count()
    worker = Worker(runtime, pause=0.05)
    worker.start()
    try:
        time.sleep(0.3)
        shutil.rmtree(tmp_path / "exports")
        (tmp_path / "c.db").unlink()
        (tmp_path / "c.db").mkdir()  # the database file is now a folder: every query fails
        runtime.catalog.engine.dispose()
        deadline = time.monotonic() + 10
        while worker.steps["deliver"].failures < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker._thread is not None and worker._thread.is_alive()
        ok, reason = worker.health()
        assert not ok and "deliver" in reason and worker.errors["deliver"] >= 3
    finally:
        worker.stop()
        runtime.close()


@pytest.fixture
def release_catalog(tmp_path: Path, catalog_url: str) -> str:
    """The catalog the previous release (revision 0003) wrote: a week of windows, files and alerts."""
    source = Path(__file__).parents[1] / "data" / "catalogs" / "release-0003.sqlite"
    if catalog_url.startswith("sqlite"):
        shutil.copy(source, tmp_path / "catalog.db")
        return catalog_url
    from sqlalchemy import MetaData, create_engine, text

    from auditor.catalog.engine import make_engine, upgrade

    target = make_engine(catalog_url)
    upgrade(target, "0003")
    old = create_engine(f"sqlite:///{source}")
    tables = MetaData()
    tables.reflect(old)
    order = ["audits", "destinations", "exports", "datasets", "export_folders", "files", "runs", "windows", "window_status_history", "findings", "alerts"]
    with old.connect() as read, target.begin() as write:
        for name in order:
            rows = [dict(r._mapping) for r in read.execute(tables.tables[name].select())]
            if rows:
                write.execute(_table(write, name).insert(), rows)
            if name != "runs":
                write.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), coalesce(max(id), 1)) FROM {name}"))
    old.dispose()
    target.dispose()
    return catalog_url


def _table(conn: Any, name: str) -> Any:
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(conn, only=[name])
    return meta.tables[name]


def test_a_catalog_written_by_the_previous_release_upgrades_with_everything_in_it(release_catalog: str) -> None:
    from auditor.catalog.engine import make_engine, upgrade

    engine = make_engine(release_catalog)
    upgrade(engine)
    engine.dispose()
    catalog = open_catalog(release_catalog)
    counts = catalog.table_counts()
    assert (counts["audits"], counts["files"], counts["windows"], counts["window_status_history"]) == (3, 9, 4, 5)
    assert [(w.scheduled, w.status) for w in catalog.windows("web")] == [
        (t("2026-11-27T00:00"), "ok"), (t("2026-11-27T03:00"), "late"), (t("2026-11-27T06:00"), "ok"), (t("2026-11-27T09:00"), "missing"),
    ]
    state = catalog.datasets("web")[0]
    assert state.restorable_until == t("2026-11-27T06:00") and state.as_of == t("2026-11-27T10:30") and state.audit_id == 3
    assert catalog.live_as_of()["web"] == t("2026-11-27T10:30")  # so a back-dated audit after the upgrade is history
    episodes = {e.key: e for e in catalog.episodes()}
    assert set(episodes) == {"missed|web|ds|2026-11-27T03:00:00Z", "missed|web|ds|2026-11-27T09:00:00Z"}
    assert episodes["missed|web|ds|2026-11-27T03:00:00Z"].closed_at == t("2026-11-27T08:30") and episodes["missed|web|ds|2026-11-27T09:00:00Z"].closed_at is None
    notices = catalog.notices()
    assert len(notices) == 6
    assert sorted((n.scheduled, n.channel, n.kind, n.state) for n in notices) == [
        (t("2026-11-27T03:00"), "broken", "alert", "failed"), (t("2026-11-27T03:00"), "broken", "recovery", "failed"),
        (t("2026-11-27T03:00"), "oncall", "alert", "delivered"), (t("2026-11-27T03:00"), "oncall", "recovery", "delivered"),
        (t("2026-11-27T09:00"), "broken", "alert", "failed"), (t("2026-11-27T09:00"), "oncall", "alert", "delivered"),
    ]
    assert len(catalog.known_files("d")) == 9


def test_serve_with_different_intervals_audits_each_destination_alone_and_keeps_the_other(tmp_path: Path) -> None:
    trees = {}
    for name in ("a", "b"):
        trees[name] = Tree(tmp_path / name)
        trees[name].root.mkdir()
        trees[name].export("ds", t("2026-11-27T00:00"))
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "a"
url = "{trees['a'].url}"
audit_every = "1m"
[[destinations]]
name = "b"
url = "{trees['b'].url}"
audit_every = "1h"
[[exports]]
name = "wa"
destination = "a"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z" }}
[[exports]]
name = "wb"
destination = "b"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z" }}
"""
    )
    clock = {"now": t("2026-11-27T12:00")}
    settings = load_settings(config, {})
    runtime = Runtime(settings)
    try:
        worker = Worker(runtime, clock=lambda: clock["now"])
        assert worker.run_once() is True
        first = {d.export: d for d in runtime.catalog.datasets()}
        assert first["wa"].restorable_until == first["wb"].restorable_until == t("2026-11-27T00:00")
        for minutes in (2, 4, 6):
            clock["now"] = t("2026-11-27T12:00") + timedelta(minutes=minutes)
            worker.run_once()
        now = {d.export: d for d in runtime.catalog.datasets()}
        assert now["wb"] == first["wb"] and now["wa"].as_of == t("2026-11-27T12:06")
        assert [a.scope for a in runtime.catalog.audits()][:3] == [("wa",), ("wa",), ("wa",)]
        assert "auditor_rpo_seconds{dataset=\"ds\",export=\"wb\"}" in render_metrics(runtime.catalog, worker, now=clock["now"])
    finally:
        runtime.close()
    restarted = Runtime(settings)  # a new process: due-ness comes from the catalog, not from memory
    try:
        clock["now"] = t("2026-11-27T12:07")
        Worker(restarted, clock=lambda: clock["now"]).run_once()
        assert restarted.catalog.audits(1)[0].scope == ("wa",)
    finally:
        restarted.close()


def test_the_previous_release_catalog_downgrades_and_upgrades_again_on_sqlite(tmp_path: Path) -> None:
    from alembic import command

    from auditor.catalog.engine import alembic_config, make_engine, schema_state, upgrade

    shutil.copy(Path(__file__).parents[1] / "data" / "catalogs" / "release-0003.sqlite", tmp_path / "c.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    command.downgrade(alembic_config(engine), "0003")  # tables that others refer to are rebuilt: foreign keys must not stop it
    assert schema_state(engine)[0] == "0003"
    upgrade(engine)
    assert schema_state(engine)[0] == schema_state(engine)[1]
    assert len(open_catalog(f"sqlite:///{tmp_path / 'c.db'}").notices()) == 6
    engine.dispose()


def _two_exports(tmp_path: Path, tree: Tree, catalog_url: str | None = None, *, extra: str = "", datasets: str = '["dsA"]') -> Path:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "{catalog_url or f"sqlite:///{tmp_path / 'c.db'}"}"
[validation]
isolate = false
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "a"
destination = "d"
datasets = {datasets}
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
[[exports]]
name = "b"
destination = "d"
datasets = ["dsB"]
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
{extra}"""
    )
    return config


def test_files_gone_since_an_export_was_judged_break_its_restore_chain(tree: Tree, tmp_path: Path) -> None:
    for ds in ("dsA", "dsB"):
        tree.export(ds, t("2026-11-27T00:00"))
        tree.export(ds, t("2026-11-27T03:00"))
    config = _two_exports(tmp_path, tree)
    assert run("audit", "--config", str(config), "--as-of", "2026-11-27T05:00:00Z", "--format", "json")[0] == 0
    shutil.rmtree(tree.root / "dsA" / "exportTime=202611270000")  # the full export of A disappears
    with Runtime(load_settings(config, {})) as runtime:
        from auditor.audit import AuditOptions

        # an audit of B alone that sweeps the destination in full (between sweeps it would list only B's open windows)
        runtime.audit(now=t("2026-11-27T05:10"), options=AuditOptions(only_exports=frozenset({"b"}), full_sweep=True))
    code, out = run("restore", "dsA", "--at", "2026-11-27T05:00:00Z", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 1 and plan["complete"] is False and plan["chain"] == []
    assert plan["broken"]["scheduled"] == "2026-11-27T00:00:00Z" and "gone from storage since" in plan["broken"]["reason"]


def test_what_was_known_at_a_time_survives_a_back_dated_audit_in_between(tree: Tree, tmp_path: Path) -> None:
    landed = tree.export("dsA", t("2026-11-27T00:00"))
    config = _two_exports(tmp_path, tree)
    for as_of in ("2026-11-27T02:00:00Z", "2026-11-27T02:30:00Z"):
        run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")
    shutil.rmtree(landed[0].parent)
    run("audit", "--config", str(config), "--as-of", "2026-11-27T02:10:00Z", "--format", "json")  # historical: sees it missing
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert catalog.status_at("a", "dsA", t("2026-11-27T00:00"), t("2026-11-27T02:20")).status == "missing"  # type: ignore[union-attr]
    assert catalog.status_at("a", "dsA", t("2026-11-27T00:00"), t("2026-11-27T02:40")).status == "ok"  # type: ignore[union-attr]  # the 02:30 live audit said so
    assert catalog.windows("a", "dsA")[0].status == "ok"


def test_a_dataset_added_later_is_live_at_its_first_audit_even_back_dated(tree: Tree, tmp_path: Path) -> None:
    tree.export("dsA", t("2026-11-27T00:00"))
    config = _two_exports(tmp_path, tree)
    run("audit", "--config", str(config), "--as-of", "2026-11-27T05:00:00Z", "--format", "json")
    config.write_text(config.read_text().replace('datasets = ["dsA"]', 'datasets = ["dsA", "dsA2"]'))
    tree.export("dsA2", t("2026-11-27T00:00"))
    run("audit", "--config", str(config), "--as-of", "2026-11-27T02:00:00Z", "--format", "json")
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    audit = catalog.audits(1)[0]
    assert audit.live_exports == ("a",)  # live for dsA2 (never audited), historical for dsA and b
    assert [w.status for w in catalog.windows("a", "dsA")] == ["ok", "missing"]  # dsA's present is the 05:00 one
    assert [w.scheduled for w in catalog.windows("a", "dsA2")] == [t("2026-11-27T00:00")]


def test_episodes_nobody_monitors_any_more_close_and_come_back_as_new(tree: Tree, tmp_path: Path) -> None:
    rule = '[[channels]]\nname = "void"\nkind = "webhook"\nurl = "http://127.0.0.1:9/hook"\n[[alerts]]\nname = "missed"\nwhen = "missing"\nchannels = ["void"]\n'
    config = _two_exports(tmp_path, tree, extra=rule, datasets='["dsA", "dsA2"]')
    run("audit", "--config", str(config), "--as-of", "2026-11-27T05:00:00Z", "--format", "json")
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert set(catalog.open_episodes()) >= {"missed|a|dsA2|2026-11-27T00:00:00Z", "missed|b|dsB|2026-11-27T03:00:00Z"}
    config.write_text(config.read_text().replace('datasets = ["dsA", "dsA2"]', 'datasets = ["dsA"]'))
    run("audit", "--config", str(config), "--as-of", "2026-11-27T05:30:00Z", "--format", "json")
    assert "missed|a|dsA2|2026-11-27T00:00:00Z" in catalog.open_episodes()  # another configuration may still audit it
    run("audit", "--config", str(config), "--as-of", "2026-11-30T05:30:00Z", "--format", "json")  # nobody has, for three days
    assert not any(k.startswith("missed|a|dsA2|") for k in catalog.open_episodes())
    closed = [e for e in catalog.episodes() if e.key.startswith("missed|a|dsA2|")]
    assert closed and all(e.closed_at == t("2026-11-30T05:30") for e in closed)
    assert not [n for n in catalog.notices() if n.kind == "recovery" and n.dataset_id == "dsA2"]  # closed quietly
    config.write_text(config.read_text().replace('datasets = ["dsA"]', 'datasets = ["dsA", "dsA2"]'))
    run("audit", "--config", str(config), "--as-of", "2026-11-30T06:00:00Z", "--format", "json")
    assert "missed|a|dsA2|2026-11-27T00:00:00Z" in catalog.open_episodes()  # monitored again: a new episode alerts again


def test_an_audit_as_of_the_future_is_refused(tree: Tree, tmp_path: Path) -> None:
    config = _two_exports(tmp_path, tree)
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", "2099-01-01T00:00:00Z"])
    assert result.exit_code == 2 and "future" in result.output


def test_a_restore_whose_break_could_not_be_read_exits_3(tree: Tree, tmp_path: Path) -> None:
    tree.export("dsA", t("2026-11-27T00:00"))
    config = _two_exports(tmp_path, tree)
    run("audit", "--config", str(config), "--as-of", "2026-11-27T03:30:00Z", "--format", "json")  # 03:00 pending then
    tree.root.rename(tree.root.with_name("away"))
    run("audit", "--config", str(config), "--as-of", "2026-11-27T05:00:00Z", "--format", "json")  # now unreadable
    code, out = run("restore", "dsA", "--at", "2026-11-27T05:00:00Z", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 3 and plan["broken"]["status"] == "unknown" and plan["restorable_until"] == "2026-11-27T00:00:00Z"


@pytest.mark.postgres
def test_a_catalog_of_many_destinations_audits_with_one_lock_connection(tmp_path: Path, postgres_url: str) -> None:
    from auditor.catalog.engine import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    engine.dispose()
    blocks = []
    for i in range(20):
        (tmp_path / f"d{i}").mkdir()
        blocks.append(f'[[destinations]]\nname = "d{i}"\nurl = "{(tmp_path / f"d{i}").as_uri()}"\n[[exports]]\nname = "e{i}"\ndestination = "d{i}"\ndatasets = ["ds"]\n'
                      f'format = "parquet"\nschedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z" }}\n')
    config = tmp_path / "auditor.toml"
    config.write_text(f'[catalog]\nurl = "{postgres_url}"\n[validation]\nisolate = false\n' + "".join(blocks))
    started = time.monotonic()
    with Runtime(load_settings(config, {})) as runtime:
        report = runtime.audit(now=t("2026-11-27T12:00"))
    assert report is not None and report.audit_id is not None and len(report.live) == 20
    assert time.monotonic() - started < 30


def test_serve_deep_checks_a_rotating_share_when_configured(tree: Tree, tmp_path: Path) -> None:
    for slot in ("2026-11-26T00:00", "2026-11-27T00:00", "2026-11-28T00:00"):
        tree.export("ds", t(slot), parts=4)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[validation]
serve_sample = 50
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "d"
url = "{tree.url}"
audit_every = "1m"
[[exports]]
name = "web"
destination = "d"
datasets = ["ds"]
format = "parquet"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-26T00:00:00Z" }}
"""
    )
    clock = {"now": t("2026-11-28T12:00")}
    with Runtime(load_settings(config, {})) as runtime:
        worker = Worker(runtime, clock=lambda: clock["now"])
        shares = []
        for minute in (0, 2):
            clock["now"] = t("2026-11-28T12:00") + timedelta(minutes=minute)
            worker.run_once()
            assert worker.latest is not None and worker.latest.method["sample_percent"] == 50
            shares.append(worker.latest.assurance.deep_verified)
    assert 0 < shares[0] < 12 and shares[1] == 12  # about half, then the rest: every file deep-checked in two audits


def _skew_world(tree: Tree, tmp_path: Path, catalog_url: str, *, every: str = "15m") -> tuple[datetime, Path]:
    """A day ago by the real clock (the catalog's, on SQLite), with each dataset's export of then landed, and its config.
    The 3-hourly slots fall half past an hour, 90 minutes before the hour of now: no deadline (slot + 1 h grace) lies within
    the next 90 minutes of the real clock (on the hour, a window turned missing while a test's clocks moved on)."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1, minutes=90)
    for ds in ("dsA", "dsB"):
        tree.export(ds, start)
    return start, _skew_config(tmp_path, tree, catalog_url, start, every=every)


def _skew_config(tmp_path: Path, tree: Tree, catalog_url: str, start: datetime, *, every: str = "15m") -> Path:
    """Two exports of 3-hourly windows from `start` on a destination audited `every`, a rule on missing windows to a
    webhook nobody listens on."""
    config = tmp_path / "auditor.toml"
    exports = "".join(
        f'[[exports]]\nname = "{name}"\ndestination = "d"\ndatasets = ["{ds}"]\nformat = "parquet"\n'
        f'schedule = {{ timeUnit = "hour", interval = 3, startTime = "{start:%Y-%m-%dT%H:%M:%SZ}" }}\n'
        for name, ds in (("a", "dsA"), ("b", "dsB"))
    )
    config.write_text(
        f'[catalog]\nurl = "{upgraded(catalog_url)}"\n[validation]\nisolate = false\n[[destinations]]\nname = "d"\nurl = "{tree.url}"\naudit_every = "{every}"\n{exports}'
        '[[channels]]\nname = "void"\nkind = "webhook"\nurl = "http://127.0.0.1:9/hook"\n[[alerts]]\nname = "missed"\nwhen = "missing"\nchannels = ["void"]\n'
    )
    return config


def test_an_audit_of_now_from_a_clock_that_runs_ahead_of_the_catalogs_is_history_and_says_so(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """serve on a host whose clock runs a day ahead of the catalog's (PostgreSQL's own clock; on SQLite this host's): its
    audits are recorded as history, their stored reports say why, the present is not moved to a time that has not
    come, and /healthz says why for as long as it lasts (turns with nothing due included); once the clock is right,
    the next audit is live and /healthz ok. (Before, the audit became the present, and every audit of the real time
    after it was history: serve never audited again, with /healthz ok.)"""
    _start, config = _skew_world(tree, tmp_path, catalog_url)
    clock = {"now": datetime.now(UTC) + timedelta(days=1)}
    with Runtime(load_settings(config, {})) as runtime:
        worker = Worker(runtime, clock=lambda: clock["now"])
        worker.run_once()
        for _ in range(6):  # turns of a running loop: nothing is due, and it stays unhealthy
            clock["now"] += timedelta(seconds=10)
            worker.run_once()
            healthy, reason = worker.health()
            assert not healthy and "clock runs ahead" in reason
        audits = runtime.catalog.audits()
        assert len(audits) == 1 and audits[0].historical
        assert runtime.catalog.live_as_of() == {"a": None, "b": None} and runtime.catalog.open_episodes() == {}
        stored = runtime.catalog.audit_report(audits[0].id)
        assert stored is not None and any(e["message"].startswith("this host's clock runs ahead") for e in stored["errors"])

        clock["now"] = datetime.now(UTC)  # the clock is put right
        assert worker.run_once() is True
        assert not runtime.catalog.audits(1)[0].historical and worker.health() == (True, "ok")


def test_a_present_recorded_while_a_clock_ran_ahead_gives_way_to_the_next_audit_of_now(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """A catalog whose present was recorded while a clock ran ahead (as of ten days from now: a host's clock put right
    since, or a release that did not hold audits to the catalog's clock). The next audit of now replaces that present:
    the statuses, restore points and episodes from ahead leave it, a window judged before gets back the status it had
    and since when, the windows judged before their time are gone, the last full sweep is this one, and serve audits
    on its interval again. The audit from ahead stays in the ledger; a back-dated audit still never changes the present."""
    start, config = _skew_world(tree, tmp_path, catalog_url)
    hour = timedelta(hours=1)
    with Runtime(load_settings(config, {})) as runtime:
        catalog = runtime.catalog
        assert runtime.audit(now=start + hour) is not None  # before the clock ran ahead: start's window ok since then
        assert runtime.audit(now=datetime.now(UTC) + timedelta(days=10)) is not None  # the present from ahead
        assert len(catalog.windows("a")) > 80 and len(catalog.open_episodes()) > 160

        code, _ = run("audit", "--config", str(config), "--as-of", f"{start + 3 * hour:%Y-%m-%dT%H:%M:%SZ}", "--format", "json")
        assert code == 0 and catalog.audits(1)[0].historical  # back-dated: history, whatever the present

        clock = {"now": start + 4 * hour}
        worker = Worker(runtime, clock=lambda: clock["now"])
        assert worker.due(clock["now"]) == ["d"]  # the present lies ahead of this clock
        assert worker.run_once() is True
        newest = catalog.audits(1)[0]
        assert not newest.historical and newest.as_of == start + 4 * hour and len(catalog.audits()) == 4
        assert catalog.live_as_of() == {"a": start + 4 * hour, "b": start + 4 * hour}
        windows = catalog.windows("a")
        assert [(w.scheduled, w.status, w.status_since) for w in windows] == [(start, "ok", start + hour), (start + 3 * hour, "missing", start + 4 * hour)]
        assert [(h.at, h.status) for h in catalog.window_history("a", "dsA", start + 3 * hour) if h.live] == [(start + 4 * hour, "missing")]
        assert [at for at, _rpo in catalog.rpo_trend("a", "dsA")] == [start + hour, start + 4 * hour]
        assert {(e.export, e.scheduled) for e in catalog.open_episodes().values()} == {("a", start + 3 * hour), ("b", start + 3 * hour)}
        assert {d.name: d.last_full_sweep for d in catalog.destinations()} == {"d": start + 4 * hour}

        clock["now"] = start + 4 * hour + timedelta(minutes=10)
        assert worker.due(clock["now"]) == []  # audited 10 minutes ago, on its 15-minute interval
        clock["now"] = start + 4 * hour + timedelta(minutes=20)
        assert worker.run_once() is True and catalog.live_as_of()["a"] == start + 4 * hour + timedelta(minutes=20)


def test_a_window_known_ok_before_an_outage_is_still_known_ok_when_a_present_from_ahead_gives_way_during_it(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """The storage is away when the audit of now replaces a present from ahead: the window it cannot look at is unknown,
    and what restore planning knows of it is still the last status other than unknown (ok), not unknown."""
    from auditor.audit import AuditOptions

    start, config = _skew_world(tree, tmp_path, catalog_url)
    hour = timedelta(hours=1)
    with Runtime(load_settings(config, {})) as runtime:
        assert runtime.audit(now=start + hour) is not None  # ok
        away = tree.root.rename(tree.root.with_name("away"))
        assert runtime.audit(now=start + 2 * hour) is not None  # unknown, known ok
        away.rename(tree.root)
        assert runtime.audit(now=datetime.now(UTC) + timedelta(days=10)) is not None  # a present from ahead (ok)
        away = tree.root.rename(tree.root.with_name("away"))
        report = runtime.audit(now=start + 4 * hour, options=AuditOptions(present=True))
        assert report is not None and report.live
        known = {w.scheduled: (w.status, k) for w, k in runtime.catalog.restore_windows("a", "dsA", start + 4 * hour)}
        assert known[start] == ("unknown", "ok")
        away.rename(tree.root)


def test_two_serve_processes_one_with_a_clock_ahead_share_a_catalog_without_flapping_and_through_a_restart(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """Two serve processes on one catalog (two runtimes, two connections), one on a host a day ahead of the catalog's
    clock, over several intervals of their simulated clocks and a restart of the right one: the present is the right
    one's audits only, the process from ahead says so on /healthz every turn, and no episode opens twice (with a
    present that flapped between them, each turn re-opened and re-alerted the windows from ahead)."""
    _start, config = _skew_world(tree, tmp_path, catalog_url, every="1m")
    settings = load_settings(config, {})
    now = datetime.now(UTC)
    clocks = {"right": now, "ahead": now + timedelta(days=1)}
    right, ahead = Runtime(settings), Runtime(settings)
    try:
        workers = {"right": Worker(right, clock=lambda: clocks["right"]), "ahead": Worker(ahead, clock=lambda: clocks["ahead"])}
        episodes: list[int] = []
        for turn in range(4):
            if turn == 2:  # the right one restarts: a new process, due-ness from the catalog
                right.close()
                right = Runtime(settings)
                workers["right"] = Worker(right, clock=lambda: clocks["right"])
            for name in ("ahead", "right"):
                workers[name].run_once()
            assert not workers["ahead"].health()[0] and "clock runs ahead" in workers["ahead"].health()[1]
            assert workers["right"].health() == (True, "ok")
            assert right.catalog.live_as_of() == {"a": clocks["right"], "b": clocks["right"]}
            episodes.append(len(right.catalog.episodes()))
            for name in clocks:  # one interval on (the right clock stays within the catalog's tolerance of the real one)
                clocks[name] += timedelta(seconds=61)
        assert len(set(episodes)) == 1  # the missing 03:00 windows of each export, opened once
        audits = right.catalog.audits()
        assert len(audits) == 8 and sum(not a.historical for a in audits) == 4
    finally:
        right.close()
        ahead.close()


def _without_export_b(config: Path, tmp_path: Path) -> Path:
    """The same configuration naming only export a: a job that audits one export of a shared catalog."""
    text = config.read_text()
    start = text.index('[[exports]]\nname = "b"')
    end = text.index("\n[[", start + 1) + 1 if "\n[[" in text[start + 1 :] else len(text)
    subset = tmp_path / "only-a.toml"
    subset.write_text(text[:start] + text[end:])
    return subset


def test_a_sweep_under_a_configuration_naming_some_exports_is_no_sweep_of_the_others(tree: Tree, tmp_path: Path) -> None:
    """A job whose configuration names only export a made the destination's daily sweep and recorded it for all of
    it: export b's settled windows went unlisted another day, and a file deleted from one of them unseen (the audit
    said compliant while restore said broken). Each export now keeps its own last sweep."""
    for ds in ("dsA", "dsB"):
        for hour in (0, 3):
            tree.export(ds, t(f"2026-11-27T{hour:02d}:00"))
    config = _two_exports(tmp_path, tree)
    config.write_text(config.read_text().replace('startTime = "2026-11-27T00:00:00Z" }', 'startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T06:00:00Z" }'))
    subset = _without_export_b(config, tmp_path)
    assert run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json")[0] == 0  # the first: in full
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-29T06:00:00Z", "--format", "json")
    assert code == 0 and json.loads(out)["method"]["listing"]["d"]["mode"] != "full"  # between sweeps: settled windows carried
    victim = min((tree.root / "dsB" / "exportTime=202611270000").glob("*.parquet"))
    victim.unlink()
    code, out = run("audit", "--config", str(subset), "--as-of", "2026-11-29T12:30:00Z", "--format", "json")  # the sweep is due: a's job makes it
    assert json.loads(out)["method"]["listing"]["d"]["mode"] == "full"
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-29T12:45:00Z", "--format", "json")
    report = json.loads(out)
    assert report["method"]["listing"]["d"]["mode"] == "full", report["method"]["listing"]["d"]
    b = next(e for e in report["exports"] if e["name"] == "b")
    assert code == 1 and b["windows"][0]["status"] == "invalid"


def test_an_audit_under_a_configuration_naming_some_exports_leaves_the_others_episodes_open(tree: Tree, tmp_path: Path) -> None:
    """Episodes of an export the configuration does not name were closed as "no longer monitored", and the next audit
    of the whole configuration alerted again for the same missing window. An export another configuration audits
    keeps its episodes; one nobody has audited live for three days has them closed, without a notice."""
    tree.export("dsA", t("2026-11-27T00:00"))
    tree.export("dsB", t("2026-11-27T00:00"))  # b's 03:00 window never lands
    config = with_alerts(_two_exports(tmp_path, tree))
    subset = _without_export_b(config, tmp_path)
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    run("audit", "--config", str(config), "--as-of", "2026-11-27T05:00:00Z", "--format", "json")
    key = "missed|b|dsB|2026-11-27T03:00:00Z"
    assert key in catalog.open_episodes()
    run("audit", "--config", str(subset), "--as-of", "2026-11-27T05:30:00Z", "--format", "json")
    assert key in catalog.open_episodes()
    run("audit", "--config", str(config), "--as-of", "2026-11-27T06:00:00Z", "--format", "json")
    assert [n.kind for n in catalog.notices() if n.dataset_id == "dsB"].count("alert") == 1  # announced once
    run("audit", "--config", str(subset), "--as-of", "2026-11-29T06:30:00Z", "--format", "json")  # two days: a late daily job's gap
    assert key in catalog.open_episodes()
    run("audit", "--config", str(subset), "--as-of", "2026-11-30T06:30:00Z", "--format", "json")  # b not audited live for three days
    assert key not in catalog.open_episodes()
    assert not [n for n in catalog.notices() if n.kind == "recovery" and n.dataset_id == "dsB"]  # closed quietly


def test_a_sweep_under_a_configuration_naming_some_datasets_of_an_export_is_no_sweep_of_the_others(tree: Tree, tmp_path: Path) -> None:
    """The same one level down: a job naming export a with dsA only swept the destination, and a's dsC went unlisted
    (a file deleted from its settled window unseen, the audit compliant while restore said broken)."""
    for ds in ("dsA", "dsB", "dsC"):
        for hour in (0, 3):
            tree.export(ds, t(f"2026-11-27T{hour:02d}:00"))
    config = _two_exports(tmp_path, tree, datasets='["dsA", "dsC"]')
    config.write_text(config.read_text().replace('startTime = "2026-11-27T00:00:00Z" }', 'startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T06:00:00Z" }'))
    job = tmp_path / "only-dsA.toml"
    job.write_text(config.read_text().replace('datasets = ["dsA", "dsC"]', 'datasets = ["dsA"]'))
    run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json")
    run("audit", "--config", str(config), "--as-of", "2026-11-29T06:00:00Z", "--format", "json")
    min((tree.root / "dsC" / "exportTime=202611270000").glob("*.parquet")).unlink()
    code, out = run("audit", "--config", str(job), "--as-of", "2026-11-29T12:30:00Z", "--format", "json")
    assert json.loads(out)["method"]["listing"]["d"]["mode"] == "full"
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-29T12:45:00Z", "--format", "json")
    report = json.loads(out)
    dsC = next(e for e in report["exports"] if e["name"] == "a" and e["dataset_id"] == "dsC")
    assert code == 1 and report["method"]["listing"]["d"]["mode"] == "full" and dsC["windows"][0]["status"] == "invalid"


def test_an_audit_under_a_configuration_naming_some_datasets_of_an_export_leaves_the_others_episodes_open(tree: Tree, tmp_path: Path) -> None:
    """A job naming export a with dsA only closed a's dsC episode as "no longer monitored", and the next audit of the
    whole configuration alerted again for the same missing window."""
    for ds in ("dsA", "dsB"):
        tree.export(ds, t("2026-11-27T00:00"))
        tree.export(ds, t("2026-11-27T03:00"))
    tree.export("dsC", t("2026-11-27T00:00"))  # dsC's 03:00 window never lands
    config = with_alerts(_two_exports(tmp_path, tree, datasets='["dsA", "dsC"]'))
    job = tmp_path / "only-dsA.toml"
    job.write_text(config.read_text().replace('datasets = ["dsA", "dsC"]', 'datasets = ["dsA"]'))
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    for which, as_of in ((config, "2026-11-27T05:00:00Z"), (job, "2026-11-27T05:30:00Z"), (config, "2026-11-27T06:00:00Z")):
        run("audit", "--config", str(which), "--as-of", as_of, "--format", "json")
    assert "missed|a|dsC|2026-11-27T03:00:00Z" in catalog.open_episodes()
    assert [n.kind for n in catalog.notices() if n.dataset_id == "dsC"].count("alert") == 1
