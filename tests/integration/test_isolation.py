"""Inside a real audit: a reader that crashes or hangs on one file costs that file, not the audit;
and `--sample` deep-checks every file once per rotation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from auditor.audit import AuditOptions, run_audit
from auditor.catalog.repository import open_catalog
from auditor.cli import main
from auditor.config import settings_from_mapping
from auditor.storage import open_store
from auditor.validate.sandbox import Sandbox
from tests.conftest import Tree, t
from tests.integration.test_audit_tree import build_defect_tree


def test_a_crashing_reader_makes_one_window_invalid_and_the_audit_goes_on(tree: Tree) -> None:
    for hour in (0, 3, 6):
        tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=False, parts=2)
    victim = next((tree.root / "ds/exportTime=202611270300").glob("part-*"))
    tree.rewrite(victim, b"crash" + victim.read_bytes())
    settings = settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "json", "schedule": {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-27T00:00:00Z", "endTime": "2026-11-27T09:00:00Z"}}],
        },
        {},
    )
    now = datetime(2026, 11, 28, tzinfo=UTC)
    with Sandbox(workers=2, validator="tests.sandbox_validators:segfault") as sandbox:
        report = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=now, started=now, options=AuditOptions(deep=True), checker=sandbox)
    statuses = [w.status.value for w in report.exports[0].windows]
    assert statuses == ["ok", "invalid", "ok"]
    crashed = report.exports[0].windows[1].findings
    assert [f.code for f in crashed] == ["validate.crashed"] and crashed[0].path.endswith(victim.name)
    assert sandbox.crashes == 1


def test_sample_rotation_deep_checks_every_file_once_per_round(tree: Tree, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = build_defect_tree(tree, tmp_path, url)
    catalog = open_catalog(url)
    runner = CliRunner()
    deep_at: list[dict[str, datetime | None]] = []
    for _ in range(4):  # --sample 50: a round is two audits
        result = runner.invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--sample", "50", "--format", "json"])
        assert json.loads(result.stdout)["assurance"]["files"] > 0
        deep_at.append({k: r.deep_at for k, r in catalog.known_files("backups").items() if r.role == "data" and not any(f.is_error for f in r.findings)})
    files = set(deep_at[0])
    first_half = {k for k in files if deep_at[0][k] is not None}
    assert 0 < len(first_half) < len(files)
    assert all(deep_at[1][k] is not None for k in files)  # one round: every file deep-checked
    assert {k for k in files if deep_at[2][k] != deep_at[1][k]} == first_half  # the next round starts again
    assert {k for k in files if deep_at[3][k] != deep_at[2][k]} == files - first_half


def test_files_compressed_otherwise_than_configured_are_a_warning(tree: Tree) -> None:
    tree.export("ds", t("2026-11-27T00:00"), file_format="parquet", compression="none", manifest=False, parts=1)
    settings = settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "compression": "gzip", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z", "endTime": "2026-11-28T00:00:00Z"}}],
        },
        {},
    )
    now = datetime(2026, 11, 28, tzinfo=UTC)
    report = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=None, now=now, started=now)
    window = report.exports[0].windows[0]
    assert window.status.value == "ok"
    assert [(f.code, f.severity.value) for f in window.findings] == [("file.compression_mismatch", "warning")]


def test_a_first_audit_starts_its_workers_while_it_lists_and_an_unchanged_sweep_starts_none(tree: Tree, tmp_path: Path) -> None:
    """Workers load their readers while a first audit lists (every listed file will be read); an audit with
    nothing new to read, a full sweep or a deep audit included, starts no worker at all."""
    for hour in (0, 3):
        tree.export("ds", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=False, parts=2)
    settings = settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "json", "schedule": {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-27T00:00:00Z", "endTime": "2026-11-27T06:00:00Z"}}],
        },
        {},
    )
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    now = datetime(2026, 11, 28, tzinfo=UTC)
    listed_with: list[int] = []

    class Watched(Sandbox):
        def check_many(self, items, *, deep):  # type: ignore[no-untyped-def]
            listed_with.append(self.started)
            return super().check_many(items, deep=deep)

    with Watched(workers=2) as sandbox:
        first = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=catalog, now=now, started=now, checker=sandbox)
    assert [w.status.value for w in first.exports[0].windows] == ["ok", "ok"]
    assert listed_with and listed_with[0] == 2  # both workers were started before the first check asked for one
    # the first deep audit reads every data file again, the second none (their deep verdicts stand)
    for options, reads in ((AuditOptions(), 0), (AuditOptions(full_sweep=True), 0), (AuditOptions(deep=True), 4), (AuditOptions(deep=True), 0)):
        with Sandbox(workers=2) as idle:
            again = run_audit(settings, stores={"d": open_store(tree.url)}, catalog=catalog, now=now, started=now, options=options, checker=idle)
        assert [w.status.value for w in again.exports[0].windows] == ["ok", "ok"]
        assert again.assurance.read_files == reads
        if not reads:
            assert idle.started == 0
