"""The scheduled sweep keeps a settled window as last judged only where judging it again would say the same: each
scenario's sweep is compared with an audit with no catalog at all, which judges every window and reads every file."""
from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.audit import AuditOptions, run_audit
from auditor.catalog.repository import open_catalog
from auditor.config import load_settings
from auditor.flows.models import Run
from auditor.storage import open_store
from tests.conftest import Tree, t
from tests.integration.test_alerts import upgraded

START = t("2026-11-26T00:00")


def cfg(tmp_path: Path, tree: Tree, url: str, exports: str) -> Any:
    p = tmp_path / "auditor.toml"
    p.write_text(f"""[catalog]
url = "{url}"
[validation]
isolate = false
[[destinations]]
name = "d"
url = "{tree.url}"
full_sweep_every = "1d"
listing_horizon = "12h"
""" + exports)
    return load_settings(p, {})


def export_block(name: str, datasets: list[str], flow: str | None = None) -> str:
    f = f'flow_id = "{flow}"\n' if flow else ""
    return f"""[[exports]]
name = "{name}"
destination = "d"
datasets = {datasets!r}
format = "parquet"
manifest = true
{f}schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 6, startTime = "{START:%Y-%m-%dT%H:%M:%SZ}" }}
""".replace("'", '"')


def landed(tree: Tree, datasets: list[str], until: datetime) -> None:
    slot = START
    while slot <= until:
        for ds in datasets:
            tree.export(ds, slot, count=5)
        slot += timedelta(hours=6)


def audit(settings: Any, catalog: Any, now: datetime, runs: Any = None, **opts: Any) -> Any:
    stores = {d.name: open_store(d.url, d.options) for d in settings.destinations}
    return run_audit(settings, stores=stores, catalog=catalog, now=now, started=now, runs=runs, options=AuditOptions(workers=2, **opts))


def verdicts(report: Any) -> dict[Any, Any]:
    return {(e.name, e.dataset_id, w.window.scheduled.isoformat()): (w.status.value, sorted(f.code for f in w.findings)) for e in report.exports for w in e.windows}


def restore(report: Any) -> dict[Any, Any]:
    return {(e.name, e.dataset_id): (e.restore.restorable_until, e.restore.broken_at.window.scheduled if e.restore.broken_at else None) for e in report.exports}


def diff(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)}


