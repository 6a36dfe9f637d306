"""What `auditor restore` answers stays what the audit says over time: after a schedule change, a file overwritten in
a settled window, a destination gone away after a window was found missing, a schedule with seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.conftest import Tree, t
from tests.integration.test_ledger import run


def _config(tmp_path: Path, tree: Tree, *, every: int = 3, start: str = "2026-11-27T00:00:00Z", more: str = "") -> Path:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
isolate = false
[[destinations]]
name = "d"
url = "{tree.url}"
[[exports]]
name = "a"
destination = "d"
datasets = ["dsA"]
format = "parquet"
schedule = {{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = {every}, startTime = "{start}" }}
{more}"""
    )
    return config


def _a_and_b_audited(tmp_path: Path, tree: Tree, *, hours: tuple[int, ...], a_manifest: bool = False) -> Path:
    """Exports a (dsA) and b (dsB) to one destination, their windows at `hours` landed, audited as of 08:00."""
    for hour in hours:
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
        tree.export("dsB", t(f"2026-11-27T{hour:02d}:00"))
    more = ("manifest = true\n" if a_manifest else "") + '[[exports]]\nname = "b"\ndestination = "d"\ndatasets = ["dsB"]\nformat = "parquet"\nschedule = { timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }\n'
    config = _config(tmp_path, tree, more=more)
    _audit(config, "2026-11-27T08:00:00Z")
    return config


def _b_sweeps(config: Path) -> None:
    """An audit of export b alone, as of 09:00, that lists the shared destination in full."""
    from auditor.audit import AuditOptions
    from auditor.config import load_settings
    from auditor.runtime import Runtime

    with Runtime(load_settings(config, {})) as runtime:
        runtime.audit(now=t("2026-11-27T09:00"), options=AuditOptions(only_exports=frozenset({"b"}), full_sweep=True))


def _audit(config: Path, as_of: str) -> tuple[int, dict[str, Any]]:
    code, out = run("audit", "--config", str(config), "--as-of", as_of, "--format", "json")
    return code, json.loads(out)


def _restore(config: Path, at: str) -> tuple[int, dict[str, Any]]:
    code, out = run("restore", "dsA", "--at", at, "--format", "json", "--config", str(config))
    return code, json.loads(out)


def test_after_a_new_schedule_restore_walks_the_windows_the_audit_judges(tree: Tree, tmp_path: Path) -> None:
    """Set up again from 12:00 every 6 h, the export's chain starts at 12:00 (its first run, the full export): restore
    walked the old windows and broke at 06:00, which the new schedule has not, while the audit said restorable to 18:00."""
    for hour in (0, 3, 9):  # 06:00 never landed
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    config = _config(tmp_path, tree)
    _audit(config, "2026-11-27T11:00:00Z")
    config = _config(tmp_path, tree, every=6, start="2026-11-27T12:00:00Z")
    for hour in (12, 18):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    code, report = _audit(config, "2026-11-27T20:00:00Z")
    assert code == 0 and report["exports"][0]["restorable_until"] == "2026-11-27T18:00:00Z"
    code, plan = _restore(config, "2026-11-27T19:00:00Z")
    assert code == 0 and plan["complete"] and plan["restorable_until"] == "2026-11-27T18:00:00Z"
    assert [step["scheduled"] for step in plan["chain"]] == ["2026-11-27T12:00:00Z", "2026-11-27T18:00:00Z"]
    assert any("00:00" in note and "06:00" in note and "not in this plan" in note for note in plan["notes"]), plan["notes"]


