"""Incremental listing over a simulated clock: between full sweeps an audit lists only the windows
that can still change, gives the same verdicts as a full listing, and the next full sweep catches a
file deleted or added in an old window and breaks the restore chain that needs it."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.audit import AuditOptions, run_audit
from auditor.catalog.repository import open_catalog
from auditor.config import Settings, TokenSettings, load_settings, settings_from_mapping
from auditor.restore import plan_restore
from auditor.runtime import Runtime
from auditor.storage import open_store
from tests.conftest import Tree, t, write_config
from tests.integration.test_alerts import upgraded

START = t("2026-11-26T00:00")
DATASETS = ("dsA", "dsB")


def _config(tmp_path: Path, tree: Tree, catalog_url: str, *, every: str = "1d") -> Settings:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "{catalog_url}"
[validation]
isolate = false
[[destinations]]
name = "d"
url = "{tree.url}"
full_sweep_every = "{every}"
listing_horizon = "12h"
[[exports]]
name = "e"
destination = "d"
datasets = ["dsA", "dsB"]
format = "parquet"
manifest = true
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 6, startTime = "{START:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    )
    return load_settings(config, {})


def _landed(tree: Tree, until: datetime, *, skip: set[tuple[str, datetime]] = frozenset()) -> None:  # type: ignore[assignment]
    slot = START
    while slot <= until:
        for ds in DATASETS:
            if (ds, slot) not in skip:
                tree.export(ds, slot, count=5)
        slot += timedelta(hours=6)


def _statuses(report: Any) -> dict[tuple[str, str], str]:
    return {(e.dataset_id, w.window.scheduled.isoformat()): w.status.value for e in report.exports for w in e.windows}


def _full_listing_verdicts(settings: Settings, now: datetime) -> dict[tuple[str, str], str]:
    """What an audit with no catalog at all (a full listing, every file read) says at `now`."""
    stores = {d.name: open_store(d.url, d.options) for d in settings.destinations}
    return _statuses(run_audit(settings, stores=stores, catalog=None, now=now, started=now))


def test_between_sweeps_only_open_windows_are_listed_and_a_sweep_catches_what_changed_in_old_ones(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    gap = ("dsA", t("2026-11-27T06:00"))
    _landed(tree, t("2026-11-30T18:00"), skip={gap})
    settings = _config(tmp_path, tree, upgraded(catalog_url))
    with Runtime(settings) as runtime:
        first = runtime.audit(now=t("2026-11-30T20:00"))
        assert first is not None
        assert first.method["listing"]["d"]["mode"] == "full" and "no full sweep" in first.method["listing"]["d"]["reason"]
        assert _statuses(first)[("dsA", gap[1].isoformat())] == "missing"

        # six hours later, a new slot has landed: the audit lists only what can still change
        for ds in DATASETS:
            tree.export(ds, t("2026-12-01T00:00"), count=5)
        second = runtime.audit(now=t("2026-12-01T02:00"))
        assert second is not None
        listing = second.method["listing"]["d"]
        assert listing["mode"] == "incremental" and listing["last_full_sweep"] == "2026-11-30T20:00:00Z"
        # open: the missing window and the one after it (its schema drift is measured against the missing one), and per
        # dataset 11-30T18:00 (within grace + 12 h) and 12-01T00:00 (after the last audit): one prefix per day
        assert (listing["open_windows"], listing["prefixes"]) == (6, 5)
        assert listing["carried_from_catalog"] > listing["listed_objects"] > 0
        assert _statuses(second) == _full_listing_verdicts(settings, t("2026-12-01T02:00"))  # the same verdicts as a full listing
        assert second.assurance.read_files == 2 * 2 + 2  # only the new slot's data files (2 per dataset) and its manifests were read

        # the missing window lands late: it is open, so the next incremental audit sees it
        tree.export(*gap, count=5, landed=t("2026-12-01T03:00"))
        third = runtime.audit(now=t("2026-12-01T04:00"))
        assert third is not None and third.method["listing"]["d"]["mode"] == "incremental"
        assert _statuses(third)[("dsA", gap[1].isoformat())] == "late"

        # a file of an old, settled window goes, and a stray one appears in another old window
        doomed = min((tree.root / "dsA" / "exportTime=202611260600").glob("*.parquet"))
        doomed.unlink()
        tree.put("dsB/exportTime=202611261200/part-99999.gz.parquet", b"not parquet", t("2026-12-01T05:00"))
        fourth = runtime.audit(now=t("2026-12-01T06:00"))
        assert fourth is not None and fourth.method["listing"]["d"]["mode"] == "incremental"
        assert _statuses(fourth)[("dsA", "2026-11-26T06:00:00+00:00")] == "ok"  # not seen yet: between sweeps, settled windows are taken as they were
        plan = plan_restore(settings, runtime.catalog, "dsA", t("2026-12-01T00:00"))
        assert plan.complete

        # a day after the last sweep the next audit sweeps in full and both changes come out
        fifth = runtime.audit(now=t("2026-12-01T20:00"))
        assert fifth is not None
        assert fifth.method["listing"]["d"]["mode"] == "full" and "1d old" in fifth.method["listing"]["d"]["reason"]
        statuses = _statuses(fifth)
        assert statuses[("dsA", "2026-11-26T06:00:00+00:00")] == "invalid"  # the manifest lists a file that is gone
        assert statuses[("dsB", "2026-11-26T12:00:00+00:00")] == "invalid"  # a data file the manifest does not list, and not Parquet
        assert statuses == _full_listing_verdicts(settings, t("2026-12-01T20:00"))
        plan = plan_restore(settings, runtime.catalog, "dsA", t("2026-12-01T18:00"))
        assert not plan.complete and plan.broken is not None and plan.broken.scheduled == t("2026-11-26T06:00")
        assert {d.name: d.last_full_sweep for d in runtime.catalog.destinations()} == {"d": t("2026-12-01T20:00")}


def test_a_back_dated_or_deep_audit_or_a_request_lists_in_full(tree: Tree, tmp_path: Path) -> None:
    _landed(tree, t("2026-11-27T12:00"))
    settings = _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    with Runtime(settings) as runtime:

        last_sweeps: list[str | None] = []

        def mode(now: str, **options: Any) -> tuple[str, str]:
            report = runtime.audit(now=t(now), options=AuditOptions(**options))
            assert report is not None
            listing = report.method["listing"]["d"]
            last_sweeps.append(listing["last_full_sweep"])
            return listing["mode"], listing["reason"]

        assert mode("2026-11-27T14:00")[0] == "full"
        assert mode("2026-11-27T15:00")[0] == "incremental"
        assert mode("2026-11-27T10:00") == ("full", "back-dated audit: the present state does not describe the past")
        assert mode("2026-11-27T16:00", full_sweep=True) == ("full", "requested (--full-sweep)")
        assert mode("2026-11-27T17:00", deep=True) == ("full", "a deep audit reads every file")
        assert mode("2026-11-27T18:00", sample_percent=25) == ("full", "a sampled audit gives every file its turn")
        # the back-dated full listing did not count as the last sweep; the requested one did, and every report
        # (a requested sweep's too) says when the one before it ran
        assert runtime.catalog.destinations()[0].last_full_sweep == t("2026-11-27T18:00")
        assert last_sweeps == [None, "2026-11-27T14:00:00Z", "2026-11-27T14:00:00Z", "2026-11-27T14:00:00Z", "2026-11-27T16:00:00Z", "2026-11-27T17:00:00Z"]


def test_the_api_and_the_dashboard_say_when_the_last_full_sweep_ran(tree: Tree, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from auditor.service.app import create_app
    from auditor.service.worker import Worker

    _landed(tree, t("2026-11-27T12:00"))
    settings = _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    settings = settings.model_copy(
        update={"service": settings.service.model_copy(update={"tokens": [TokenSettings(name="r", token="read-token-123456", role="read")]})}
    )
    now = t("2026-11-28T13:00")
    with Runtime(settings) as runtime:
        client = TestClient(create_app(runtime, Worker(runtime), clock=lambda: now))
        headers = {"Authorization": "Bearer read-token-123456"}
        before = client.get("/api/destinations", headers=headers).json()
        assert before == [
            {
                "name": "d",
                "url": tree.url,
                "full_sweep_every_seconds": 86400,
                "last_full_sweep": None,
                "last_full_sweep_audit_id": None,
                "next_full_sweep_due": None,
                "full_sweep_overdue": False,
            }
        ]
        swept = runtime.audit(now=t("2026-11-27T14:00"))
        runtime.audit(now=t("2026-11-27T15:00"))  # incremental: not a sweep
        assert swept is not None
        after = client.get("/api/compliance", headers=headers).json()["destinations"][0]
        assert (after["last_full_sweep"], after["last_full_sweep_audit_id"], after["next_full_sweep_due"]) == (
            "2026-11-27T14:00:00Z",
            swept.audit_id,
            "2026-11-28T14:00:00Z",
        )
        assert after["full_sweep_overdue"] is False
        metrics = client.get("/metrics", headers=headers).text
        swept_at = next(line for line in metrics.splitlines() if line.startswith('auditor_last_full_sweep_as_of_seconds{destination="d"}'))
        assert float(swept_at.split()[-1]) == t("2026-11-27T14:00").timestamp()
        page = client.get("/", headers=headers)
        assert page.status_code == 200
        assert '<td class="last-sweep">2026-11-27T14:00:00Z</td>' in page.text and f'href="/audits/{swept.audit_id}"' in page.text


def test_an_audit_of_some_exports_says_nothing_about_the_others_files(tree: Tree, tmp_path: Path) -> None:
    """Before: an audit of export b alone called export a's dataset "unknown: no configured export covers it"."""
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / "c.db"}"
[validation]
isolate = false
[[destinations]]
name = "d"
url = "{tree.url}"
"""
        + "".join(
            f"""[[exports]]
