"""Evidence an external auditor accepts: a self-contained report that states scope and method, a
calendar, and tamper evidence — a report checked against the catalog, a hash chain of audit records."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from auditor.catalog.repository import open_catalog
from auditor.cli import main
from auditor.config import load_settings
from auditor.evidence import canonical
from auditor.evidence_html import embedded_report, render_evidence
from auditor.runtime import Runtime
from tests.conftest import Tree
from tests.integration.test_audit_tree import WEB, build_defect_tree

NOW = "2026-11-28T12:00:00Z"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def audit_page(config: Path, out: Path, as_of: str = NOW) -> Path:
    code, _ = run("audit", "--config", str(config), "--as-of", as_of, "--format", "html", "--output", str(out))
    assert code == 1
    return out


def test_an_evidence_page_states_scope_method_and_its_digest(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    page = audit_page(config, tmp_path / "evidence.html").read_text()
    report = embedded_report(page)
    assert report is not None and report["as_of"] == NOW
    digest = hashlib.sha256(json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert f'id="report-sha256">{digest}<' in page
    assert "web, profiles, snapshot, archive" in page and "2026-11-25T00:00:00Z to 2026-11-28T12:00:00Z" in page  # scope and period
    assert ">quick<" in page and "configuration fingerprint" in page and report["config_fingerprint"] in page
    assert page.count('class="cell missing" data-scheduled') == 1 and "window.missing" in page
    # a destination that could not be listed was presented as swept in full; the files read counted manifests beside data files
    listing = page.split('id="listing">', 1)[1].split("</td>", 1)[0]
    assert "unreachable: <span class=\"bad\">not listed: " in listing and "unreachable: full sweep" not in listing, listing
    assert f"{report['assurance']['files']}; files read in this audit (data files and manifests) {report['assurance']['files_read']}," in page
    assert open_catalog(f"sqlite:///{tmp_path / 'c.db'}").audits(1)[0].report_sha256 == digest


def test_verify_accepts_the_recorded_report_and_names_the_place_of_an_edit(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    page = audit_page(config, tmp_path / "evidence.html")
    assert run("evidence", "verify", str(page), "--config", str(config)) == (0, "VERIFIED: audit 1 as of 2026-11-28T12:00:00Z, report SHA-256 " + _sha(tmp_path) + "\n")

    original = page.read_bytes()
    offset = original.index(b"<h2>Method</h2>") + 5
    page.write_bytes(original[:offset] + b"m" + original[offset + 1 :])  # one byte of the page, outside the report
    code, out = run("evidence", "verify", str(page), "--config", str(config))
    line = original[:offset].count(b"\n") + 1
    assert code == 1 and f"the page was changed at line {line}, column 6 (byte {offset})" in out

    start = original.index(b'"status":"missing"')
    page.write_bytes(original[:start] + b'"status":"ok"' + original[start + len(b'"status":"missing"') :])  # one value inside the report
    code, out = run("evidence", "verify", str(page), "--config", str(config))
    assert code == 1 and "NOT VERIFIED" in out and '.status: this file says "ok", the catalog recorded "missing"' in out

    (tmp_path / "report.json").write_text(CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", NOW, "--format", "json"]).stdout)
    assert run("evidence", "verify", str(tmp_path / "report.json"), "--config", str(config))[0] == 0  # a JSON report verifies too


def _sha(tmp_path: Path) -> str:
    return open_catalog(f"sqlite:///{tmp_path / 'c.db'}").audits(1)[0].report_sha256 or ""


def _raw(catalog_url: str) -> Any:
    """A connection that edits the catalog behind the auditor's back (foreign keys not enforced)."""
    if catalog_url.startswith("sqlite"):
        return sqlite3.connect(catalog_url.removeprefix("sqlite:///"), isolation_level=None)
    engine = create_engine(catalog_url, isolation_level="AUTOCOMMIT")
    conn = engine.connect()
    conn.execute(text("SET session_replication_role = replica"))  # as an attacker with the owner's rights: no FK checks
    return conn


def _edit(conn: Any, statement: str) -> None:
    conn.execute(statement) if isinstance(conn, sqlite3.Connection) else conn.execute(text(statement))


