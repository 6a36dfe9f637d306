"""The Flow Service over time: `flows sync` run again after edits and deletions in AEP, and audits while one flow of
several is gone. An export's name is its identity in the catalog; one flow's trouble is that flow's alone."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.flows.client import FlowsClient
from auditor.flows.setup import create_dataset_export
from tests.conftest import HTTP
from tests.integration.test_flows_e2e import flows_config

DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
START = datetime(2026, 11, 20, tzinfo=UTC)
SECRET = "emulator-client-secret-for-time"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, FlowsClient, Path]]:
    """The emulator, a client of it and a configuration that includes flows.toml (the sync's output)."""
    dlz = tmp_path / "dlz"
    with running(World("auditor-test", SECRET, dlz_url=dlz.as_uri(), now=START)) as base:
        client = FlowsClient(f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id="auditor-test", client_secret=SECRET, org_id="TEST@AdobeOrg")
        yield base, client, flows_config(tmp_path, base)


def flow(client: FlowsClient, name: str, dataset: str) -> str:
    """A dataflow called `name`, as AEP may hold several (made or renamed in its UI): the auditor makes none of a name
    one has, so this one is made under a name of its own and renamed."""
    made = create_dataset_export(
        client, name=f"{name} ({dataset})", connection_spec=DLZ, datasets=[dataset],
        target_params={"path": f"aep/{dataset[:4]}", "datasetFileType": "JSON", "compression": "GZIP", "includeFileManifest": True},
        schedule={"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "hour", "interval": 6, "startTime": int(START.timestamp())},
    )
    client.patch_flow(made, client.flow(made).etag, [{"op": "replace", "path": "/name", "value": name}])
    return made


def control(base: str, route: str, body: dict[str, Any]) -> None:
    HTTP.post(f"{base}/emulator/{route}", auth=("auditor-test", SECRET), json=body).raise_for_status()


def sync(config: Path) -> tuple[int, dict[str, str], str]:
    """(exit code, export name -> flow id as flows.toml holds them, standard error)."""
    result = CliRunner(env={"AEP_SECRET": SECRET}).invoke(main, ["flows", "sync", "--config", str(config), "--output", str(config.parent / "flows.toml")])
    entries = tomllib.loads((config.parent / "flows.toml").read_text())["exports"]
    return result.exit_code, {e["name"]: e["flow_id"] for e in entries}, " ".join(result.stderr.split()) if result.stderr_bytes else ""


def test_an_edit_in_aep_keeps_every_export_its_name(world: tuple[str, FlowsClient, Path]) -> None:
    """Flows "web events" and "Web-Events" both slug to web-events: which got the suffix followed the API's order
    (newest updated first), so an edit of one in AEP swapped the two exports' names, and with them their windows,
    alert episodes and restore answers. A renamed flow keeps its export's name too; a new one takes a free one."""
    base, client, config = world
    a = flow(client, "web events", "aaaaaaaaaaaaaaaaaaaaaaaa")
    control(base, "clock", {"now": (START + timedelta(hours=1)).isoformat()})
    b = flow(client, "Web-Events", "bbbbbbbbbbbbbbbbbbbbbbbb")
    code, first, _ = sync(config)
    assert code == 0 and set(first) == {"web-events", "web-events-2"} and set(first.values()) == {a, b}
    control(base, "clock", {"now": (START + timedelta(hours=2)).isoformat()})
    current = client.flow(a)
    client.patch_flow(a, current.etag, [{"op": "replace", "path": "/scheduleParams", "value": {**current.schedule_params, "endTime": int((START + timedelta(days=60)).timestamp())}}])
    current = client.flow(b)
    client.patch_flow(b, current.etag, [{"op": "replace", "path": "/name", "value": "web events (renamed)"}])
    c = flow(client, "web-events", "cccccccccccccccccccccccc")
    code, second, _ = sync(config)
    assert code == 0 and {k: v for k, v in second.items() if v != c} == first and second["web-events-3"] == c


def test_a_flow_whose_connection_is_gone_keeps_its_export_and_stops_no_other(world: tuple[str, FlowsClient, Path]) -> None:
    """Alpha's target connection deleted in AEP: `flows sync` stopped at it (exit 2) and synced no other flow, the
    new one included. Now alpha keeps the entry the last sync wrote (its windows are still audited), with a warning
    that names it, and the others are synced."""
    _base, client, config = world
    a = flow(client, "alpha", "aaaaaaaaaaaaaaaaaaaaaaaa")
    b = flow(client, "beta", "bbbbbbbbbbbbbbbbbbbbbbbb")
    code, first, _ = sync(config)
    assert code == 0 and first == {"alpha": a, "beta": b}
    g = flow(client, "gamma", "cccccccccccccccccccccccc")
    client.delete("targetConnections", client.flow(a).target_connection_ids[0])
    code, second, warnings = sync(config)
    assert code == 0 and second == {"alpha": a, "beta": b, "gamma": g}, warnings
    assert f"flow {a} (alpha): its connections cannot be read" in warnings and "is kept as the last sync wrote it" in warnings


def test_a_flow_deleted_in_aep_leaves_the_others_judged_with_their_own_runs(world: tuple[str, FlowsClient, Path]) -> None:
    """Alpha deleted in AEP (404) while the configuration still names it: the audit dropped the runs it had read for
    every flow and judged all with the catalog's older runs, so beta's silent loss (its run says 3 files, 2 landed)
    read `ok` and the audit `incomplete` (exit 3). Beta is judged with its own runs now; alpha's error says what
    happened to it."""
    base, client, config = world
    a = flow(client, "alpha", "aaaaaaaaaaaaaaaaaaaaaaaa")
    b = flow(client, "beta", "bbbbbbbbbbbbbbbbbbbbbbbb")
    loss = START + timedelta(days=1, hours=12)
    control(base, "faults", {"flowId": b, "slot": loss.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": "fewer_files"})
    control(base, "clock", {"now": (START + timedelta(days=1)).isoformat()})
    assert sync(config)[0] == 0
    runner = CliRunner(env={"AEP_SECRET": SECRET})
    assert runner.invoke(main, ["audit", "--config", str(config), "--as-of", (START + timedelta(days=1)).isoformat()]).exit_code == 0
    control(base, "clock", {"now": (START + timedelta(days=2)).isoformat()})
    client.delete("flows", a)
    result = runner.invoke(main, ["audit", "--config", str(config), "--as-of", (START + timedelta(days=2)).isoformat(), "--format", "json"])
    report = json.loads(result.stdout)
    window = next(w for e in report["exports"] if e["name"] == "beta" for w in e["windows"] if w["scheduled"] == loss.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert result.exit_code == 1 and window["status"] == "invalid" and "run.silent_loss" in {f["code"] for f in window["findings"]}, window
    [error] = report["errors"]
    assert a in error["message"] and "alpha" in error["message"] and "deleted in AEP?" in error["message"], error


def test_a_long_flow_name_keeps_its_suffixed_export_name(world: tuple[str, FlowsClient, Path]) -> None:
    """Names are cut to 60 characters before a suffix: `<60 characters>-2` was never taken for a name the last sync gave
    (it is no slug of itself), and went back into the suffixing, in flow-id order, with the flows created since."""
    _base, client, config = world
    long_name = "Nightly backup of the web events dataset to the landing zone for compliance"
    first = {flow(client, long_name, f"{i:024x}") for i in (1, 2)}
    code, named, _ = sync(config)
    assert code == 0 and set(named.values()) == first and len(named) == 2 and all(len(n) in (60, 62) for n in named)
    for i in (3, 4, 5, 6):
        flow(client, long_name, f"{i:024x}")
    code, again, _ = sync(config)
    assert code == 0 and {k: v for k, v in again.items() if v in first} == named and len(again) == 6