name = "{name}"
destination = "d"
datasets = ["{dataset}"]
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}
"""
            for name, dataset in (("a", "dsA"), ("b", "dsB"))
        )
    )
    for ds in ("dsA", "dsB"):
        tree.export(ds, t("2026-11-27T00:00"))
    tree.put("dsA/exportTime=202611270000/_SUCCESS", b"", t("2026-11-27T00:10"))
    tree.put("dsB/exportTime=202611270000/_SUCCESS", b"", t("2026-11-27T00:10"))
    tree.put("dsC/exportTime=202611270000/part-0.parquet", b"x", t("2026-11-27T00:10"))
    with Runtime(load_settings(config, {})) as runtime:
        report = runtime.audit(now=t("2026-11-27T02:00"), options=AuditOptions(only_exports=frozenset({"b"})))
    assert report is not None
    assert {(e.name, e.dataset_id) for e in report.exports} == {("b", "dsB")}
    assert sorted((u.path.removeprefix(tree.url + "/"), u.reason.split(":")[0]) for u in report.unexpected) == [
        ("dsB/exportTime=202611270000/_SUCCESS", "stray file inside an export folder"),
        ("dsC", "unknown dataset 'dsC'"),
    ]
    assert report.assurance.files == 2  # b's two data files: a's were not checked


def test_an_audit_reads_the_file_rows_once(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """What known_files read under the destination's lock is what record_audit compares with (it read them again)."""
    from sqlalchemy import event

    _landed(tree, t("2026-11-27T12:00"))
    settings = _config(tmp_path, tree, upgraded(catalog_url))
    with Runtime(settings) as runtime:
        runtime.audit(now=t("2026-11-27T14:00"))
        doomed = min((tree.root / "dsA" / "exportTime=202611271200").glob("*.parquet"))
        doomed.unlink()
        reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and re.search(r"\bFROM files\b", statement):
                reads.append(statement)

        event.listen(runtime.catalog.engine, "before_cursor_execute", count)
        report = runtime.audit(now=t("2026-11-27T15:00"), options=AuditOptions(full_sweep=True))
        event.remove(runtime.catalog.engine, "before_cursor_execute", count)
    assert report is not None
    assert len(reads) == 1, reads
    key = doomed.relative_to(tree.root).as_posix()
    assert key not in runtime.catalog.known_files("d")  # still marked gone, from the rows read once
    assert _statuses(report)[("dsA", "2026-11-27T12:00:00+00:00")] == "invalid"