def test_a_window_of_the_old_schedule_left_pending_holds_no_chain_back(tree: Tree, tmp_path: Path) -> None:
    """09:00 was pending when the schedule went from every 3 h to every 6 h (same start): no audit judges it again,
    and restore held the chain at 06:00 for ever, while the audit said restorable to 18:00."""
    for hour in (0, 3, 6):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    config = _config(tmp_path, tree)
    _audit(config, "2026-11-27T09:30:00Z")
    tree.export("dsA", t("2026-11-27T09:00"), landed=t("2026-11-27T09:50"))
    config = _config(tmp_path, tree, every=6)
    for hour in (12, 18):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    _code, report = _audit(config, "2026-11-27T20:00:00Z")
    assert report["exports"][0]["restorable_until"] == "2026-11-27T18:00:00Z"
    code, plan = _restore(config, "2026-11-27T19:00:00Z")
    assert code == 0 and plan["restorable_until"] == "2026-11-27T18:00:00Z" and plan["pending"] == []
    assert [step["scheduled"][11:16] for step in plan["chain"]] == ["00:00", "06:00", "12:00", "18:00"]
    note = next(note for note in plan["notes"] if "not in this plan" in note)
    assert "03:00" in note and "09:00" in note and "pending" in note


def test_a_file_overwritten_in_a_settled_window_breaks_the_chain(tree: Tree, tmp_path: Path) -> None:
    """A full sweep by an audit of another export finds a file of a's 03:00 window overwritten: restore named the
    file as it was judged (its old size), complete."""
    config = _a_and_b_audited(tmp_path, tree, hours=(0, 3, 6))
    victim = min((tree.root / "dsA/exportTime=202611270300").glob("part-*"))
    tree.put(victim.relative_to(tree.root).as_posix(), b"garbage", t("2026-11-27T08:30"))
    _b_sweeps(config)
    code, plan = _restore(config, "2026-11-27T07:00:00Z")
    assert code == 1 and not plan["complete"] and [step["scheduled"][11:16] for step in plan["chain"]] == ["00:00"]
    assert plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z" and "changed in storage since" in plan["broken"]["reason"]


def test_a_manifest_overwritten_in_a_settled_window_breaks_the_chain(tree: Tree, tmp_path: Path) -> None:
    """A sweep finds the manifest of a's 03:00 window overwritten (another size) and does not read it again: restore
    compared only the data files and answered complete through that window (exit 0)."""
    config = _a_and_b_audited(tmp_path, tree, hours=(0, 3, 6), a_manifest=True)
    victim = next((tree.root / "dsA/exportTime=202611270300").glob("manifest-*"))
    tree.put(victim.relative_to(tree.root).as_posix(), b"{}", t("2026-11-27T08:30"))
    _b_sweeps(config)
    code, plan = _restore(config, "2026-11-27T07:00:00Z")
    assert code == 1 and [step["scheduled"][11:16] for step in plan["chain"]] == ["00:00"], plan["broken"]
    assert plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z" and victim.name in plan["broken"]["reason"]


def test_a_manifest_gone_from_a_settled_window_breaks_the_chain(tree: Tree, tmp_path: Path) -> None:
    """An export with manifests: the manifest of its 03:00 window deleted, seen gone by a sweep of another export;
    restore still answered complete through that window."""
    config = _a_and_b_audited(tmp_path, tree, hours=(0, 3, 6), a_manifest=True)
    next((tree.root / "dsA/exportTime=202611270300").glob("manifest-*")).unlink()
    _b_sweeps(config)
    code, plan = _restore(config, "2026-11-27T07:00:00Z")
    assert code == 1 and [step["scheduled"][11:16] for step in plan["chain"]] == ["00:00"], plan["broken"]
    assert plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z" and "manifest has gone" in plan["broken"]["reason"]
    code, report = _audit(config, "2026-11-27T10:00:00Z")  # a's own audit agrees: a good window without its manifest is invalid
    assert code == 1 and report["exports"][0]["restorable_until"] == "2026-11-27T00:00:00Z"


