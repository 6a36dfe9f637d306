"""The command line as a user runs it: restore, report formats, scan, windows, errors, demo."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from auditor.cli import main
from tests.conftest import Tree
from tests.integration.test_audit_tree import PROFILES, SNAPSHOT, STRANGER, WEB, build_defect_tree


@pytest.fixture
def config(tree: Tree, tmp_path: Path) -> Path:
    return build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defect tree after one audit as of 2026-11-28T12:00: restore lookups answer from its catalog.
    Built and audited once for the module: the restore tests only read the catalog and the tree."""
    root = tmp_path_factory.mktemp("audited")
    (root / "exports").mkdir()
    config = build_defect_tree(Tree(root / "exports"), root, f"sqlite:///{root / 'c.db'}")
    code, _ = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json")
    assert code == 1
    return config


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def test_restore_before_the_break_lists_the_whole_chain(audited: Path) -> None:
    tree = Tree(audited.parent / "exports")
    code, out = run("restore", WEB, "--at", "2026-11-27T05:00:00Z", "--format", "json", "--config", str(audited))
    plan = json.loads(out)
    assert code == 0
    assert plan["complete"] is True and plan["broken"] is None
    assert [step["scheduled"] for step in plan["chain"]] == ["2026-11-27T00:00:00Z", "2026-11-27T03:00:00Z"]
    files = [f for step in plan["chain"] for f in step["files"]]
    assert len(files) == 4
    for item in files:
        path = Path(item["url"].removeprefix("file://"))
        assert path.stat().st_size == item["size"]
        assert "/exportTime=20261127" in item["url"] and item["url"].startswith(tree.url)


def test_restore_after_the_break_says_where_and_why(audited: Path) -> None:
    code, out = run("restore", WEB, "--at", "2026-11-28T10:00:00Z", "--format", "json", "--config", str(audited))
    plan = json.loads(out)
    assert code == 1
    assert plan["complete"] is False
    assert plan["broken"]["scheduled"] == "2026-11-27T06:00:00Z" and plan["broken"]["status"] == "missing"
    assert "window.missing" in plan["broken"]["reason"]
    assert plan["restorable_until"] == "2026-11-27T03:00:00Z"


def test_restore_table_names_the_break(audited: Path) -> None:
    code, out = run("restore", WEB, "--at", "2026-11-28T10:00:00Z", "--config", str(audited))
    assert code == 1
    assert "BROKEN" in out and "Chain broken: window 2026-11-27T06:00:00Z is missing" in out


def test_restore_download_copies_and_verifies_every_file(audited: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    code, _ = run("restore", PROFILES, "--at", "2026-11-26T12:00:00Z", "--download", target.as_uri(), "--config", str(audited))
    assert code == 0
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("part-*"))
    assert len(copied) == 6 and all(c.startswith(f"{PROFILES}/exportTime=2026112") for c in copied)
    source = Path(str(audited.parent / "exports"))
    for name in copied:
        assert (target / name).read_bytes() == (source / name).read_bytes()


def test_restore_of_a_one_time_full_export(audited: Path) -> None:
    code, out = run("restore", SNAPSHOT, "--at", "2026-11-28T00:00:00Z", "--format", "json", "--config", str(audited))
    plan = json.loads(out)
    assert code == 0 and plan["mode"] == "one full export" and len(plan["chain"]) == 1


def test_restore_of_an_unconfigured_dataset_is_a_usage_error(config: Path) -> None:
    result = CliRunner().invoke(main, ["restore", STRANGER, "--at", "2026-11-28T00:00:00Z", "--config", str(config)])
    assert result.exit_code == 2 and "no configured export carries dataset" in result.output


def test_csv_report_has_one_row_per_window(config: Path) -> None:
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert len(rows) == 18
    assert {r["status"] for r in rows if r["export"] == "archive"} == {"unknown"}
    missing = next(r for r in rows if r["scheduled"] == "2026-11-27T06:00:00Z")
    assert missing["status"] == "missing" and "window.missing" in missing["findings"]