def test_a_sweep_of_some_exports_is_not_the_destinations_sweep_and_a_failed_file_read_lists_in_full(tree: Tree, tmp_path: Path) -> None:
    """Found in review: an audit of one export reset the sweep clock of every export on the destination; and when
    the catalog's file list could not be read, an incremental audit carried nothing and marked every file gone."""
    from auditor.catalog.repository import Catalog
    from auditor.errors import CatalogError

    _landed(tree, t("2026-11-27T12:00"))
    _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")  # writes auditor.toml: export e, here with dsA only, and f with dsB
    config = tmp_path / "two.toml"
    config.write_text(
        (tmp_path / "auditor.toml").read_text().replace('datasets = ["dsA", "dsB"]', 'datasets = ["dsA"]')
        + """[[exports]]
name = "f"
destination = "d"
datasets = ["dsB"]
format = "parquet"
manifest = true
schedule = { exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 6, startTime = "2026-11-26T00:00:00Z" }
"""
    )
    with Runtime(load_settings(config, {})) as runtime:
        runtime.audit(now=t("2026-11-27T14:00"))
        present = len(runtime.catalog.known_files("d"))
        calls = {"n": 0}
        real = Catalog.known_files

        def flaky(self: Catalog, destination: str, prefixes: Any = None) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise CatalogError("the database went away for a moment")
            return real(self, destination, prefixes)

        Catalog.known_files = flaky  # type: ignore[method-assign]
        try:
            report = runtime.audit(now=t("2026-11-27T15:00"))  # an hour after the sweep: it would be incremental
        finally:
            Catalog.known_files = real  # type: ignore[method-assign]
        assert report is not None
        assert (report.method["listing"]["d"]["mode"], report.method["listing"]["d"]["reason"]) == ("full", "the catalog's files could not be read")
        assert len(runtime.catalog.known_files("d")) == present  # nothing was marked gone
        assert _statuses(report)[("dsA", "2026-11-26T00:00:00+00:00")] == "ok"

        narrow = runtime.audit(now=t("2026-11-28T15:00"), options=AuditOptions(only_exports=frozenset({"e"}), full_sweep=True))
        assert narrow is not None and narrow.method["listing"]["d"]["mode"] == "full"
        assert runtime.catalog.destinations()[0].last_full_sweep == t("2026-11-27T15:00")  # f's files were not re-checked by it


