"""Bulk catalog writes (issue 10): the driver's executemany stores what SQLAlchemy would; a live audit rewrites the
findings of the windows whose findings changed, and only those, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

from auditor.catalog.engine import make_engine, upgrade
from auditor.catalog.repository import DESTINATIONS, FILES, FINDINGS, WINDOWS, _upsert, open_catalog
from tests.conftest import CATALOG_BENCH, Tree, touch
from tests.integration.test_audit_tree import WEB, audit_json, build_defect_tree
from tests.integration.test_catalog_writes import writes


def findings_by_window(url: str) -> dict[tuple[str, datetime], list[tuple[Any, ...]]]:
    catalog = open_catalog(url)
    try:
        with catalog.engine.connect() as conn:
            query = select(WINDOWS.c.dataset_id, WINDOWS.c.scheduled, FINDINGS.c.id, FINDINGS.c.audit_id, FINDINGS.c.code, FINDINGS.c.path, FINDINGS.c.message)
            found: dict[tuple[str, datetime], list[tuple[Any, ...]]] = {}
            for dataset, scheduled, *finding in conn.execute(query.join(WINDOWS, FINDINGS.c.window_id == WINDOWS.c.id).order_by(FINDINGS.c.id)):
                found.setdefault((dataset, scheduled), []).append(tuple(finding))
            return found
    finally:
        catalog.close()


def test_the_bulk_writer_stores_what_sqlalchemy_stores(catalog_url: str) -> None:
    upgrade(make_engine(catalog_url))
    catalog = open_catalog(catalog_url)
    plus_two = timezone(timedelta(hours=2))
    row = {
        "destination_id": 0, "folder_key": "f", "role": "data", "size": 2**40, "etag": None, "modified": datetime(2026, 11, 27, 6, 10, 0, 1, tzinfo=UTC),
        "level": 2, "validated_at": datetime(2026, 11, 27, 6, 10, tzinfo=UTC), "deep_at": None, "records": None,
        "findings": [{"code": "c", "severity": "warning", "path": "p", "message": "m é"}], "content": None, "schema": "s",
        "first_seen": datetime(2026, 11, 27, 8, 0, 0, 999999, tzinfo=plus_two), "last_seen": datetime(1999, 1, 2, tzinfo=UTC), "gone_at": None,
    }
    try:
        with catalog.engine.begin() as conn:
            conn.execute(DESTINATIONS.insert().values(name="d", url="file:///d"))
            destination_id = conn.execute(select(DESTINATIONS.c.id)).scalar_one()
            conn.execute(FILES.insert(), [{**row, "destination_id": destination_id, "key": "by-sqlalchemy"}])
            _upsert(conn, FILES, [{**row, "destination_id": destination_id, "key": "bulk"}], ["destination_id", "key"], ["size"])
            stored = {r[0]: r[1:] for r in conn.exec_driver_sql("SELECT key, folder_key, role, size, etag, modified, level, validated_at, deep_at, records, "
                                                                   "CAST(findings AS TEXT), CAST(content AS TEXT), schema, first_seen, last_seen, gone_at FROM files")}
    finally:
        catalog.close()
    assert stored["bulk"] == stored["by-sqlalchemy"]  # the same text on SQLite ("2026-11-27 08:00:00.999999"), the same instants on PostgreSQL


def test_a_re_audit_of_an_unchanged_tree_rewrites_no_finding(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    before = findings_by_window(catalog_url)
    assert len(before) >= 5 and sum(map(len, before.values())) >= 5

    with writes() as written:
        code, _report = audit_json(config)

    assert code == 1
    assert written["findings"] == 0  # before: every window's findings deleted and inserted again, each audit
    assert findings_by_window(catalog_url) == before  # ids and the audit that found them included


def test_only_the_findings_of_a_changed_window_are_rewritten(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    before = findings_by_window(catalog_url)
    part = next(p for p in sorted((tree.root / WEB / "exportTime=202611280300").iterdir()) if p.name.startswith("part-"))
    kept_bytes, kept_mtime = part.read_bytes(), part.stat().st_mtime
    tree.rewrite(part, kept_bytes[:-50])  # a good window turns bad: it gains findings

    with writes() as written:
        audit_json(config)

    after = findings_by_window(catalog_url)
    window = next(k for k in after if k[0] == WEB and k[1].replace(tzinfo=None) == datetime(2026, 11, 28, 3, 0))
    assert window not in before and after[window]
    assert written["findings"] == len(after[window])  # its findings inserted; no window's deleted
    assert {k: v for k, v in after.items() if k != window} == before

    part.write_bytes(kept_bytes)  # mended: its findings go, one DELETE; nothing else is written
    touch(part, datetime.fromtimestamp(kept_mtime, UTC))
    with writes() as written:
        audit_json(config)
    assert written["findings"] == 1
    assert findings_by_window(catalog_url) == before



def test_the_catalog_bench_meters_the_write_path() -> None:
    """A small run of bench/catalog_bench.py's build alone: the build and an unchanged re-audit, metered (SQLite)."""
    done = subprocess.run(
        [sys.executable, str(CATALOG_BENCH), "--backend", "sqlite", "--files", "300", "--datasets", "2", "--exports", "2", "--per-window", "2", "--build-only", "--reaudit"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    build = next(line for line in done.stdout.splitlines() if line.strip().startswith("build:"))
    again = next(line for line in done.stdout.splitlines() if "re-audit of every export, unchanged:" in line)
    assert "files 300" in build and "findings" in build
    assert "files" not in again.split("rows written")[1] and "findings" not in again  # an unchanged re-audit rewrites neither
