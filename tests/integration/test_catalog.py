"""The catalog on SQLite and PostgreSQL: migrations agree with the models, audits are idempotent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect

from auditor.catalog.engine import ensure_schema, make_engine, schema_state, upgrade
from auditor.catalog.repository import open_catalog
from auditor.catalog.tables import metadata
from auditor.cli import main
from auditor.errors import CatalogError
from tests.conftest import Tree, t
from tests.integration.test_audit_tree import WEB, audit_json, build_defect_tree


def test_migrations_match_the_models(catalog_url: str) -> None:
    engine = make_engine(catalog_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    current, head = schema_state(engine)
    assert current == head == "0015"
    from alembic.script import ScriptDirectory

    from auditor.catalog.engine import alembic_config

    assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == head  # HEAD names the newest migration


def _schema(url: str) -> dict[str, dict[str, Any]]:
    """Everything a catalog's schema holds, table by table, as SQLAlchemy's inspector reads it back."""
    engine = make_engine(url)
    found = inspect(engine)

    def options(index: Mapping[str, Any]) -> dict[str, str]:
        return {name: str(value) for name, value in (index.get("dialect_options") or {}).items()}  # a partial index's WHERE as text

    try:
        return {
            table: {
                "columns": sorted((c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("primary_key", 0)) for c in found.get_columns(table)),
                "primary key": found.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]), sorted(options(i).items())) for i in found.get_indexes(table)),
                "unique": sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
                "foreign keys": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"])) for f in found.get_foreign_keys(table)),
                "checks": sorted((c["name"], c["sqltext"]) for c in found.get_check_constraints(table)),
            }
            for table in sorted(found.get_table_names())
        }
    finally:
        engine.dispose()


def test_a_new_sqlite_catalog_is_created_with_the_schema_the_migrations_build(tmp_path: Path) -> None:
    """A new SQLite catalog is created from the table definitions and stamped (not migrated step by step):
    it must be the very schema an upgrade through every migration builds, down to server defaults and
    partial indexes, or a catalog would depend on how it was born."""
    created, migrated = f"sqlite:///{tmp_path / 'created.db'}", f"sqlite:///{tmp_path / 'migrated.db'}"
    ensure_schema(make_engine(created))
    upgrade(make_engine(migrated))
    assert schema_state(make_engine(created)) == schema_state(make_engine(migrated)) == ("0015", "0015")
    assert _schema(created) == _schema(migrated)
    assert "alembic_version" in _schema(created) and len(_schema(created)) > 10


def test_a_sqlite_file_that_is_not_a_catalog_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """Someone else's database (or a creation cut short) named as catalog.url: no table is added to it."""
    import sqlite3

    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as theirs:
        theirs.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        theirs.execute("INSERT INTO customers (name) VALUES ('ada')")
    with pytest.raises(CatalogError, match="customers.*someone else's database"):
        open_catalog(f"sqlite:///{path}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]  # no lock file, no write-ahead log beside it
    with sqlite3.connect(path) as theirs:
        assert theirs.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert [row[0] for row in theirs.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["customers"]
        assert list(theirs.execute("SELECT name FROM customers")) == [("ada",)]


def test_a_catalog_created_by_another_process_after_this_one_looked_is_opened_not_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas starting together on a new file: this one finds no version, another creates the catalog, then
    this one checks for foreign tables. It must see a catalog (tables and version), not someone else's file."""
    import auditor.catalog.engine as engine_module

    url = f"sqlite:///{tmp_path / 'auditor.db'}"
    real_state = engine_module.schema_state
    looked: list[str | None] = []

    def state_then_another_process_creates(engine: Any) -> tuple[str | None, str]:
        state = real_state(engine)
        if not looked:
            engine_module._create(make_engine(url))  # the other replica wins the race just after this read
        looked.append(state[0])
        return state

    monkeypatch.setattr(engine_module, "schema_state", state_then_another_process_creates)
    ensure_schema(make_engine(url))
    assert looked[0] is None  # the race was staged: this process had seen no catalog
    monkeypatch.undo()
    assert schema_state(make_engine(url)) == ("0015", "0015")


def test_downgrade_and_upgrade_round_trip(catalog_url: str) -> None:
    engine = make_engine(catalog_url)
    upgrade(engine)
    upgrade_to_base = __import__("alembic.command", fromlist=["downgrade"]).downgrade
    from auditor.catalog.engine import alembic_config

    upgrade_to_base(alembic_config(engine), "base")
    assert schema_state(engine)[0] is None
    upgrade(engine)
    assert schema_state(engine)[0] == "0015"


def test_repeated_audits_add_only_an_audit_row(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    catalog = open_catalog(catalog_url)
    first = catalog.table_counts()

    audit_json(config)

    second = catalog.table_counts()
    assert second["audits"] == first["audits"] + 1
    assert {k: v for k, v in second.items() if k != "audits"} == {k: v for k, v in first.items() if k != "audits"}
    assert first["windows"] == 13 + 2 + 1 + 2  # web, profiles, snapshot, archive
    assert first["window_status_history"] == first["windows"]


def test_known_files_reads_the_same_rows_streamed_in_a_transaction_and_on_a_reading_connection(tree: Tree, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog's files are streamed a few rows at a time (PostgreSQL: a server-side cursor, which needs a
    transaction); a connection `reading` lends autocommits, and reads them whole: both give every row, by folder too."""
    from auditor.catalog import repository

    monkeypatch.setattr(repository, "_STREAM_ROWS", 3)  # many fetches for a small tree
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    catalog = open_catalog(catalog_url)
    streamed = catalog.known_files("backups")
    assert len(streamed) == catalog.table_counts()["files"] > 3 * 3
    folders = sorted({r.folder_key for r in streamed.values() if r.folder_key})
    with catalog.reading() as reads:
        assert reads.known_files("backups") == streamed
        assert reads.known_files("backups", folders[:2]) == catalog.known_files("backups", folders[:2]) == {k: r for k, r in streamed.items() if r.folder_key in folders[:2]}


def test_status_history_records_each_change(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    runner = CliRunner()
    for as_of in ("2026-11-27T09:30:00Z", "2026-11-27T10:30:00Z", "2026-11-27T12:00:00Z", "2026-11-27T13:00:00Z"):
        runner.invoke(main, ["audit", "--config", str(config), "--as-of", as_of, "--format", "json"])
    history = open_catalog(catalog_url).window_history("web", WEB, t("2026-11-27T09:00"))
    assert [h.status for h in history] == ["pending", "missing", "late"]
    assert [h.at for h in history] == [t("2026-11-27T09:30"), t("2026-11-27T10:30"), t("2026-11-27T12:00")]
    assert all(h.live for h in history)


def test_unknown_keeps_what_the_catalog_knew(tree: Tree, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = build_defect_tree(tree, tmp_path, url)
    audit_json(config)
    catalog = open_catalog(url)
    before = catalog.windows("web", WEB, t("2026-11-27T00:00"), t("2026-11-27T00:00"))[0]
    files_before = catalog.known_files("backups")
    moved = tree.root.rename(tree.root.with_name("moved-away"))

    code, report = audit_json(config)

    assert code == 3  # nothing could be checked: incomplete, never a false "missing"
    web = next(e for e in report["exports"] if e["name"] == "web")
    assert {w["status"] for w in web["windows"]} == {"unknown"}
    after = catalog.windows("web", WEB, t("2026-11-27T00:00"), t("2026-11-27T00:00"))[0]
    assert after.status == "unknown"
    assert (after.files, after.bytes, after.folder_key) == (before.files, before.bytes, before.folder_key)
    assert catalog.windows("web", WEB, t("2026-11-27T00:00"), t("2026-11-27T00:00"), known=True)[0].status == "ok"  # what it last knew
    assert catalog.datasets("web")[0].restorable_until == t("2026-11-27T03:00")  # an audit that could not look moves no restore point
    assert catalog.known_files("backups") == files_before
    moved.rename(tree.root)
    code, _ = audit_json(config)
    assert code == 1
    assert catalog.windows("web", WEB, t("2026-11-27T00:00"), t("2026-11-27T00:00"))[0].status == "ok"


def test_an_unreachable_catalog_is_reported_and_the_audit_still_runs(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, "postgresql+psycopg://nobody:pw@127.0.0.1:1/none", upgrade=False)
    code, report = audit_json(config)
    catalog_errors = [e["message"] for e in report["errors"] if e["destination"] == "catalog"]
    assert catalog_errors and "nothing was recorded" in catalog_errors[0]
    assert "pw@" not in json.dumps(report)
    assert code == 1  # the verdict on storage stands


def test_deep_verification_is_remembered_and_rotates_with_sample(tree: Tree, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = build_defect_tree(tree, tmp_path, url)
    shares = []
    for _ in range(4):
        _, report = audit_json(config, "--sample", "25")
        shares.append(report["assurance"]["deep_verified"])
    total = report["assurance"]["files"]
    assert shares == sorted(shares) and shares[0] < shares[-1]
    assert shares[-1] == total - 2  # every file but the two that cannot be read past their first bytes



KILLED_IN_AN_UPGRADE = """
import os, sys
from alembic import op
op.create_index = lambda *args, **kwargs: os._exit(9)  # the process dies in migration 0013, after 0012 and 0013's new column
from auditor.catalog.engine import ensure_schema, make_engine
ensure_schema(make_engine(sys.argv[1]))
"""


def test_a_sqlite_upgrade_cut_short_leaves_the_catalog_as_it_was(tmp_path: Path) -> None:
    """An upgrade killed half-way left the columns it had added and the version where it was (the driver commits each
    schema change as it runs): every start after failed on `duplicate column name`. The upgrade is all or nothing."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(make_engine(url), "0011")
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_AN_UPGRADE, url], capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == 9, killed.stderr
    engine = make_engine(url)
    assert schema_state(engine)[0] == "0011"
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("audits")} | {c["name"] for c in inspect(conn).get_columns("alert_episodes")}
    assert not columns & {"sample_key", "seen_at"}, columns
    ensure_schema(engine)  # the next start upgrades it
    assert schema_state(engine) == ("0015", "0015")


def test_a_catalog_stamped_0009_by_its_first_version_gets_the_columns_0009_gained_later(tree: Tree, tmp_path: Path) -> None:
    """Migration 0009 gained three columns after it first shipped: a catalog stamped 0009 by that version upgraded to
    the head without them, and no audit could be recorded after ("no such column")."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'early.db'}"
    upgrade(make_engine(url), "0014")
    raw = sqlite3.connect(tmp_path / "early.db")
    for table, column in (("windows", "deep_files"), ("windows", "oldest_deep_at"), ("exports", "runs_joined")):
        raw.execute(f"ALTER TABLE {table} DROP COLUMN {column}")  # as 0009's first version left them
    raw.commit()
    raw.close()
    ensure_schema(make_engine(url))
    assert schema_state(make_engine(url)) == ("0015", "0015")
    config = build_defect_tree(tree, tmp_path, url)
    _code, report = audit_json(config)
    assert not [e for e in report["errors"] if e["destination"] == "catalog"] and open_catalog(url).audit_count() == 1, report["errors"]