def _windows_json(report: Any) -> dict[tuple[str, str], dict[str, Any]]:
    from auditor.report import window_json

    return {(e.dataset_id, w.window.scheduled.isoformat()): window_json(w) for e in report.exports for w in e.windows}


def test_settled_windows_are_carried_from_the_catalog_as_a_full_listing_would_report_them(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """Between sweeps a settled window is not listed, nor are its files read from the catalog: its status,
    counts and findings come from its row, and its schema is what the next window's drift is measured against."""
    from auditor.catalog.repository import Catalog
    from auditor.exporter import sample_records, write_export

    def export(ds: str, slot: datetime, *, extra: str | None = None, landed: datetime | None = None) -> None:
        records = [r | ({extra: 1} if extra else {}) for r in sample_records(ds, slot, 5)]
        for written in write_export(tree.url, ds, slot, records):
            os.utime(tree.root / written.key, ((landed or slot + timedelta(minutes=10)).timestamp(),) * 2)

    slot = START
    while slot <= t("2026-11-28T18:00"):
        for ds in DATASETS:
            export(ds, slot, extra="coupon" if slot >= t("2026-11-27T12:00") else None, landed=slot + timedelta(hours=3) if slot == t("2026-11-26T18:00") else None)
        slot += timedelta(hours=6)
    settings = _config(tmp_path, tree, upgraded(catalog_url))
    with Runtime(settings) as runtime:
        first = runtime.audit(now=t("2026-11-28T20:00"))
        assert first is not None and first.method["listing"]["d"]["mode"] == "full"
        for ds in DATASETS:  # the next windows change the schema again: drift from the window before, which is carried
            export(ds, t("2026-11-29T00:00"), extra="channel")
            export(ds, t("2026-11-29T06:00"), extra="channel")
        read: list[int] = []
        real = Catalog.known_files

        def counted(self: Catalog, destination: str, prefixes: Any = None) -> Any:
            found = real(self, destination, prefixes)
            read.append(len(found))
            return found

        Catalog.known_files = counted  # type: ignore[method-assign]
        try:
            second = runtime.audit(now=t("2026-11-29T08:00"))
        finally:
            Catalog.known_files = real  # type: ignore[method-assign]
    assert second is not None
    listing = second.method["listing"]["d"]
    # open: 11-29T00:00 and 06:00 per dataset (one day, one prefix each); 11-28T18:00 is settled (deadline + 12 h
    # before 08:00) and alone on its day: carried, with every window before it
    assert (listing["mode"], listing["open_windows"], listing["prefixes"]) == ("incremental", 4, 2)
    assert listing["carried_windows"] == 2 * 12 and listing["listed_objects"] == 2 * 2 * 3
    assert read == [0]  # the catalog's rows for the listed folders: none yet (no row of a carried window is read)
    windows = _windows_json(second)
    assert windows == _windows_json(run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=t("2026-11-29T08:00"), started=t("2026-11-29T08:00")))
    assert windows[("dsA", "2026-11-26T18:00:00+00:00")]["status"] == "late"  # carried with its warning
    assert [f["code"] for f in windows[("dsA", "2026-11-27T12:00:00+00:00")]["findings"]] == ["parquet.schema_drift"]  # carried
    drift = [f for f in windows[("dsA", "2026-11-29T00:00:00+00:00")]["findings"] if f["code"] == "parquet.schema_drift"]
    assert len(drift) == 1 and "2026-11-28T18:00Z" in drift[0]["message"]  # measured against the carried window's schema
    assert second.assurance.files == first.assurance.files + 2 * 2 * 2  # the carried windows' data files count too