def test_a_window_found_missing_stays_missing_while_the_destination_is_away(tree: Tree, tmp_path: Path) -> None:
    """Restore answers from what the catalog last established: 03:00 was missing; with the destination unreadable
    since, the break is still `missing` (exit 1), not `unknown` (exit 3: the catalog cannot tell)."""
    for hour in (0, 6, 9):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    config = _config(tmp_path, tree)
    _audit(config, "2026-11-27T11:00:00Z")
    os.rename(tree.root, tree.root.with_name("away"))
    code, _report = _audit(config, "2026-11-27T12:00:00Z")
    assert code == 3
    code, plan = _restore(config, "2026-11-27T07:00:00Z")
    assert code == 1 and plan["broken"]["status"] == "missing" and plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z"
    assert "could not be read" in plan["broken"]["reason"]


def test_a_restore_at_a_time_within_the_minute_of_a_window_includes_it(tree: Tree, tmp_path: Path) -> None:
    """Windows are placed to the minute (a folder is named to the minute): with startTime at :30 s, a restore at
    03:00:10 left out the 03:00:30 window that an audit as of 03:00:10 reports."""
    for hour in (0, 3):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    config = _config(tmp_path, tree, start="2026-11-27T00:00:30Z")
    _audit(config, "2026-11-27T11:00:00Z")
    code, plan = _restore(config, "2026-11-27T03:00:10Z")
    assert code == 0 and [step["scheduled"] for step in plan["chain"]] == ["2026-11-27T00:00:30Z", "2026-11-27T03:00:30Z"]


def test_a_file_only_touched_in_a_settled_window_breaks_no_chain(tree: Tree, tmp_path: Path) -> None:
    """A file of a's window with a new modification time and the same bytes (touched, copied onto itself): an audit of
    another export that sweeps the destination leaves it to a's own audits, and restore stays complete."""
    config = _a_and_b_audited(tmp_path, tree, hours=(0, 3))
    touched = min((tree.root / "dsA/exportTime=202611270300").glob("part-*"))
    os.utime(touched, (t("2026-11-27T08:30").timestamp(), t("2026-11-27T08:30").timestamp()))
    _b_sweeps(config)
    code, plan = _restore(config, "2026-11-27T05:00:00Z")
    assert code == 0 and plan["complete"], plan["broken"]


def test_two_exports_of_a_dataset_in_two_formats_sharing_its_folders_restore_each_its_own_files(tree: Tree, tmp_path: Path) -> None:
    """Parquet and JSON exports of dsA land in the same folders: each window is judged with its own format's files,
    and restore compared them with every file of the folder (a chain broken at its first window), and listed the
    other export's files among its own."""
    for hour in (0, 3, 6):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"), manifest=hour == 0)
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"), file_format="json", manifest=hour == 0, flow_run_id="0ac8f3c0-29bd-40aa-82c1-f1b7e0657b19")  # 00:00: a manifest of each export's run
    schedule = '{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }'
    config = _config(tmp_path, tree, more=f'[[exports]]\nname = "b"\ndestination = "d"\ndatasets = ["dsA"]\nformat = "json"\nschedule = {schedule}\n')
    assert _audit(config, "2026-11-27T08:00:00Z")[0] == 0
    for export, ending in (("a", ".parquet"), ("b", ".json.gz")):
        code, out = run("restore", "dsA", "--at", "2026-11-27T07:00:00Z", "--export", export, "--format", "json", "--config", str(config))
        plan = json.loads(out)
        assert code == 0 and plan["complete"], (export, plan["broken"])
        files = [f["key"] for step in plan["chain"] for f in step["files"]]
        assert len(plan["chain"]) == 3 and files and all(key.endswith(ending) for key in files), (export, files)
        assert plan["chain"][0]["run"] is None and not [n for n in plan["notes"] if "several runs" in n], plan["notes"]  # one run of each export


def _two_formats_audited(tmp_path: Path, tree: Tree) -> Path:
    """Export a (Parquet) and b (JSON) of dsA into the same folders, each with its manifest: audited."""
    for hour in (0, 3, 6):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"), file_format="json", flow_run_id=f"0ac8f3c0-29bd-40aa-82c1-f1b7e0657b{hour:02d}")
    schedule = '{ exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }'
    more = f'manifest = true\n[[exports]]\nname = "b"\ndestination = "d"\ndatasets = ["dsA"]\nformat = "json"\nmanifest = true\nschedule = {schedule}\n'
    config = _config(tmp_path, tree, more=more)
    assert _audit(config, "2026-11-27T08:00:00Z")[0] == 0
    return config