def test_a_file_checked_again_by_an_audit_of_another_export_of_the_folder_has_the_window_judged_again(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    landed(tree, ["dsA"], t("2026-11-30T18:00"))
    settings = cfg(tmp_path, tree, upgraded(catalog_url), export_block("e1", ["dsA"]) + export_block("e2", ["dsA"]))
    catalog = open_catalog(settings.catalog.url) if hasattr(settings.catalog, "url") else None
    first = audit(settings, catalog, t("2026-11-30T20:00"))
    assert first.method["listing"]["d"]["mode"] == "full"
    # an old file is overwritten (same mtime, other size)
    victim = min((tree.root / "dsA" / "exportTime=202611270000").glob("*.parquet"))
    tree.rewrite(victim, victim.read_bytes()[:-64] + b"x" * 80)
    # a requested full sweep of e1 only records the file's new (bad) record
    partial = audit(settings, catalog, t("2026-12-01T10:00"), only_exports=frozenset({"e1"}), full_sweep=True)
    assert verdicts(partial)[("e1", "dsA", "2026-11-27T00:00:00+00:00")][0] == "invalid"
    # the scheduled sweep of both exports: e2's window, judged before the file changed, is judged again
    now = t("2026-12-01T21:00")
    swept = audit(settings, catalog, now)
    everything = audit(settings, None, now)
    assert not diff(verdicts(swept), verdicts(everything))
    assert verdicts(swept)[("e2", "dsA", "2026-11-27T00:00:00+00:00")][0] == "invalid" and swept.method["listing"]["d"]["settled_unchanged"] > 0


def test_an_export_whose_runs_are_joined_has_every_window_judged_again(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    landed(tree, ["dsA"], t("2026-11-30T18:00"))
    settings = cfg(tmp_path, tree, upgraded(catalog_url), export_block("e", ["dsA"], flow="f1"))
    catalog = open_catalog(settings.catalog.url)

    def runs(failed: set[datetime] = frozenset()) -> dict[str, list[Run]]:  # type: ignore[assignment]
        out, slot = [], START
        while slot <= t("2026-11-30T18:00"):
            at = slot + timedelta(minutes=1)
            status = "failed" if slot in failed else "success"
            out.append(Run(f"r{slot:%m%d%H}", "f1", status, at, at, at + timedelta(minutes=5), None, None, {}, (("E1", "boom"),) if status == "failed" else ()))
            slot += timedelta(hours=6)
        return {"f1": out}

    first = audit(settings, catalog, t("2026-11-30T20:00"), runs=runs())
    assert all(v[0] == "ok" for k, v in verdicts(first).items() if k[2] <= "2026-11-30T18")
    now = t("2026-12-01T21:00")
    changed = runs({t("2026-11-27T00:00")})  # the Flow Service now reports an old slot's run as failed (or rerun, or expired)
    swept = audit(settings, catalog, now, runs=changed)
    everything = audit(settings, None, now, runs=changed)
    assert not diff(verdicts(swept), verdicts(everything))
    assert verdicts(swept)[("e", "dsA", "2026-11-27T00:00:00+00:00")][0] == "invalid" and swept.method["listing"]["d"]["settled_unchanged"] == 0


def dump(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    out = {}
    for table, order in (("windows", "export_id, dataset_id, scheduled"), ("findings", "window_id, code, path"), ("files", "key"), ("datasets", "export_id, dataset_id"), ("window_status_history", "window_id, at, status"), ("restore_points", "id"), ("destinations", "name")):
        cur = con.execute(f"select * from {table} order by {order}")
        cols = [c[0] for c in cur.description]
        out[table] = [dict(zip(cols, r)) for r in cur.fetchall()]
    con.close()
    return out


def rows_diff(a: dict[str, Any], b: dict[str, Any]) -> list[Any]:
    found = []
    for table, ra in a.items():
        rb = b[table]
        if len(ra) != len(rb):
            found.append((table, "count", len(ra), len(rb)))
        for x, y in zip(ra, rb):
            if x != y:
                found.append((table, {k: (x[k], y.get(k)) for k in x if x[k] != y.get(k)}, {k: x[k] for k in ("scheduled", "key", "code", "dataset_id") if k in x}))
    return found


def test_a_scheduled_sweep_leaves_the_catalog_as_a_requested_one_but_for_who_judged_the_kept_windows(tree: Tree, tmp_path: Path) -> None:
    landed(tree, ["dsA", "dsB"], t("2026-11-30T18:00"))
    # a late window
    for p in (tree.root / "dsA" / "exportTime=202611271200").iterdir():
        os.utime(p, (t("2026-11-28T01:00").timestamp(),) * 2)
    db = tmp_path / "c.db"
    settings = cfg(tmp_path, tree, f"sqlite:///{db}", export_block("e", ["dsA", "dsB"]))
    catalog = open_catalog(settings.catalog.url)
    audit(settings, catalog, t("2026-11-30T20:00"))
    audit(settings, catalog, t("2026-12-01T02:00"))  # incremental
    # changes: a file rewritten in an old window, a manifest rewritten (other bytes, same size), a schema change
    victim = min((tree.root / "dsB" / "exportTime=202611270600").glob("*.parquet"))
    tree.rewrite(victim, victim.read_bytes()[:-64] + b"x" * 80)
    catalog.engine.dispose() if hasattr(catalog, "engine") else None
    for name, kind in (("sched", {}), ("req", {"full_sweep": True})):
        shutil.copy(db, tmp_path / f"{name}.db")
    results = {}
    for name, kind in (("sched", {}), ("req", {"full_sweep": True})):
        s = cfg(tmp_path, tree, f"sqlite:///{tmp_path / (name + '.db')}", export_block("e", ["dsA", "dsB"]))
        c = open_catalog(s.catalog.url)
        r = audit(s, c, t("2026-12-01T21:00"), **kind)
        results[name] = r
    assert results["sched"].method["listing"]["d"]["settled_unchanged"] > 0 and not diff(verdicts(results["sched"]), verdicts(results["req"]))
    # the catalogs differ only in which audit last judged the kept windows
    assert {tuple(sorted(change)) for _table, change, _where in rows_diff(dump(tmp_path / "sched.db"), dump(tmp_path / "req.db")) for change in [change]} == {("last_audit_id",)}


def test_a_file_checked_again_by_a_back_dated_audit_has_the_window_judged_again(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    landed(tree, ["dsA"], t("2026-11-30T18:00"))
    settings = cfg(tmp_path, tree, upgraded(catalog_url), export_block("e", ["dsA"]))
    catalog = open_catalog(settings.catalog.url)
    audit(settings, catalog, t("2026-11-30T20:00"))
    victim = min((tree.root / "dsA" / "exportTime=202611270000").glob("*.parquet"))
    tree.rewrite(victim, victim.read_bytes()[:-64] + b"x" * 80)  # silent corruption: mtime kept
    back = audit(settings, catalog, t("2026-11-30T19:00"))  # "what did we know at T": a back-dated audit records the file's new record
    assert not back.live and back.method["listing"]["d"]["mode"] == "full"
    now = t("2026-12-01T21:00")
    swept = audit(settings, catalog, now)
    everything = audit(settings, None, now)
    assert not diff(verdicts(swept), verdicts(everything))
    assert verdicts(swept)[("e", "dsA", "2026-11-27T00:00:00+00:00")][0] == "invalid"
    again = audit(settings, catalog, t("2026-12-02T22:00"))
    assert verdicts(again)[("e", "dsA", "2026-11-27T00:00:00+00:00")][0] == "invalid"
    from auditor.restore import plan_restore

    plan = plan_restore(settings, catalog, "dsA", t("2026-11-30T18:00"))
    assert not plan.complete and plan.broken is not None and plan.broken.scheduled == t("2026-11-27T00:00")


def test_a_schema_changed_in_an_old_window_reaches_the_windows_after_it_through_an_empty_one(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    from auditor.exporter import sample_records, write_export
    from tests.conftest import touch
    landed(tree, ["dsA"], t("2026-11-30T18:00"))
    # 11-27T06:00 exported nothing (a manifest with no entries)
    empty = t("2026-11-27T06:00")
    shutil.rmtree(tree.root / "dsA" / "exportTime=202611270600")
    for w in write_export(tree.url, "dsA", empty, []):
        touch(tree.root / w.key, empty + timedelta(minutes=10))
    settings = cfg(tmp_path, tree, upgraded(catalog_url), export_block("e", ["dsA"]))
    catalog = open_catalog(settings.catalog.url)
    audit(settings, catalog, t("2026-11-30T20:00"))
    # the 11-27T00:00 export is rewritten with another schema
    when = t("2026-11-27T00:00")
    shutil.rmtree(tree.root / "dsA" / "exportTime=202611270000")
    for w in write_export(tree.url, "dsA", when, [dict(r, extra_col=1) for r in sample_records("dsA", when, 5)], seed=7):
        touch(tree.root / w.key, when + timedelta(minutes=10))
    now = t("2026-12-01T21:00")
    swept = audit(settings, catalog, now)
    everything = audit(settings, None, now)
    assert not diff(verdicts(swept), verdicts(everything))
    assert swept.method["listing"]["d"]["settled_unchanged"] > 0