def test_a_catalog_upgraded_to_carry_windows_sweeps_in_full_first(tmp_path: Path) -> None:
    """Window rows written before 0009 have no schema: the upgrade forgets every destination's last sweep."""
    from alembic import command
    from sqlalchemy import text

    from auditor.catalog.engine import alembic_config, make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    command.upgrade(alembic_config(engine), "0008")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO destinations (name, url, last_full_sweep_at) VALUES ('d', 'file:///x', '2026-11-29 00:00:00.000000')"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT last_full_sweep_at FROM destinations")).scalar_one() is None


def test_an_export_configured_otherwise_than_at_its_last_audit_is_listed_in_full(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """A settled window's row was judged against the old configuration (a longer grace turns late into ok)."""
    _landed(tree, t("2026-11-27T12:00"))
    settings = _config(tmp_path, tree, upgraded(catalog_url))
    with Runtime(settings) as runtime:
        runtime.audit(now=t("2026-11-27T14:00"))
        again = runtime.audit(now=t("2026-11-27T15:00"))
        assert again is not None and again.method["listing"]["d"]["mode"] == "incremental"  # the recorded configuration reads back equal
    (tmp_path / "auditor.toml").write_text((tmp_path / "auditor.toml").read_text().replace('manifest = true\n', 'manifest = true\ngrace = "3h"\n'))
    with Runtime(load_settings(tmp_path / "auditor.toml", {})) as runtime:
        changed = runtime.audit(now=t("2026-11-27T16:00"))
        assert changed is not None
        assert (changed.method["listing"]["d"]["mode"], changed.method["listing"]["d"]["reason"]) == ("full", "export 'e' is configured otherwise than at its last audit")
        after = runtime.audit(now=t("2026-11-27T17:00"))
        assert after is not None and after.method["listing"]["d"]["mode"] == "incremental"


SCHEDULE = {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 6, "startTime": f"{START:%Y-%m-%dT%H:%M:%SZ}"}


def export_entry(name: str, dataset: str, *, destination: str = "d", **more: Any) -> dict[str, Any]:
    """One [[exports]] entry of these tests: Parquet with manifests, every 6 hours from START."""
    return {"name": name, "destination": destination, "datasets": [dataset], "format": "parquet", "manifest": True, "schedule": SCHEDULE, **more}


def _two_exports(tmp_path: Path, tree: Tree, *, template: str | None = None, flow_id: str | None = None, names: tuple[str, ...] = ("a", "b")) -> Settings:
    """A config of one export per dataset (dsA, dsB) on destination d, beside the catalog of `_config`."""
    more = {k: v for k, v in (("folder_template", template), ("flow_id", flow_id)) if v}
    return write_config(
        tmp_path / "two.toml",
        load_settings(tmp_path / "auditor.toml", {}).catalog.url,
        destinations=[{"name": "d", "url": tree.url, "listing_horizon": "12h"}],
        exports=[export_entry(name, dataset, **more) for name, dataset in zip(names, DATASETS, strict=False)],
    )


def test_run_evidence_that_can_still_change_keeps_its_window_open(tree: Tree, tmp_path: Path, monkeypatch: Any) -> None:
    """Found in review: a window judged while its run was still processing was carried with `run.unfinished`,
    though the run later failed (a full listing says invalid)."""
    from auditor.flows.models import Run

    flow = "eb54b3b3-3949-4f12-89c8-64eafaba858f"
    old = t("2026-11-27T06:00")

    def runs(old_status: str) -> dict[str, list[Run]]:
        found, slot = [], START
        while slot <= t("2026-11-29T18:00"):
            status = old_status if slot == old else "success"
            end = None if status == "processing" else slot + timedelta(minutes=9)
            found.append(Run(f"run-{slot:%m%d%H}", flow, status, slot, slot + timedelta(minutes=1), end, 10, 2, {}, (("E1", "half-way"),) if status == "failed" else ()))
            slot += timedelta(hours=6)
        return {flow: found}

    _landed(tree, t("2026-11-29T18:00"))
    _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    settings = _two_exports(tmp_path, tree, flow_id=flow, names=("a",))
    with Runtime(settings) as runtime:
        monkeypatch.setattr(Runtime, "fetch_runs", lambda self, exports=None: (runs("processing"), None, []))
        first = runtime.audit(now=t("2026-11-29T20:00"))
        assert first is not None and [f["code"] for f in _windows_json(first)[("dsA", old.isoformat())]["findings"]] == ["run.unfinished"]
        monkeypatch.setattr(Runtime, "fetch_runs", lambda self, exports=None: (runs("failed"), None, []))
        second = runtime.audit(now=t("2026-11-30T02:00"))
    assert second is not None and second.method["listing"]["d"]["mode"] == "incremental"
    window = _windows_json(second)[("dsA", old.isoformat())]
    assert (window["status"], [f["code"] for f in window["findings"]]) == ("invalid", ["run.failed"])
    full = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=t("2026-11-30T02:00"), started=t("2026-11-30T02:00"), runs=runs("failed"))
    assert _windows_json(second) == _windows_json(full)


