"""The acceptance tree of "The audit core": every defect, one audit, exact statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from tests.conftest import Tree, t

WEB = "5ef3e3259ad2a1191ab7dd7d"
PROFILES = "6a1b2c3d4e5f60718293a4b5"
SNAPSHOT = "77aa88bb99cc00dd11ee22ff"
ARCHIVE = "1234567890abcdef12345678"
STRANGER = "0badc0ffee0ddf00d1234567"


def _rewrite_manifest(tree: Tree, manifest: Path, change: Any) -> None:
    body = json.loads(manifest.read_text())
    change(body)
    tree.rewrite(manifest, json.dumps(body).encode())


def _sizes_from_disk(folder: Path) -> Any:
    def change(body: dict[str, Any]) -> None:
        for entry in body["exportResults"]:
            entry["size"] = (folder / entry["name"]).stat().st_size

    return change


def build_defect_tree(tree: Tree, tmp_path: Path, catalog_url: str, *, upgrade: bool = True) -> Path:
    web = {"file_format": "parquet", "compression": "gzip", "manifest": True}
    for slot in ("2026-11-27T00:00", "2026-11-27T03:00", "2026-11-28T03:00", "2026-11-28T06:00", "2026-11-28T09:00"):
        tree.export(WEB, t(slot), **web)
    # 2026-11-27T06:00 missing: nothing written
    tree.export(WEB, t("2026-11-27T09:00"), landed=t("2026-11-27T11:30"), **web)  # late
    truncated = tree.export(WEB, t("2026-11-27T12:00"), **web)
    tree.rewrite(truncated[0], truncated[0].read_bytes()[:-100])
    _rewrite_manifest(tree, truncated[-1], _sizes_from_disk(truncated[0].parent))
    zero = tree.export(WEB, t("2026-11-27T15:00"), **web)
    tree.rewrite(zero[0], b"")
    _rewrite_manifest(tree, zero[-1], _sizes_from_disk(zero[0].parent))
    absent = tree.export(WEB, t("2026-11-27T18:00"), **web)
    absent[1].unlink()
    mismatch = tree.export(WEB, t("2026-11-27T21:00"), **web)
    _rewrite_manifest(tree, mismatch[-1], lambda body: body["exportResults"][0].update(size=body["exportResults"][0]["size"] + 7))
    no_manifest = tree.export(WEB, t("2026-11-28T00:00"), **web)
    no_manifest[-1].unlink()
    partial = tree.export(WEB, t("2026-11-28T12:00"), landed=t("2026-11-28T11:58"), **web)  # in its grace period
    partial[-1].unlink()
    partial[1].unlink()
    tree.put(f"{WEB}/exportTime=202611270300/_SUCCESS", b"", t("2026-11-27T03:10"))  # stray inside a good folder
    tree.export(WEB, t("2026-11-27T01:30"), **web)  # off-schedule
    tree.put(f"{WEB}/exportTime=2026112701/part-00000-x.gz.parquet", b"PAR1", t("2026-11-27T01:10"))  # malformed time
    tree.export(STRANGER, t("2026-11-27T00:00"), manifest=False, parts=1)  # unconfigured dataset
    for day in ("2026-11-25T00:00", "2026-11-26T00:00", "2026-11-27T00:00"):  # the last is at endTime
        tree.export(PROFILES, t(day), file_format="json", compression="gzip", manifest=False, parts=3)
    tree.export(SNAPSHOT, t("2026-11-26T00:00"), file_format="parquet", compression="none", manifest=False, parts=1)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""
[catalog]
url = "{catalog_url}"

[[destinations]]
name = "backups"
url = "{tree.url}"

[[destinations]]
name = "unreachable"
url = "{(tmp_path / 'no-such-folder').as_uri()}"

[[exports]]
name = "web"
destination = "backups"
datasets = ["{WEB}"]
format = "parquet"
compression = "gzip"
manifest = true
grace = "1h"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }}

[[exports]]
name = "profiles"
destination = "backups"
datasets = ["{PROFILES}"]
format = "json"
grace = "PT2H"
schedule = {{ timeUnit = "day", interval = 1, startTime = {int(t("2026-11-25T00:00").timestamp())}, endTime = "2026-11-27T00:00:00Z" }}

[[exports]]
name = "snapshot"
destination = "backups"
datasets = ["{SNAPSHOT}"]
format = "parquet"
compression = "none"
schedule = {{ exportMode = "DAILY_FULL_EXPORT", timeUnit = "day", interval = 0, startTime = "2026-11-26T00:00:00Z" }}

[[exports]]
name = "archive"
destination = "unreachable"
datasets = ["{ARCHIVE}"]
format = "json"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-27T00:00:00Z" }}
"""
    )
    if upgrade and catalog_url.startswith("postgresql"):  # shared catalogs are upgraded on purpose, SQLite by itself
        upgraded = CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)])
        assert upgraded.exit_code == 0, upgraded.output
    return config