def test_junit_report_marks_missing_and_invalid_as_failures(config: Path) -> None:
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "junit")
    root = ElementTree.fromstring(out.split("?>", 1)[1])
    assert code == 1
    web = next(s for s in root.iter("testsuite") if s.get("name") == f"web/{WEB}")
    assert (web.get("tests"), web.get("failures"), web.get("skipped")) == ("13", "6", "1")
    assert root.find(".//testsuite[@name='destinations']/testcase/error") is not None


def test_html_report_is_self_contained_evidence(config: Path, tmp_path: Path) -> None:
    output = tmp_path / "evidence.html"
    code, _ = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "html", "--output", str(output))
    page = output.read_text()
    assert code == 1
    assert page.startswith("<!doctype html>") and "http" not in page.split("<body>")[0]
    assert page.count("<script") == 1 and '<script type="application/json" id="report">' in page  # data, never code
    assert page.count('data-scheduled="') == 18
    assert "manifest.size_mismatch" in page and "not_compliant" in page


def test_table_report_shows_the_verdict_and_evidence(config: Path) -> None:
    code, out = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z")
    assert code == 1
    assert "Verdict: not_compliant (exit 1)" in out
    assert "[error] window.missing" in out and "ERROR unreachable" in out


def test_scan_lists_folders_without_validating(config: Path) -> None:
    code, out = run("scan", "--config", str(config), "--format", "json")
    found = json.loads(out)
    assert code == 3  # one destination cannot be listed
    web = [f for f in found["folders"] if f["export"] == "web"]
    assert len(web) == 12  # 13 windows, one missing
    assert any(u["reason"].startswith("unknown dataset") for u in found["unexpected"])