def test_an_audit_of_some_exports_counts_only_their_files_and_a_leading_macro_lists_everything(tree: Tree, tmp_path: Path) -> None:
    """Found in review: an incremental audit of export b counted a's data files in its assurance; and a template whose
    listing prefix is "" (it starts with a macro the auditor cannot expand) read back no known file, so every file was
    read again and none was marked gone."""
    _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    template = "%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%"
    slot = START
    while slot <= t("2026-11-29T18:00"):
        for ds in DATASETS:
            tree.export(ds, slot, count=5, template=f"prod/{ds}/exportTime=%EXPORT_TIME%".replace(ds, "%DATASET_ID%"))
        slot += timedelta(hours=6)
    settings = _two_exports(tmp_path, tree, template=template)
    only_b = AuditOptions(only_exports=frozenset({"b"}))
    with Runtime(settings) as runtime:
        runtime.audit(now=t("2026-11-29T20:00"))
        doomed = min((tree.root / "prod/dsB/exportTime=202611290000").glob("*.parquet"))
        doomed.unlink()
        second = runtime.audit(now=t("2026-11-29T21:00"), options=only_b)
        assert second is not None
        assert (second.method["listing"]["d"]["mode"], second.method["listing"]["d"]["prefixes"]) == ("incremental", 1)
        assert second.assurance.read_files == 0  # every file under "" was known and unchanged
        assert doomed.relative_to(tree.root).as_posix() not in runtime.catalog.known_files("d")  # and the one deleted is gone
    full = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=t("2026-11-29T21:00"), started=t("2026-11-29T21:00"), options=only_b)
    assert second.assurance.files == full.assurance.files
    assert _windows_json(second) == _windows_json(full)