def audit_json(config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json", *extra], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def statuses(report: dict[str, Any], name: str) -> dict[str, str]:
    export = next(e for e in report["exports"] if e["name"] == name)
    return {w["scheduled"]: w["status"] for w in export["windows"]}


def codes(report: dict[str, Any], name: str, scheduled: str) -> set[str]:
    export = next(e for e in report["exports"] if e["name"] == name)
    window = next(w for w in export["windows"] if w["scheduled"] == scheduled)
    return {f["code"] for f in window["findings"] if f["severity"] == "error"}


def test_audit_reports_every_defect_window_by_window(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    before = tree.digest()

    code, report = audit_json(config)

    assert code == 1
    assert report["status"] == "not_compliant"
    assert report["as_of"] == "2026-11-28T12:00:00Z"
    assert statuses(report, "web") == {
        "2026-11-27T00:00:00Z": "ok",
        "2026-11-27T03:00:00Z": "ok",
        "2026-11-27T06:00:00Z": "missing",
        "2026-11-27T09:00:00Z": "late",
        "2026-11-27T12:00:00Z": "invalid",
        "2026-11-27T15:00:00Z": "invalid",
        "2026-11-27T18:00:00Z": "invalid",
        "2026-11-27T21:00:00Z": "invalid",
        "2026-11-28T00:00:00Z": "invalid",
        "2026-11-28T03:00:00Z": "ok",
        "2026-11-28T06:00:00Z": "ok",
        "2026-11-28T09:00:00Z": "ok",
        "2026-11-28T12:00:00Z": "pending",
    }
    assert codes(report, "web", "2026-11-27T12:00:00Z") == {"parquet.bad_magic"}
    assert codes(report, "web", "2026-11-27T15:00:00Z") == {"file.empty"}
    assert codes(report, "web", "2026-11-27T18:00:00Z") == {"manifest.file_absent"}
    assert codes(report, "web", "2026-11-27T21:00:00Z") == {"manifest.size_mismatch"}
    assert codes(report, "web", "2026-11-28T00:00:00Z") == {"manifest.missing"}
    assert codes(report, "web", "2026-11-27T06:00:00Z") == {"window.missing"}
    assert statuses(report, "profiles") == {"2026-11-25T00:00:00Z": "ok", "2026-11-26T00:00:00Z": "ok"}
    assert statuses(report, "snapshot") == {"2026-11-26T00:00:00Z": "ok"}
    assert set(statuses(report, "archive").values()) == {"unknown"}
    assert [e["destination"] for e in report["errors"]] == ["unreachable"]

    exports = {e["name"]: e for e in report["exports"]}
    assert exports["web"]["restorable_until"] == "2026-11-27T03:00:00Z"
    assert exports["web"]["rpo_seconds"] == 33 * 3600
    assert exports["web"]["chain_broken_at"] == "2026-11-27T06:00:00Z"
    assert exports["profiles"]["restorable_until"] == "2026-11-26T00:00:00Z"
    assert exports["snapshot"]["restorable_until"] == "2026-11-26T00:00:00Z"
    assert exports["archive"]["restorable_until"] is None

    root = tree.url
    assert {(u["path"], u["reason"].split(" for export")[0]) for u in report["unexpected"]} == {
        (f"{root}/{WEB}/exportTime=202611270300/_SUCCESS", "stray file inside an export folder"),
        (f"{root}/{WEB}/exportTime=202611270130", "off-schedule time"),
        (f"{root}/{WEB}/exportTime=2026112701", "malformed export time '2026112701' in the folder name"),
        (f"{root}/{STRANGER}", f"unknown dataset '{STRANGER}': no configured export covers it"),
        (f"{root}/{PROFILES}/exportTime=202611270000", "at or after the schedule's endTime"),
    }
    web_ok = next(w for w in exports["web"]["windows"] if w["scheduled"] == "2026-11-27T00:00:00Z")
    assert web_ok["files"] == 2 and web_ok["records"] == 30 and web_ok["bytes"] > 0
    assert web_ok["folder"] == f"{root}/{WEB}/exportTime=202611270000"
    profile = exports["profiles"]["windows"][0]
    assert profile["files"] == 3 and profile["records"] is None  # NDJSON is only counted by --deep

    assert tree.digest() == before  # the audit never writes to audited storage


def test_second_audit_of_an_unchanged_tree_reads_no_file_contents(tree: Tree, tmp_path: Path, catalog_url: str) -> None:
    config = build_defect_tree(tree, tmp_path, catalog_url)
    _, first = audit_json(config)
    assert first["assurance"]["bytes_read"] > 0

    code, second = audit_json(config)  # incremental: settled windows are carried from the catalog, the rest listed
    code_swept, swept = audit_json(config, "--full-sweep")  # every file listed again

    assert code == code_swept == 1
    for again in (second, swept):
        assert again["assurance"]["bytes_read"] == 0
        assert again["assurance"]["files_read"] == 0
        assert again["exports"] == first["exports"]
        assert again["assurance"]["files"] == first["assurance"]["files"]
    assert second["method"]["listing"]["backups"]["carried_windows"] > 0
    assert swept["assurance"]["files_unchanged"] == first["assurance"]["files_read"]


def test_a_changed_file_is_read_again_and_its_window_follows(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    audit_json(config)
    folder = tree.root / WEB / "exportTime=202611280300"
    victim = next(folder.glob("part-*"))
    tree.rewrite(victim, victim.read_bytes()[:50])

    _, report = audit_json(config)

    assert statuses(report, "web")["2026-11-28T03:00:00Z"] == "invalid"
    assert report["assurance"]["files_read"] == 1


def test_deep_audit_counts_ndjson_records(tree: Tree, tmp_path: Path) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")

    _, report = audit_json(config, "--deep")

    profiles = next(e for e in report["exports"] if e["name"] == "profiles")
    assert [w["records"] for w in profiles["windows"]] == [30, 30]
    # every file but the truncated and the zero-byte one, which fail before a deep read is possible
    assert report["assurance"]["deep_verified"] == report["assurance"]["files"] - 2


def test_a_root_that_cannot_be_listed_makes_windows_unknown_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""
[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[[destinations]]
name = "gone"
url = "{(tmp_path / 'missing').as_uri()}"
[[exports]]
name = "e"
destination = "gone"
datasets = ["{WEB}"]
format = "parquet"
schedule = {{ timeUnit = "hour", interval = 6, startTime = "2026-11-28T00:00:00Z" }}
"""
    )
    code, report = audit_json(config)

    assert code == 3
    assert report["status"] == "incomplete"
    assert statuses(report, "e") == {"2026-11-28T00:00:00Z": "unknown", "2026-11-28T06:00:00Z": "unknown", "2026-11-28T12:00:00Z": "unknown"}
    assert "does not exist or cannot be listed" in report["errors"][0]["message"]


@pytest.mark.parametrize("as_of, expected", [("2026-11-27T09:30:00Z", "pending"), ("2026-11-27T10:30:00Z", "missing"), ("2026-11-27T12:00:00Z", "late")])
def test_audit_as_of_a_past_time_says_what_was_true_then(tree: Tree, tmp_path: Path, as_of: str, expected: str) -> None:
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", as_of, "--format", "json"])
    report = json.loads(result.stdout)
    assert statuses(report, "web")["2026-11-27T09:00:00Z"] == expected