def test_windows_shows_expected_slots_and_recorded_status(config: Path) -> None:
    run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z")
    code, out = run("windows", "web", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 13
    assert rows[2] == {"dataset_id": WEB, "scheduled": "2026-11-27T06:00:00Z", "deadline": "2026-11-27T07:00:00Z", "status": "missing"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["audit", "--config", "/nonexistent/auditor.toml"], "does not exist"),
        (["audit", "--deep", "--sample", "10"], "not both"),
        (["audit", "--as-of", "soonish"], "--as-of"),
        (["windows", "nope"], "no export named 'nope'"),
    ],
)
def test_usage_and_configuration_errors_exit_2(config: Path, args: list[str], message: str) -> None:
    if "--config" not in args:
        args = [*args, "--config", str(config)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_bad_config_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text('[[destinations]]\nname = "d"\nurl = "file:///x"\n[[exports]]\nname = "e"\ndestination = "d"\ndatasets = ["x"]\nformat = "avro"\nschedule = { timeUnit = "day", interval = 1, startTime = 0 }\n')
    result = CliRunner().invoke(main, ["audit", "--config", str(path)])
    assert result.exit_code == 2 and "exports[0].format" in result.output and "'avro'" in result.output


def test_the_demo_runs_end_to_end_from_the_installed_command(tmp_path: Path) -> None:
    command = shutil.which("auditor", path=str(Path(sys.executable).parent))
    assert command, "the auditor entry point is installed with the package"
    done = subprocess.run([command, "demo", "--workspace", str(tmp_path / "demo")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Verdict: not_compliant (exit 1)" in out
    for evidence in ("run.silent_loss", "run.failed", "parquet.bad_magic", "manifest.size_mismatch", "window.late", "| empty"):
        assert evidence in out.replace("│", "|"), evidence
    assert "Alerts that fired (3," in out and "Chain broken" in out
    assert (tmp_path / "demo" / "evidence.html").exists() and (tmp_path / "demo" / "flows.toml").read_text().count("[[exports]]") == 3


def test_the_flows_and_evidence_commands_are_imported_only_when_used() -> None:
    """`auditor audit` does not pay for the Flow Service client or the evidence page's templates; every command is
    still listed and runs."""
    probe = "import sys, auditor.cli; print(sorted(m for m in ('auditor.cli_flows', 'auditor.cli_evidence', 'jinja2') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    code, listing = run("--help")
    assert code == 0 and all(f"  {name} " in listing for name in ("audit", "emulator", "evidence", "flows", "restore", "serve"))
    code, text = run("flows", "--help")
    assert code == 0 and "sync" in text and "create" in text
    code, text = run("evidence", "--help")
    assert code == 0 and "verify" in text
    code, again = run("--help")  # flows and evidence are loaded now: each still listed once
    assert code == 0 and again == listing


def test_an_audit_whose_report_goes_to_a_pipe_does_not_load_the_terminal_library(config: Path) -> None:
    """A scheduled `auditor audit --format json` (stdout and stderr pipes, as cron or CI runs it) draws no table and no
    progress bar: rich, 30 ms of such a process's start, is not imported; the table format still draws with it."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['auditor', 'audit', '--config', {str(config)!r}, '--as-of', '2026-11-28T12:00:00Z', '--format', 'json']\n"
        "try:\n    runpy.run_module('auditor', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'rich'}), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout)["status"] == "not_compliant"
    assert done.stderr.strip().splitlines()[-1] == "1 []"
    code, table = run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z")
    assert code == 1 and "NOT_COMPLIANT" in table
    # standard error closed, as some schedulers start a job: the report is still written (it was an AttributeError)
    closed = subprocess.run(
        ["sh", "-c", '"$@" 2>&-', "sh", sys.executable, "-m", "auditor", "audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert closed.returncode == 1 and json.loads(closed.stdout)["status"] == "not_compliant"


def test_restore_download_refuses_the_audited_folder_and_says_what_else_the_target_holds(config: Path, tmp_path: Path) -> None:
    """`--download` at the destination's own folder emptied a backup file as it opened it; a target reused from an
    earlier download kept files no part of the plan, in silence."""
    assert run("audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json")[0] == 1
    exports = tmp_path / "exports"
    before = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["restore", PROFILES, "--at", "2026-11-26T12:00:00Z", "--download", exports.as_uri(), "--config", str(config)])
    assert result.exit_code == 2 and "never writes to the storage it audits" in " ".join(result.output.split())
    # the same place through a chained or wrapping URL, which the overlap check could not see: it rewrote the backup files
    stamps = {p: p.stat().st_mtime_ns for p in exports.rglob("*") if p.is_file()}
    for chained in (f"simplecache::{exports.as_uri()}", f"simplecache::{exports.as_uri()}/restored", f"dir::{exports}", f"filecache::{exports.as_uri()}"):
        result = CliRunner().invoke(main, ["restore", PROFILES, "--at", "2026-11-26T12:00:00Z", "--download", chained, "--config", str(config)])
        assert result.exit_code == 2 and "not a chained or wrapping one" in " ".join(result.output.split()), (chained, result.output)
    for spelled in (f"file:{exports}", f"file:{exports}/restored"):  # file:/x is /x to fsspec: it emptied a backup file, then removed it
        result = CliRunner().invoke(main, ["restore", PROFILES, "--at", "2026-11-26T12:00:00Z", "--download", spelled, "--config", str(config)])
        assert result.exit_code == 2 and "never writes to the storage it audits" in " ".join(result.output.split()), (spelled, result.output)
    assert {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()} == before
    assert {p: p.stat().st_mtime_ns for p in exports.rglob("*") if p.is_file()} == stamps
    target = tmp_path / "restored"
    (target / "left-over").mkdir(parents=True)
    (target / "left-over" / "part-9.parquet").write_bytes(b"an earlier download")
    result = CliRunner().invoke(main, ["restore", PROFILES, "--at", "2026-11-26T12:00:00Z", "--download", target.as_uri(), "--config", str(config)])
    assert result.exit_code == 0 and "also holds 1 file(s) this restore did not write" in " ".join(result.stderr.split())