def test_a_full_sweep_lists_each_known_file_under_the_key_its_record_holds(tree: Tree, tmp_path: Path) -> None:
    """The catalog's view of the files is read before a full listing, and the listing holds each known key as the
    record's own string: an estate's keys are held once, not twice."""
    for hour in (0, 3):
        tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=False, parts=3)
    settings = _sweep_settings(tree)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    run_audit(settings, stores={"d": open_store(tree.url)}, catalog=open_catalog(url), now=now, started=now)
    catalog = open_catalog(url)
    seen: dict[str, Any] = {}
    known_files = catalog.known_files

    def remembered(destination: str, prefixes: Any = None) -> Any:
        seen["known"] = known_files(destination, prefixes)
        return seen["known"]

    catalog.known_files = remembered  # type: ignore[method-assign]
    store = open_store(tree.url)
    listing = store.list

    def listed(prefix: str = "", **kwargs: Any) -> Any:
        seen["listed"] = listing(prefix, **kwargs)
        return seen["listed"]

    store.list = listed  # type: ignore[method-assign]
    report = run_audit(settings, stores={"d": store}, catalog=catalog, now=now, started=now, options=AuditOptions(full_sweep=True))
    assert [w.status.value for w in report.exports[0].windows] == ["ok", "ok"]
    assert len(seen["listed"]) == len(seen["known"]) == 6
    assert all(o.key is seen["known"][o.key].key for o in seen["listed"])