def _sweep(config: Path, export: str) -> None:
    from auditor.audit import AuditOptions
    from auditor.config import load_settings
    from auditor.runtime import Runtime

    with Runtime(load_settings(config, {})) as runtime:
        runtime.audit(now=t("2026-11-27T09:00"), options=AuditOptions(only_exports=frozenset({export}), full_sweep=True))


def test_with_two_formats_in_its_folders_a_manifest_gone_still_breaks_the_chain(tree: Tree, tmp_path: Path) -> None:
    """a's manifest of 03:00 deleted, seen by an audit of b: the JSON export's manifest beside it passed for a's, and
    restore answered complete through 03:00 while a's own audit said invalid."""
    config = _two_formats_audited(tmp_path, tree)
    manifest = next(p for p in (tree.root / "dsA/exportTime=202611270300").glob("manifest-*") if "b03" not in p.name)
    manifest.unlink()
    _sweep(config, "b")
    code, out = run("restore", "dsA", "--at", "2026-11-27T07:00:00Z", "--export", "a", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 1 and plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z" and "manifest has gone" in plan["broken"]["reason"], plan["broken"]


def test_a_window_run_twice_into_its_folder_restores_the_files_of_one_run(tree: Tree, tmp_path: Path) -> None:
    """AEP wrote the 00:00 export twice (two manifests, two sets of files): the audit warns; the plan listed every
    file with no word, and applying them all loads the backfill twice. It names the newest run's files now, as its
    manifest lists them, and says which files of the other run it left out."""
    first_run = tree.export("dsA", t("2026-11-27T00:00"))
    second_run = tree.export("dsA", t("2026-11-27T00:00"), seed=1, landed=t("2026-11-27T00:40"))  # its own files and manifest
    tree.export("dsA", t("2026-11-27T03:00"))
    config = _config(tmp_path, tree)
    _audit(config, "2026-11-27T05:00:00Z")
    code, plan = _restore(config, "2026-11-27T04:00:00Z")
    first = plan["chain"][0]
    names = lambda paths: sorted(p.name for p in paths if not p.name.startswith("manifest-"))
    assert code == 0 and [f["key"].rsplit("/", 1)[-1] for f in first["files"]] == names(second_run), first
    assert first["run"]["manifest"].endswith(next(p.name for p in second_run if p.name.startswith("manifest-")))
    assert sorted(u.rsplit("/", 1)[-1] for u in first["run"]["left_out"]) == names(first_run) and first["run"]["runs_in_folder"] == 2
    assert first["run"]["flow_run_id"] and plan["chain"][1]["run"] is None
    assert any("2026-11-27T00:00:00Z (2 runs, 2 files left out)" in note for note in plan["notes"]), plan["notes"]
    code, out = run("restore", "dsA", "--at", "2026-11-27T04:00:00Z", "--config", str(config))
    assert code == 0 and "other run(s) left out" in " ".join(out.split())



def test_restore_refresh_lists_the_settled_windows_again(tree: Tree, tmp_path: Path) -> None:
    """`--refresh` audited incrementally: a file deleted from a settled window was not listed, and restore answered
    complete with the deleted file in the plan. It lists every window of the export now."""
    for hour in (0, 3, 6, 9):
        tree.export("dsA", t(f"2026-11-27T{hour:02d}:00"))
    config = _config(tmp_path, tree, more="manifest = true\n")
    config.write_text(config.read_text().replace('startTime = "2026-11-27T00:00:00Z" }', 'startTime = "2026-11-27T00:00:00Z", endTime = "2026-11-27T12:00:00Z" }'))
    for _ in range(2):
        assert run("audit", "--config", str(config), "--format", "json")[0] == 0  # as of now: every window settled
    victim = min((tree.root / "dsA/exportTime=202611270300").glob("part-*"))
    victim.unlink()
    code, out = run("audit", "--config", str(config), "--format", "json")
    assert json.loads(out)["method"]["listing"]["d"]["mode"] == "incremental"
    code, plan = _restore(config, "2026-11-27T10:00:00Z")
    assert code == 0 and victim.name in json.dumps(plan["chain"])  # what the catalog last established
    code, out = run("restore", "dsA", "--at", "2026-11-27T10:00:00Z", "--refresh", "--format", "json", "--config", str(config))
    plan = json.loads(out)
    assert code == 1 and plan["broken"]["scheduled"] == "2026-11-27T03:00:00Z" and victim.name not in json.dumps(plan["chain"]), plan["broken"]


def test_nothing_to_restore_yet_is_no_broken_chain(tree: Tree, tmp_path: Path) -> None:
    """Before the first window, or with the first (full) window still inside its grace period while the audit says
    compliant, restore said BROKEN and exited 1 (broken): nothing is missing or invalid; it cannot tell yet (3)."""
    tree.export("dsB", t("2026-11-27T00:00"))  # the destination holds something; dsA's 00:00 has not landed yet
    config = _config(tmp_path, tree)
    code, report = _audit(config, "2026-11-27T00:40:00Z")
    assert code == 0 and report["exports"][0]["windows"][0]["status"] == "pending"  # in its grace period: compliant
    for at in ("2026-11-26T12:00:00Z", "2026-11-27T00:20:00Z"):
        code, out = run("restore", "dsA", "--at", at, "--config", str(config))
        assert code == 3 and "NOTHING TO RESTORE YET" in out and "BROKEN" not in out, out


def test_the_dashboard_restore_page_says_what_the_cli_says(tree: Tree, tmp_path: Path) -> None:
    """The dashboard's restore page showed an unverified step as plain `ok`, named no re-run, and had no way to choose
    an export for a dataset two exports carry (the page said "choose one with export=", with no field for it)."""
    from fastapi.testclient import TestClient

    from auditor.config import load_settings
    from auditor.runtime import Runtime
    from auditor.service.app import create_app

    tree.export("dsA", t("2026-11-27T00:00"))
    tree.export("dsA", t("2026-11-27T00:00"), seed=1, landed=t("2026-11-27T00:40"))  # a re-run into the same folder
    tree.export("dsA", t("2026-11-27T03:00"))
    config = _config(tmp_path, tree, more='[[exports]]\nname = "a-copy"\ndestination = "d"\ndatasets = ["dsA"]\nformat = "parquet"\nschedule = { exportMode = "FIRST_FULL_THEN_INCREMENTAL", timeUnit = "hour", interval = 3, startTime = "2026-11-27T00:00:00Z" }\n')
    config.write_text(config.read_text().replace("[catalog]", '[service]\ntokens = [{ name = "r", token = "read-token", role = "read" }]\n\n[catalog]', 1))
    _audit(config, "2026-11-27T05:00:00Z")
    os.rename(tree.root, tree.root.with_name("away"))
    _audit(config, "2026-11-27T05:30:00Z")  # the destination unreadable: the steps are unverified
    with Runtime(load_settings(config, {})) as runtime:
        client = TestClient(create_app(runtime))
        page = client.get("/restore", params={"dataset": "dsA", "at": "2026-11-27T04:00:00Z"}, headers={"Authorization": "Bearer read-token"}).text
        assert '<select name="export"' in page and '<option value="a-copy">' in page and "choose one" in page
        page = client.get("/restore", params={"dataset": "dsA", "at": "2026-11-27T04:00:00Z", "export": "a"}, headers={"Authorization": "Bearer read-token"}).text
        assert "COMPLETE" in page and "unverified" in page and "other run(s) left out" in page, page
