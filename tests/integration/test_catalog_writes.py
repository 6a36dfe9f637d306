"""Bulk catalog writes (issue 10): an audit writes the file rows that changed, and only those, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, event, select

from auditor.audit import AuditOptions, FileRecord, packed
from auditor.catalog.repository import FILES, open_catalog
from auditor.cli import main
from auditor.config import load_settings
from auditor.findings import error, warning
from auditor.report import AuditReport
from tests.conftest import Tree, t, touch
from tests.integration.test_audit_tree import WEB, audit_json, build_defect_tree

_TABLE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)


@contextmanager
def writes() -> Iterator[Counter[str]]:
    """Rows each table was sent by INSERT / UPDATE / DELETE statements (one per parameter set) while inside."""
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        m = _TABLE.match(statement)
        if m is not None:
            seen[m.group(2).lower()] += len(parameters) if executemany else 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def file_rows(url: str) -> dict[str, dict[str, Any]]:
    catalog = open_catalog(url)
    try:
        with catalog.engine.connect() as conn:
            return {row.key: dict(row._mapping) for row in conn.execute(select(FILES))}
    finally:
        catalog.close()


def audit_at(config: Path, as_of: str) -> int:
    return CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", as_of, "--format", "json"], catch_exceptions=False).exit_code


def test_a_re_audit_of_an_unchanged_tree_rewrites_no_file_row(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    before = file_rows(catalog_url)
    assert len(before) > 30 and any(r["findings"] for r in before.values()) and any(r["content"] for r in before.values())

    with writes() as written:
        code, report = audit_json(config)

    assert code == 1
    assert report["assurance"]["files_read"] == 0 and report["assurance"]["bytes_read"] == 0
    assert written["files"] == 0 and written["folders"] == 0
    assert file_rows(catalog_url) == before  # not one column of one row, last_seen included
    with writes() as written:
        assert audit_at(config, "2026-11-28T06:30:00Z") == 1  # historical: learns nothing new about these files
    assert written["files"] == 0
    assert file_rows(catalog_url) == before


def test_only_changed_and_gone_files_are_written(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    before = file_rows(catalog_url)
    changed = tree.root / next(k for k in before if k.startswith(f"{WEB}/exportTime=202611280300/part-"))
    deleted = tree.root / next(k for k in before if k.startswith(f"{WEB}/exportTime=202611280600/part-"))
    kept_bytes, kept_mtime = deleted.read_bytes(), deleted.stat().st_mtime
    tree.rewrite(changed, changed.read_bytes()[:-50])
    deleted.unlink()
    changed_key, deleted_key = str(changed.relative_to(tree.root)), str(deleted.relative_to(tree.root))

    with writes() as written:
        _code, report = audit_json(config)

    assert report["assurance"]["files_read"] == 1
    assert written["files"] == 2  # the changed row, and one statement marking the deleted file gone
    after = file_rows(catalog_url)
    assert after[changed_key]["size"] == before[changed_key]["size"] - 50
    assert after[changed_key]["validated_at"] != before[changed_key]["validated_at"]
    assert after[deleted_key]["gone_at"] is not None
    assert {k: v for k, v in after.items() if k not in (changed_key, deleted_key)} == {k: v for k, v in before.items() if k not in (changed_key, deleted_key)}

    deleted.write_bytes(kept_bytes)  # back, as it was
    touch(deleted, t("2026-11-28T06:10"))
    assert deleted.stat().st_mtime == kept_mtime
    with writes() as written:
        audit_json(config)
    back = file_rows(catalog_url)
    assert written["files"] == 1
    assert back[deleted_key]["gone_at"] is None
    assert open_catalog(catalog_url).known_files("backups")[deleted_key].size == len(kept_bytes)


def test_known_files_reads_back_what_was_recorded(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """Times to the microsecond, findings, manifest content and schema survive the narrow read."""
    config = build_defect_tree(tree, tmp_path, catalog_url)
    audit_json(config)
    catalog = open_catalog(catalog_url)
    known = catalog.known_files("backups")
    manifest = next(r for r in known.values() if r.role == "manifest" and r.content)
    data = next(r for r in known.values() if r.role == "data" and r.records)
    at = t("2026-11-28T12:34") + timedelta(microseconds=123456)
    crafted = FileRecord(
        "extra/exportTime=202611280000/part-0.json.gz", "extra/exportTime=202611280000", "data", 12, '"e1"', at, 2, at, at + timedelta(seconds=1), 7,
        (error("json.bad_line", "u", "line 3 is not JSON"), warning("json.no_final_newline", "u", "no final newline")), None, "schema-x",
    )
    settings = load_settings(config, {})
    report = AuditReport(t("2026-11-28T12:00"), ())
    catalog.record_audit(settings, report, {"backups": [crafted, manifest, data]}, listed={}, started=at, options=AuditOptions(), scope=[])

    again = catalog.known_files("backups")
    assert again[crafted.key] == crafted
    assert again[manifest.key] == manifest and again[data.key] == data
    with writes() as written:  # the same records again: nothing to write
        catalog.record_audit(settings, report, {"backups": [crafted, manifest, data]}, listed={}, started=at, options=AuditOptions(), scope=[])
    assert written["files"] == 0
    catalog.close()


def test_a_manifest_is_written_as_its_json_text_and_read_back_as_the_same_document(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """A manifest's content goes to its JSON column as the text its record holds (compressed, or as text), not parsed and
    serialized again; a dict is serialized; each reads back as the same document (a JSON object in the column, not a JSON
    string holding one)."""
    config = build_defect_tree(tree, tmp_path, catalog_url)
    catalog = open_catalog(catalog_url)
    document = {"flowRunId": "run-1", "scheduledTime": "2026-11-28T00:00:00Z", "exportResults": [{"sinkPath": "/x", "name": "part-0.json.gz", "size": 12}]}
    text = json.dumps(document, separators=(",", ":"))
    at = t("2026-11-28T12:34")
    folder = "m/exportTime=202611280000"

    def manifest(name: str, content: Any) -> FileRecord:
        return FileRecord(f"{folder}/{name}", folder, "manifest", 10, None, at, 3, at, at, None, (), content)

    records = [manifest("packed.json", packed(text)), manifest("text.json", text), manifest("dict.json", document), manifest("none.json", None)]
    catalog.record_audit(load_settings(config, {}), AuditReport(t("2026-11-28T12:00"), ()), {"backups": records}, listed={}, started=at, options=AuditOptions(), scope=[])
    back = catalog.known_files("backups")
    assert [back[r.key].document() for r in records] == [document, document, document, None]
    stored = file_rows(catalog_url)
    assert all(stored[r.key]["content"] == document for r in records[:3])  # a JSON document in the column, not a JSON string of one
    catalog.close()