def test_a_file_another_audit_records_while_a_full_sweep_lists_is_not_taken_for_gone(tree: Tree, tmp_path: Path) -> None:
    """Without the destination lock (run_audit called directly): what this audit takes for the catalog's present
    files was read before it listed, so a file recorded meanwhile by another audit is not marked gone by it."""
    tree.export("ds", t("2026-11-27T00:00"), file_format="json", manifest=False, parts=1)
    settings = _sweep_settings(tree)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    store = open_store(tree.url)
    real_list = store.list

    def list_then_another_audit(prefix: str = "", **kwargs: Any) -> Any:
        listed = real_list(prefix, **kwargs)
        tree.export("ds", t("2026-11-27T03:00"), file_format="json", manifest=False, parts=1)  # lands, and another process records it
        run_audit(settings, stores={"d": open_store(tree.url)}, catalog=open_catalog(url), now=now, started=now, options=AuditOptions(full_sweep=True))
        return listed

    store.list = list_then_another_audit  # type: ignore[method-assign]
    run_audit(settings, stores={"d": store}, catalog=open_catalog(url), now=now, started=now, options=AuditOptions(full_sweep=True))
    on_disk = sorted(str(p.relative_to(tree.root)) for p in tree.root.rglob("*") if p.is_file())
    assert sorted(open_catalog(url).known_files("d")) == on_disk and len(on_disk) == 2


def _sweep_settings(tree: Tree) -> Any:
    return settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "json", "schedule": {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-27T00:00:00Z", "endTime": "2026-11-27T06:00:00Z"}}],
        },
        {},
    )


def test_the_cost_of_a_full_listing_counts_a_folder_shared_by_two_exports_once(tree: Tree, tmp_path: Path) -> None:
    """Two exports of one dataset to one destination judge the same folders (a window each): what the catalog
    says a full listing would cost counts each folder's files once, not once per export."""
    for hour in (0, 3):
        tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=False, parts=3)
    schedule = {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-27T00:00:00Z", "endTime": "2026-11-27T06:00:00Z"}
    settings = settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": name, "destination": "d", "datasets": ["ds"], "format": "json", "schedule": schedule} for name in ("e", "f")],
        },
        {},
    )
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    now = datetime(2026, 11, 28, tzinfo=UTC)
    report = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=catalog, now=now, started=now)
    assert [w.status.value for e in report.exports for w in e.windows] == ["ok"] * 4
    state = catalog.sweep_state(settings.destinations[0], settings.exports)
    assert (state.files, state.folders) == (6 + 2, 2)  # 6 data files, a manifest's worth per folder


def test_a_look_alike_folder_in_other_digits_claims_no_window(tree: Tree, tmp_path: Path) -> None:
    """A folder named exportTime=<the slot in Arabic-Indic digits>, holding a copy of a good export, stood in
    for the export AEP never wrote: the window was ok in a full listing (and restored from the look-alike) but
    missing in an incremental one, which lists by the ASCII name. It is unexpected; the window is missing both ways."""
    import shutil

    gap = t("2026-11-27T06:00")
    _landed(tree, t("2026-11-27T12:00"), skip={("dsA", gap)})
    tree.export("dsA", gap, count=5)
    real = tree.root / "dsA" / "exportTime=202611270600"
    look_alike = tree.root / "dsA" / ("exportTime=" + "202611270600".translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")))
    shutil.move(real, look_alike)
    settings = _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    with Runtime(settings) as runtime:
        full = runtime.audit(now=t("2026-11-27T14:00"))
        assert full is not None and full.method["listing"]["d"]["mode"] == "full"
        assert _statuses(full)[("dsA", gap.isoformat())] == "missing"
        assert any(u.path.endswith(look_alike.name) for u in full.unexpected), full.unexpected
        plan = plan_restore(settings, runtime.catalog, "dsA", t("2026-11-27T13:00"))
        assert not plan.complete and plan.broken is not None and plan.broken.scheduled == gap
        assert not any(look_alike.name in f.url for step in plan.steps for f in step.files)
        later = runtime.audit(now=t("2026-11-27T15:00"))
        assert later is not None and later.method["listing"]["d"]["mode"] == "incremental"
        swept = runtime.audit(now=t("2026-11-27T15:00"), options=AuditOptions(full_sweep=True))
        assert swept is not None and _statuses(later) == _statuses(swept) == _full_listing_verdicts(settings, t("2026-11-27T15:00"))
