"""Carried windows stay true to a full listing when what they were judged under changes (found in review):
another audit's scope, the destination's URL, the export's destination, run evidence that arrives later,
and schema drift measured across an empty window after an open one."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.audit import AuditOptions, run_audit
from auditor.config import Settings
from auditor.exporter import sample_records, write_export
from auditor.flows.models import Run
from auditor.runtime import Runtime
from auditor.storage import open_store
from tests.conftest import Tree, t, write_config
from tests.integration.test_alerts import upgraded
from tests.integration.test_incremental_listing import START, _config, _landed, _two_exports, _windows_json, export_entry

FLOW = "eb54b3b3-3949-4f12-89c8-64eafaba858f"
LAST_RUN = t("2026-11-29T18:00")


def _settings(tmp_path: Path, tree: Tree, catalog_url: str, *, grace_a: str = "1h", url: str | None = None, a_to: str = "d", elsewhere: Path | None = None) -> Settings:
    """Exports a (dsA) and b (dsB) on d; with `elsewhere`, a destination d2 there and an export c to it."""
    destinations = [{"name": "d", "url": url or tree.url, "listing_horizon": "12h"}]
    exports = [export_entry("a", "dsA", destination=a_to, grace=grace_a), export_entry("b", "dsB")]
    if elsewhere is not None:
        destinations.append({"name": "d2", "url": elsewhere.as_uri(), "listing_horizon": "12h"})
        exports.append(export_entry("c", "dsC", destination="d2", manifest=False))
    return write_config(tmp_path / "carried.toml", catalog_url, destinations=destinations, exports=exports)


def _full(settings: Settings, now: datetime, **kwargs: Any) -> Any:
    stores = {d.name: open_store(d.url) for d in settings.destinations}
    return run_audit(settings, stores=stores, catalog=None, now=now, started=now, **kwargs)


def test_an_audit_of_other_exports_does_not_record_a_new_configuration_for_this_one(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    late = t("2026-11-26T12:00")
    _landed(tree, t("2026-11-27T12:00"))
    tree.export("dsA", late, count=5, landed=late + timedelta(hours=3))  # late under a 1 h grace, ok under 4 h
    catalog_url = upgraded(catalog_url)
    with Runtime(_settings(tmp_path, tree, catalog_url)) as runtime:
        first = runtime.audit(now=t("2026-11-27T14:00"))
        assert first is not None and _windows_json(first)[("dsA", late.isoformat())]["status"] == "late"
    longer = _settings(tmp_path, tree, catalog_url, grace_a="4h")
    with Runtime(longer) as runtime:
        runtime.audit(now=t("2026-11-27T15:00"), options=AuditOptions(only_exports=frozenset({"b"})))  # as `auditor serve` audits one at a time
        after = runtime.audit(now=t("2026-11-27T16:00"))
    assert after is not None and after.method["listing"]["d"]["reason"] == "export 'a' is configured otherwise than at its last audit"
    assert _windows_json(after) == _windows_json(_full(longer, t("2026-11-27T16:00")))


def test_a_destination_pointed_elsewhere_or_an_export_moved_is_listed_in_full(tree: Tree, tmp_path: Path) -> None:
    _landed(tree, t("2026-11-27T12:00"))
    catalog_url = f"sqlite:///{tmp_path / 'c.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Runtime(_settings(tmp_path, tree, catalog_url, elsewhere=elsewhere)) as runtime:
        runtime.audit(now=t("2026-11-27T14:00"))  # sweeps d and d2
    moved = _settings(tmp_path, tree, catalog_url, elsewhere=elsewhere, a_to="d2")  # export a now writes to d2, which is empty
    with Runtime(moved) as runtime:
        after = runtime.audit(now=t("2026-11-27T15:00"))
    assert after is not None and after.method["listing"]["d2"]["mode"] == "full"
    assert _windows_json(after) == _windows_json(_full(moved, t("2026-11-27T15:00")))
    assert {w["status"] for (ds, _), w in _windows_json(after).items() if ds == "dsA"} == {"missing"}

    repointed = _settings(tmp_path, tree, catalog_url, url=elsewhere.as_uri(), elsewhere=elsewhere)  # d now names the empty folder
    with Runtime(repointed) as runtime:
        again = runtime.audit(now=t("2026-11-27T16:00"))
    assert again is not None and again.method["listing"]["d"]["mode"] == "full"
    assert {w["status"] for (ds, _), w in _windows_json(again).items() if ds == "dsB"} == {"missing"}


def _runs(statuses: dict[datetime, str], *, records: dict[datetime, int] | None = None, until: datetime = LAST_RUN) -> dict[str, list[Run]]:
    found, slot = [], START
    while slot <= until:
        status = statuses.get(slot, "success")
        count = (records or {}).get(slot)
        found.append(Run(f"run-{slot:%m%d%H}", FLOW, status, slot, slot + timedelta(minutes=1), slot + timedelta(minutes=9), count, None, {}, (("E1", "x"),) if status == "failed" else ()))
        slot += timedelta(hours=6)
    return {FLOW: found}


def test_windows_judged_without_their_runs_are_judged_again_when_the_runs_come(tree: Tree, tmp_path: Path, monkeypatch: Any) -> None:
    old = t("2026-11-27T06:00")
    _landed(tree, t("2026-11-29T18:00"))
    _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    settings = _two_exports(tmp_path, tree, flow_id=FLOW, names=("a",))
    with Runtime(settings) as runtime:
        monkeypatch.setattr(Runtime, "fetch_runs", lambda self, exports=None: (None, None, []))  # no Flow Service, or it could not be read
        runtime.audit(now=t("2026-11-29T20:00"))
        monkeypatch.setattr(Runtime, "fetch_runs", lambda self, exports=None: (_runs({old: "failed"}), None, []))
        second = runtime.audit(now=t("2026-11-30T02:00"))
    assert second is not None and second.method["listing"]["d"]["mode"] == "full"
    assert _windows_json(second)[("dsA", old.isoformat())]["status"] == "invalid"
    assert _windows_json(second) == _windows_json(_full(settings, t("2026-11-30T02:00"), runs=_runs({old: "failed"})))


def test_drift_is_measured_again_across_an_empty_window_after_an_open_one(tree: Tree, tmp_path: Path, monkeypatch: Any) -> None:
    gap, empty = t("2026-11-27T12:00"), t("2026-11-27T18:00")  # missing at first; a run with 0 records (no files, no schema)

    def export(slot: datetime, *, extra: str | None = None, landed: datetime | None = None) -> None:
        for written in write_export(tree.url, "dsA", slot, [r | ({extra: 1} if extra else {}) for r in sample_records("dsA", slot, 5)]):
            os.utime(tree.root / written.key, ((landed or slot + timedelta(minutes=10)).timestamp(),) * 2)

    slot = START
    while slot <= t("2026-11-28T18:00"):
        if slot not in (gap, empty):
            export(slot)
        slot += timedelta(hours=6)
    runs = _runs({}, records={empty: 0}, until=t("2026-11-28T18:00"))
    _config(tmp_path, tree, f"sqlite:///{tmp_path / 'c.db'}")
    settings = _two_exports(tmp_path, tree, flow_id=FLOW, names=("a",))
    monkeypatch.setattr(Runtime, "fetch_runs", lambda self, exports=None: (runs, None, []))
    with Runtime(settings) as runtime:
        runtime.audit(now=t("2026-11-29T09:00"))
        export(gap, extra="coupon", landed=t("2026-11-29T09:30"))  # the gap lands late, with a new column
        second = runtime.audit(now=t("2026-11-29T10:00"))
    assert second is not None and second.method["listing"]["d"]["mode"] == "incremental"
    windows = _windows_json(second)
    assert [f["code"] for f in windows[("dsA", "2026-11-28T00:00:00+00:00")]["findings"]] == ["parquet.schema_drift"]  # against the gap, across the empty one
    assert windows == _windows_json(_full(settings, t("2026-11-29T10:00"), runs=runs))


def test_a_folder_two_exports_share_is_counted_once_and_a_failed_listing_carries_nothing(tree: Tree, tmp_path: Path, monkeypatch: Any) -> None:
    """Found in review: the assurance of an incremental audit counted a carried folder once per export that claims it
    (a full listing counts each file once); and an incremental audit whose listing failed still said it carried windows."""
    from auditor.errors import StorageError
    from auditor.storage.fsspec_store import FsspecStore

    _landed(tree, t("2026-11-29T18:00"))
    settings = write_config(
        tmp_path / "shared.toml",
        f"sqlite:///{tmp_path / 'c.db'}",
        destinations=[{"name": "d", "url": tree.url, "listing_horizon": "12h"}],
        exports=[export_entry("a", "dsA"), export_entry("b", "dsA")],
    )
    with Runtime(settings) as runtime:
        full = runtime.audit(now=t("2026-11-29T20:00"))
        incremental = runtime.audit(now=t("2026-11-29T21:00"))
        assert full is not None and incremental is not None
        listing = incremental.method["listing"]["d"]
        assert listing["mode"] == "incremental" and listing["carried_windows"] > 0
        assert incremental.assurance.files == full.assurance.files
        listed_files = sum(w.files for w in incremental.exports[0].windows if not w.carried)  # a's listed windows: the folders listed
        assert listing["carried_from_catalog"] + listed_files == full.assurance.files

        def away(self: FsspecStore, prefixes: Any) -> Any:
            raise StorageError("the bucket is away", url=self.url)

        monkeypatch.setattr(FsspecStore, "list_prefixes", away)
        failed = runtime.audit(now=t("2026-11-29T22:00"))
    assert failed is not None and {w.status.value for e in failed.exports for w in e.windows} == {"unknown"}
    assert (failed.method["listing"]["d"]["carried_windows"], failed.method["listing"]["d"]["carried_from_catalog"]) == (0, 0)
