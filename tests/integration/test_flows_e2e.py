"""A simulated week of several flows on the emulator, one fault of each kind; then `flows sync` and
`audit` report exactly the injected faults, window by window, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.flows.client import FlowsClient
from auditor.flows.setup import create_dataset_export
from tests.conftest import HTTP

DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
START = datetime(2026, 11, 20, tzinfo=UTC)
END = datetime(2026, 11, 27, tzinfo=UTC)
SECRET = "emulator-client-secret-value"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[str, World]]:
    world = World("auditor-test", SECRET, dlz_url=(tmp_path / "dlz").as_uri(), now=START)
    with running(world) as base:
        yield base, world


def client_for(base: str) -> FlowsClient:
    return FlowsClient(f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id="auditor-test", client_secret=SECRET, org_id="TEST@AdobeOrg")


def flows_config(tmp_path: Path, base: str) -> Path:
    """A configuration that reads the emulator at `base` (its client secret from $AEP_SECRET), audits its Data Landing
    Zone folder and includes flows.toml (empty until `flows sync` writes it), with a SQLite catalog."""
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""include = ["flows.toml"]
[catalog]
url = "sqlite:///{tmp_path / 'catalog.db'}"
[flow_service]
base_url = "{base}/data/foundation/flowservice"
ims_url = "{base}/ims/token/v3"
client_id = "auditor-test"
client_secret = "${{env:AEP_SECRET}}"
org_id = "TEST@AdobeOrg"
dlz_destination = "dlz"
retries = 1
[[destinations]]
name = "dlz"
url = "{(tmp_path / 'dlz').as_uri()}"
"""
    )
    (tmp_path / "flows.toml").write_text("")
    return config


def iso(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


FAULTS = {
    # (flow, slot): (fault, expected status, expected finding codes)
    ("web-events", "2026-11-21T06:00"): ("no_run", "missing", {"window.missing", "run.none"}),
    ("web-events", "2026-11-22T00:00"): ("failed", "missing", {"window.missing", "run.failed"}),
    ("web-events", "2026-11-22T12:00"): ("nothing_written", "missing", {"window.missing", "run.silent_loss"}),
    ("web-events", "2026-11-23T06:00"): ("fewer_files", "invalid", {"run.silent_loss"}),
    ("web-events", "2026-11-24T00:00"): ("corrupt_file", "invalid", {"parquet.bad_magic", "manifest.size_mismatch"}),
    ("web-events", "2026-11-24T18:00"): ("no_manifest", "invalid", {"manifest.missing"}),
    ("profiles", "2026-11-23T00:00"): ("late_write", "late", {"window.late"}),
    ("profiles", "2026-11-25T00:00"): ("zero_records", "empty", set()),
    ("orders", "2026-11-22T12:00"): ("duplicate_run", "ok", {"manifest.multiple", "run.duplicate"}),
}


def test_a_week_of_flows_with_one_fault_of_each_kind(emulator: tuple[str, World], tmp_path: Path) -> None:
    base, world = emulator
    client = client_for(base)
    flows = {
        "web-events": create_dataset_export(
            client, name="web-events", connection_spec=DLZ, datasets=["5ef3e3259ad2a1191ab7dd7d"],
            target_params={"path": "aep/web", "datasetFileType": "PARQUET", "compression": "GZIP", "includeFileManifest": True},
            schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 6, "startTime": int(START.timestamp())},
        ),
        "profiles": create_dataset_export(
            client, name="profiles", connection_spec=DLZ, datasets=["6a1b2c3d4e5f60718293a4b5"],
            target_params={"path": "aep/profiles", "datasetFileType": "JSON", "compression": "GZIP"},
            schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "day", "interval": 1, "startTime": int(START.timestamp())},
        ),
        "orders": create_dataset_export(
            client, name="orders", connection_spec=DLZ, datasets=["77aa88bb99cc00dd11ee22ff"],
            target_params={"path": "aep/orders", "datasetFileType": "PARQUET", "compression": "NONE", "includeFileManifest": True},
            schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 12, "startTime": int(START.timestamp())},
        ),
    }
    for (flow, slot), (fault, _, _) in FAULTS.items():
        HTTP.post(f"{base}/emulator/faults", auth=("auditor-test", SECRET), json={"flowId": flows[flow], "slot": iso(slot), "kind": fault}).raise_for_status()
    HTTP.post(f"{base}/emulator/clock", auth=("auditor-test", SECRET), json={"now": END.isoformat()}).raise_for_status()

    config = flows_config(tmp_path, base)
    runner = CliRunner(env={"AEP_SECRET": SECRET})
    synced = runner.invoke(main, ["flows", "sync", "--config", str(config), "--output", str(tmp_path / "flows.toml")])
    assert synced.exit_code == 0, synced.output
    assert SECRET not in (tmp_path / "flows.toml").read_text()

    result = runner.invoke(main, ["audit", "--config", str(config), "--as-of", END.isoformat(), "--format", "json"])
    report = json.loads(result.stdout)

    assert result.exit_code == 1, result.output
    assert report["unexpected"] == [] and report["errors"] == []
    seen = {}
    for export in report["exports"]:
        for window in export["windows"]:
            seen[(export["name"], window["scheduled"])] = (window["status"], {f["code"] for f in window["findings"]})
    assert {name for name, _ in seen} == set(flows)
    expected_windows = 7 * 4 + 7 + 7 * 2 + 3  # every slot up to the as-of time, the last of each pending
    assert len(seen) == expected_windows
    for key, (status, codes) in seen.items():
        name, scheduled = key
        injected = FAULTS.get((name, scheduled.removesuffix(":00Z")))
        if injected:
            assert (status, codes) == (injected[1], injected[2]), key
        elif scheduled == "2026-11-27T00:00:00Z":
            assert status == "pending", key
        else:
            assert (status, codes) == ("ok", set()), key
    web = next(e for e in report["exports"] if e["name"] == "web-events")
    assert web["restorable_until"] == "2026-11-21T00:00:00Z"  # the chain breaks at the first missing run
    profiles = next(e for e in report["exports"] if e["name"] == "profiles")
    assert profiles["restorable_until"] == "2026-11-26T00:00:00Z"  # late and empty windows keep the chain whole

    from auditor.catalog.repository import open_catalog

    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    assert sum(len(v) for v in catalog.runs_of(flows.values()).values()) == len(world.runs)

    # the Flow Service goes away: the audit says so, and judges with the runs the catalog kept
    HTTP.post(f"{base}/emulator/throttle", auth=("auditor-test", SECRET), json={"count": 2, "status": 503}).raise_for_status()
    again = runner.invoke(main, ["audit", "--config", str(config), "--as-of", END.isoformat(), "--format", "json"])
    second = json.loads(again.stdout)
    assert [e["destination"] for e in second["errors"]] == ["flow service"]
    assert second["exports"] == report["exports"]