def test_the_chain_names_a_changed_record_a_deleted_record_and_a_changed_report(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    for as_of in ("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", NOW, "2026-11-28T12:30:00Z"):
        assert run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")[0] == 1
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 0 and out.startswith("INTACT: 4 audit records")

    conn = _raw(catalog_url)
    _edit(conn, "UPDATE audits SET status = 'compliant' WHERE id = 2")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and out.splitlines() == [f"BROKEN at audit 2: {_changed(out)}"]
    _edit(conn, "UPDATE audits SET status = 'not_compliant' WHERE id = 2")
    assert run("evidence", "chain", "--config", str(config))[0] == 0

    _edit(conn, "DELETE FROM audits WHERE id = 3")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and out.startswith("BROKEN at audit 4: names ") and "but audit 2 has" in out and "deleted or changed" in out

    blob = open_catalog(catalog_url).engine.connect().execute(text("SELECT report FROM audits WHERE id = 1")).scalar_one()
    import gzip

    forged = gzip.compress(gzip.decompress(blob).replace(b'"missing"', b'"ok"     ', 1))
    if isinstance(conn, sqlite3.Connection):
        conn.execute("UPDATE audits SET report = ? WHERE id = 1", (forged,))
    else:
        conn.execute(text("UPDATE audits SET report = :r WHERE id = 1"), {"r": forged})
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and "BROKEN at audit 1: its stored report was changed" in out
    conn.close()


def test_the_chain_names_the_newest_records_deleted(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """The newest audit deleted: the chain said INTACT, and on SQLite the next audit took its id and linked to the one
    before, hiding the deletion for good."""
    config = build_defect_tree(tree, tmp_path, catalog_url)
    for as_of in ("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", NOW):
        assert run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")[0] == 1
    conn = _raw(catalog_url)
    _edit(conn, "DELETE FROM audits WHERE id = 3")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and "the chain's head is audit 3" in out and "the newest record is audit 2" in out, out
    assert run("audit", "--config", str(config), "--as-of", "2026-11-28T12:30:00Z", "--format", "json")[0] == 1  # the next audit
    code, out = run("evidence", "chain", "--config", str(config))
    newest = int(out.split("BROKEN at audit ")[1].split(":")[0]) if code == 1 else None
    assert code == 1 and newest is not None and newest >= 3 and "a record between them was deleted or changed" in out, out
    conn.close()


def test_the_newest_records_deleted_with_the_head_and_a_forged_report_are_named(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    """Three edits a review made undetected: the newest record deleted with the chain's head row (INTACT); a record's
    errors and unexpected count wiped (INTACT, and /api/audits serves them); a stored report replaced by a compliant
    forgery with its digest column updated (`evidence verify` said VERIFIED for it and for a page of it)."""
    import gzip

    config = build_defect_tree(tree, tmp_path, catalog_url)
    for as_of in ("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", NOW):
        assert run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")[0] == 1
    conn = _raw(catalog_url)
    summary = json.loads(open_catalog(catalog_url).engine.connect().execute(text("SELECT summary FROM audits WHERE id = 3")).scalar_one() or "{}") \
        if catalog_url.startswith("sqlite") else open_catalog(catalog_url).engine.connect().execute(text("SELECT summary FROM audits WHERE id = 3")).scalar_one()
    summary = summary if isinstance(summary, dict) else json.loads(summary)
    assert summary["unexpected"] and summary["errors"]  # the defect tree has both
    wiped = json.dumps({**summary, "unexpected": 0, "errors": []}).replace("'", "''")
    _edit(conn, f"UPDATE audits SET summary = '{wiped}' WHERE id = 3")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and "BROKEN at audit 3: the record says 0 unexpected objects" in out and "the record's errors (0) differ from its report's" in out, out

    blob = open_catalog(catalog_url).engine.connect().execute(text("SELECT report FROM audits WHERE id = 2")).scalar_one()
    forged = json.loads(gzip.decompress(blob))
    forged["status"] = "compliant"
    body = canonical(forged)
    digest = hashlib.sha256(body).hexdigest()
    if isinstance(conn, sqlite3.Connection):
        conn.execute("UPDATE audits SET report = ?, report_sha256 = ? WHERE id = 2", (gzip.compress(body), digest))
    else:
        conn.execute(text("UPDATE audits SET report = :r, report_sha256 = :d WHERE id = 2"), {"r": gzip.compress(body), "d": digest})
    (tmp_path / "forged.json").write_bytes(body)
    (tmp_path / "forged.html").write_text(render_evidence(forged, audit_id=2))
    for forgery in ("forged.json", "forged.html"):
        code, out = run("evidence", "verify", str(tmp_path / forgery), "--config", str(config))
        assert code == 1 and out.startswith("NOT VERIFIED: the report matches what audit 2 stored, but that audit's record does not hold: the record was changed"), out

    _edit(conn, "DELETE FROM audits WHERE id = 3")
    _edit(conn, "DELETE FROM chain_head")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and "the chain's head is missing (the newest record here is audit 2)" in out, out
    conn.close()


def test_the_chain_names_a_report_removed_or_unreadable_and_a_changed_summary(tree: Tree, tmp_path: Path) -> None:
    """A stored report removed (INTACT, and `evidence export` left the audit out) or replaced by bytes that are no gzip
    (a traceback); the bytes read a record serves beside its digest changed (INTACT)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = build_defect_tree(tree, tmp_path, url)
    for as_of in ("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", NOW):
        run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")
    conn = _raw(url)
    _edit(conn, "UPDATE audits SET report = NULL WHERE id = 1")
    conn.execute("UPDATE audits SET report = ? WHERE id = 2", (b"\x00\x01 not gzip",))
    _edit(conn, "UPDATE audits SET bytes_read = bytes_read + 1 WHERE id = 3")
    code, out = run("evidence", "chain", "--config", str(config))
    assert code == 1 and "BROKEN at audit 1: its stored report was removed" in out and "BROKEN at audit 2: its stored report was changed" in out, out
    assert "BROKEN at audit 3: the record says" in out and "bytes were read" in out, out
    code, _ = run("evidence", "export", "--from", "2026-11-28T00:00:00Z", "--to", NOW, "--output", str(tmp_path / "e.zip"), "--config", str(config))
    assert code == 1 and not (tmp_path / "e.zip").exists()  # a report gone is said, not left out of the archive in silence
    conn.close()


def test_an_evidence_page_of_a_report_from_an_earlier_release_renders() -> None:
    """Reports recorded before the method and assurance sections existed made `evidence export` (and the dashboard's
    audit page) fail: 'dict object' has no attribute 'method'."""
    from auditor.evidence_html import render_evidence

    old = {"as_of": NOW, "status": "not_compliant", "exports": [{"name": "web", "dataset_id": WEB, "destination": "d", "restorable_until": None, "rpo_seconds": None,
           "windows": [{"scheduled": "2026-11-28T00:00:00Z", "status": "missing", "folder": None, "files": 0, "bytes": 0, "records": None, "findings": []}]}],
           "unexpected": [], "errors": []}
    page = render_evidence(old, audit_id=7)
    assert embedded_report(page) == old and "missing" in page


def _changed(out: str) -> str:
    assert "the record was changed after it was written" in out
    return out.splitlines()[0].split(": ", 1)[1]


def test_secrets_never_reach_the_fingerprint_or_the_report(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    base = config.read_text()
    secrets = {"TOKEN": "tok-3f9a1c77e2", "HOOK_KEY": "hook-5e0b2d11aa", "HOOK_URL": "http://127.0.0.1:9/hook?token=url-6c1f0e22bb"}
    config.write_text(
        base.replace("[catalog]", '[service]\ntokens = [{ name = "ops", token = "${env:TOKEN}", role = "admin" }]\n\n[catalog]', 1)
        + '\n[[channels]]\nname = "pager"\nkind = "webhook"\nurl = "${env:HOOK_URL}"\nsecret = "${env:HOOK_KEY}"\n'
    )
    code, out = run("audit", "--config", str(config), "--as-of", NOW, "--format", "html", "--output", str(tmp_path / "e.html"), env=secrets)
    assert code == 1
    page = (tmp_path / "e.html").read_text()
    stored = json.dumps(open_catalog(f"sqlite:///{tmp_path / 'c.db'}").audit_report(1))
    for secret in ("tok-3f9a1c77e2", "hook-5e0b2d11aa", "url-6c1f0e22bb"):
        assert secret not in page and secret not in stored and secret not in out

    def fingerprint(environ: dict[str, str]) -> str:
        with Runtime(load_settings(config, environ)) as runtime:
            return runtime.fingerprint()

    first = fingerprint(secrets)
    assert first == fingerprint({**secrets, "TOKEN": "another-token", "HOOK_KEY": "another-key"})  # secrets do not shape it
    config.write_text(config.read_text().replace('grace = "1h"', 'grace = "2h"'))
    assert fingerprint(secrets) != first  # everything else does


def test_evidence_export_keeps_a_period_as_one_archive(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    for as_of in ("2026-11-27T12:00:00Z", "2026-11-28T00:00:00Z", NOW):
        run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")
    archive = tmp_path / "evidence.zip"
    code, _ = run("evidence", "export", "--from", "2026-11-27T18:00:00Z", "--to", NOW, "--output", str(archive), "--config", str(config))
    assert code == 0
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        assert {n.split("/")[1] for n in names if n.startswith("audits/")} == {"00000002", "00000003"}
        sums = dict(line.split("  ")[::-1] for line in z.read("SHA256SUMS").decode().splitlines())
        assert set(sums) == names - {"SHA256SUMS"} and all(hashlib.sha256(z.read(n)).hexdigest() == d for n, d in sums.items())
        chain = json.loads(z.read("chain.json"))
        assert [r["id"] for r in chain] == [2, 3] and chain[1]["prev_sha256"] == chain[0]["record_sha256"]
        assert {"started_at", "finished_at", "status", "deep", "scope", "live_exports"} <= set(chain[0])  # every field its digest covers
        page = tmp_path / "from-archive.html"
        page.write_bytes(z.read("audits/00000003/evidence.html"))
        assert b"window.missing" in z.read("audits/00000003/windows.csv")
    assert run("evidence", "verify", str(page), "--config", str(config))[0] == 0
    code, out = run("evidence", "chain", "--archive", str(archive))  # an external auditor's check: no catalog
    assert code == 0 and out.startswith("INTACT: 2 audit records"), out


def test_an_evidence_export_holds_the_chain_between_its_audits_and_is_checked_without_the_catalog(tree: Tree, tmp_path: Path) -> None:
    """With back-dated audits the period's records are no run of ids: the archive held records whose previous one it did
    not hold, with too few fields to recompute a digest. It holds the chain from its first audit to its last now, and
    `evidence chain --archive` checks it, reports included; a report edited inside the archive is named."""
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    for as_of in ("2026-11-28T00:00:00Z", "2026-11-28T06:00:00Z", "2026-11-27T06:00:00Z", NOW, "2026-11-27T08:00:00Z"):
        run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")
    archive = tmp_path / "november.zip"
    assert run("evidence", "export", "--from", "2026-11-27T00:00:00Z", "--to", "2026-11-27T23:59:00Z", "--output", str(archive), "--config", str(config))[0] == 0
    with zipfile.ZipFile(archive) as z:
        assert [r["id"] for r in json.loads(z.read("chain.json"))] == [3, 4, 5]  # audits 3 and 5, and 4 between them
        contents = {n: z.read(n) for n in z.namelist()}
    code, out = run("evidence", "chain", "--archive", str(archive))
    assert code == 0 and out.startswith("INTACT: 3 audit records"), out
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as z:
        for name, body in contents.items():
            z.writestr(name, body.replace(b'"missing"', b'"ok"', 1) if name == "audits/00000005/report.json" else body)
    code, out = run("evidence", "chain", "--archive", str(forged))
    assert code == 1 and "BROKEN at audit 5: its stored report was changed" in out, out


@pytest.mark.parametrize("where", ["dashboard", "evidence page"])
def test_the_calendar_cells_are_the_catalog_windows_in_a_browser(browser: Any, service: tuple[str, Any], where: str) -> None:  # noqa: F811
    import httpx

    from tests.integration.test_service import ADMIN

    base, settings = service
    started = httpx.post(f"{base}/api/audits", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60).json()
    page = browser.new_page()
    page.goto(f"{base}/login")
    page.fill("#token", ADMIN)
    page.click("#sign-in")
    page.goto(f"{base}/" if where == "dashboard" else f"{base}/audits/{started['audit_id']}")
    cells = page.eval_on_selector_all(
        ".calendar[data-export=web] a.cell", "els => els.map(e => [e.dataset.scheduled, e.dataset.status, e.getAttribute('title')])"
    )
    with Runtime(settings) as runtime:
        windows = runtime.catalog.windows("web", WEB)
    assert sorted((s, st) for s, st, _ in cells) == [(w.scheduled.strftime("%Y-%m-%dT%H:%M:%SZ"), w.status) for w in windows]
    days = page.eval_on_selector_all(".calendar[data-export=web] th.day", "els => els.map(e => e.textContent)")
    assert days == ["11-272026", "11-282026"]  # dates on the axis (month-day over the year)
    times = page.eval_on_selector_all(".calendar[data-export=web] th.time", "els => els.map(e => e.textContent)")
    assert times == [f"{h:02d}:00" for h in range(0, 24, 3)]
    if where == "evidence page":
        missing = next(title for s, st, title in cells if st == "missing")
        assert "window.missing" in missing  # the tooltip carries the evidence
    else:
        page.click(".calendar[data-export=web] a.cell.missing")
        page.click("#judged-by")
        assert page.locator("#verdict").text_content() == "not_compliant"
        from playwright.sync_api import expect

        expect(page.locator("#report-sha256")).to_have_count(1)  # (count() does not wait for the page)
    page.close()


from tests.integration.test_dashboard import browser  # noqa: F401 - the fixtures
from tests.integration.test_service import service  # noqa: F401


def _rewrite(archive: Path, out: Path, change: Any, *, sums: bool = True) -> None:
    """A copy of an evidence export with `change(contents)` applied and, with `sums`, SHA256SUMS made to match."""
    with zipfile.ZipFile(archive) as z:
        contents = {n: z.read(n) for n in z.namelist()}
    change(contents)
    if sums:
        contents["SHA256SUMS"] = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n" for n, b in sorted(contents.items()) if n != "SHA256SUMS").encode()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in contents.items():
            z.writestr(name, body)


def test_an_archive_whose_pages_were_edited_or_whose_report_was_taken_out_is_not_intact(tree: Tree, tmp_path: Path) -> None:
    """The offline check read chain.json and the reports only: pages and tables edited to show missing windows as ok,
    with SHA256SUMS made to match, were INTACT; so was an archive with a not-compliant audit's files taken out."""
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    for as_of in ("2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z", NOW):
        assert run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")[0] == 1
    archive = tmp_path / "e.zip"
    assert run("evidence", "export", "--from", "2026-11-28T00:00:00Z", "--to", NOW, "--output", str(archive), "--config", str(config))[0] == 0
    assert run("evidence", "chain", "--archive", str(archive))[0] == 0

    def green(contents: dict[str, bytes]) -> None:
        contents["audits/00000002/evidence.html"] = contents["audits/00000002/evidence.html"].replace(b'class="cell missing"', b'class="cell ok"')
        contents["audits/00000002/windows.csv"] = contents["audits/00000002/windows.csv"].replace(b",missing,", b",ok,")

    _rewrite(archive, tmp_path / "green.zip", green)
    code, out = run("evidence", "chain", "--archive", str(tmp_path / "green.zip"))
    assert code == 1 and "BROKEN at audit 2: its evidence page (evidence.html) is not its report's" in out, out
    assert "BROKEN at audit 2: its windows table (windows.csv) is not its report's" in out, out
    _rewrite(archive, tmp_path / "sums.zip", green, sums=False)
    code, out = run("evidence", "chain", "--archive", str(tmp_path / "sums.zip"))
    assert code == 1 and "audits/00000002/evidence.html does not match its SHA256SUMS line" in out, out

    def dropped(contents: dict[str, bytes]) -> None:
        for name in ("report.json", "evidence.html", "windows.csv"):
            del contents[f"audits/00000002/{name}"]

    _rewrite(archive, tmp_path / "dropped.zip", dropped)
    code, out = run("evidence", "chain", "--archive", str(tmp_path / "dropped.zip"))
    assert code == 1 and "BROKEN at audit 2: its stored report was removed" in out, out

    def older(contents: dict[str, bytes]) -> None:  # an archive from before period.json: the reports it holds span 1 … 3
        dropped(contents)
        del contents["period.json"]

    _rewrite(archive, tmp_path / "older.zip", older)
    code, out = run("evidence", "chain", "--archive", str(tmp_path / "older.zip"))
    assert code == 1 and "BROKEN at audit 2: its stored report was removed" in out, out

    # a second review: period.json is not digested, so what it says cannot excuse anything
    def period(contents: dict[str, bytes], **changes: Any) -> None:
        contents["period.json"] = json.dumps({**json.loads(contents["period.json"]), **changes}).encode()

    def excused(contents: dict[str, bytes]) -> None:  # the audit named as one recorded without a report
        dropped(contents)
        period(contents, without_report=[2])

    def shrunk(contents: dict[str, bytes]) -> None:  # the period ended before the last audit, whose report is taken out
        for name in ("report.json", "evidence.html", "windows.csv"):
            del contents[f"audits/00000003/{name}"]
        period(contents, to="2026-11-28T11:30:00.000000Z")

    def other_release(contents: dict[str, bytes]) -> None:
        green(contents)
        period(contents, exported_by="0.0.9")

    def no_period(contents: dict[str, bytes]) -> None:
        green(contents)
        del contents["period.json"]

    for unreadable in ("yesterday", None):  # a period that names none excused every report (each date check came out false)
        _rewrite(archive, tmp_path / "changed.zip", lambda contents, when=unreadable: (dropped(contents), period(contents, **{"from": when})))
        code, out = run("evidence", "chain", "--archive", str(tmp_path / "changed.zip"))
        assert code != 0 and "is not an evidence export" in out and "INTACT" not in out, out

    for change, expected in ((excused, "BROKEN at audit 2: its stored report was removed"), (shrunk, "BROKEN at audit 3: period.json does not match the chain records"),
                             (other_release, "BROKEN at audit 2: its evidence page (evidence.html) is not its report's"),
                             (no_period, "BROKEN at audit 2: its windows table (windows.csv) is not its report's")):
        _rewrite(archive, tmp_path / "changed.zip", change)
        code, out = run("evidence", "chain", "--archive", str(tmp_path / "changed.zip"))
        assert code == 1 and expected in out, (change.__name__, out)


def test_a_period_recorded_by_a_release_that_stored_no_reports_exports(tmp_path: Path, tree: Tree) -> None:
    """The previous release stored no reports: `evidence export` of its period was refused ("missing or unreadable"),
    pointing at `evidence chain`, which said INTACT. Its records export with the chain; the archive names them."""
    import shutil

    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    shutil.copy(Path(__file__).parents[1] / "data" / "catalogs" / "release-0003.sqlite", tmp_path / "c.db")
    assert run("db", "upgrade", "--config", str(config))[0] == 0
    old = open_catalog(f"sqlite:///{tmp_path / 'c.db'}").audits(100)
    assert old and all(a.report_sha256 is None for a in old)
    low = min(a.as_of for a in old).strftime("%Y-%m-%dT%H:%M:%SZ")
    high = max(a.as_of for a in old).strftime("%Y-%m-%dT%H:%M:%SZ")
    archive = tmp_path / "old.zip"
    code, out = run("evidence", "export", "--from", low, "--to", high, "--output", str(archive), "--config", str(config))
    assert code == 0, out
    with zipfile.ZipFile(archive) as z:
        assert sorted(json.loads(z.read("period.json"))["without_report"]) == sorted(a.id for a in old)
    code, out = run("evidence", "chain", "--archive", str(archive))
    assert "its stored report was removed" not in out, out
