"""The Flow Service client against the emulator over real HTTP: tokens, etags, throttling, paging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.errors import FlowsError
from auditor.flows.client import FlowsClient
from auditor.flows.setup import create_dataset_export
from tests.conftest import HTTP

DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
START = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    with running(World("cid", "secret", dlz_url=(tmp_path / "dlz").as_uri(), now=START)) as base:
        yield base


def client(base: str, *, secret: str = "secret", sleeps: list[float] | None = None) -> FlowsClient:
    return FlowsClient(
        f"{base}/data/foundation/flowservice", ims_url=f"{base}/ims/token/v3", client_id="cid", client_secret=secret, org_id="O@AdobeOrg",
        sleep=(sleeps.append if sleeps is not None else lambda _: None), backoff=0.01,
    )


def make_flow(c: FlowsClient, name: str = "web") -> str:
    return create_dataset_export(
        c, name=name, connection_spec=DLZ, datasets=["ds1"], target_params={"path": name, "datasetFileType": "JSON", "compression": "GZIP"},
        schedule={"timeUnit": "hour", "interval": 3, "startTime": int(START.timestamp())},
    )


def test_a_token_is_reused_and_renewed_once_on_401(emulator: str) -> None:
    c = client(emulator)
    make_flow(c)
    assert c.token_requests == 1
    HTTP.post(f"{emulator}/emulator/tokens/expire", auth=("cid", "secret")).raise_for_status()
    assert [f.name for f in c.flows()] == ["web"]
    assert c.token_requests == 2


def test_wrong_credentials_are_a_clear_error(emulator: str) -> None:
    with pytest.raises(FlowsError) as raised:
        client(emulator, secret="wrong").flows()
    assert raised.value.status_code == 401 and "invalid client credentials" in str(raised.value)
    assert "wrong" not in str(raised.value)


def test_patch_with_a_stale_etag_is_412_and_the_fresh_one_works(emulator: str) -> None:
    c = client(emulator)
    flow_id = make_flow(c)
    stale = c.flow(flow_id).etag
    fresh = c.patch_flow(flow_id, stale, [{"op": "replace", "path": "/name", "value": "renamed"}])
    with pytest.raises(FlowsError) as raised:
        c.patch_flow(flow_id, stale, [{"op": "replace", "path": "/name", "value": "again"}])
    assert raised.value.status_code == 412 and "does not match the current version" in str(raised.value)
    c.patch_flow(flow_id, fresh, [{"op": "Replace", "path": "/scheduleParams", "value": {"timeUnit": "hour", "interval": 6, "startTime": int(START.timestamp())}}])
    assert c.flow(flow_id).name == "renamed" and c.flow(flow_id).schedule_params["interval"] == 6


def test_429_honours_retry_after_and_5xx_backs_off(emulator: str) -> None:
    sleeps: list[float] = []
    c = client(emulator, sleeps=sleeps)
    make_flow(c)
    HTTP.post(f"{emulator}/emulator/throttle", auth=("cid", "secret"), json={"count": 2, "status": 429, "retryAfter": 7}).raise_for_status()
    HTTP.post(f"{emulator}/emulator/throttle", auth=("cid", "secret"), json={"count": 1, "status": 503}).raise_for_status()
    assert len(c.flows()) == 1
    assert sleeps[:2] == [7.0, 7.0] and len(sleeps) == 3 and sleeps[2] < 1


def test_persistent_5xx_is_a_transient_flows_error(emulator: str) -> None:
    c = client(emulator)
    make_flow(c)
    HTTP.post(f"{emulator}/emulator/throttle", auth=("cid", "secret"), json={"count": 10, "status": 503}).raise_for_status()
    with pytest.raises(FlowsError) as raised:
        c.flows()
    assert raised.value.transient and raised.value.status_code == 503


def test_lists_are_followed_through_every_page(emulator: str) -> None:
    c = client(emulator)
    flow_id = make_flow(c)
    HTTP.post(f"{emulator}/emulator/clock", auth=("cid", "secret"), json={"now": "2026-12-10T00:00:00Z"}).raise_for_status()  # 20 days of 3-hourly runs
    runs = c.runs(flow_id)
    assert len(runs) == 20 * 8 + 1 > 100
    assert len({r.id for r in runs}) == len(runs)
    assert all(r.status == "success" and r.flow_id == flow_id for r in runs)


def test_unknown_entities_are_404_with_adobes_message(emulator: str) -> None:
    with pytest.raises(FlowsError) as raised:
        client(emulator).flow("no-such-flow")
    assert raised.value.status_code == 404 and "flows not found with id = [no-such-flow]" in str(raised.value)


def test_enable_and_disable(emulator: str) -> None:
    c = client(emulator)
    flow_id = make_flow(c)
    c.set_enabled(flow_id, False)
    assert c.flow(flow_id).state == "disabled"
    HTTP.post(f"{emulator}/emulator/clock", auth=("cid", "secret"), json={"now": "2026-11-21T00:00:00Z"}).raise_for_status()
    assert c.runs(flow_id) == []  # a disabled flow does not run
    c.set_enabled(flow_id, True)
    assert c.flow(flow_id).state == "enabled"


def test_connection_and_flow_specs(emulator: str) -> None:
    c = client(emulator)
    spec = c.connection_spec("4fce964d-3f37-408f-9778-e597338a21ee")
    assert spec["name"] == "Amazon S3" and spec["authSpec"][0]["name"] == "Access Key"
    assert c.connection_spec(DLZ)["authSpec"] == []
    assert c.flow_spec("269ba276-16fc-47db-92b0-c1049a3c131f")["targetConnectionSpecIds"] == ["4fce964d-3f37-408f-9778-e597338a21ee"]
    with pytest.raises(FlowsError):
        c.connection_spec("not-a-spec")


def test_a_disabled_flow_and_a_changed_schedule_are_early_warnings(emulator: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from auditor.cli import main

    c = client(emulator)
    flow_id = make_flow(c)
    end = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp())  # within 14 days of the audit
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[flow_service]
base_url = "{emulator}/data/foundation/flowservice"
ims_url = "{emulator}/ims/token/v3"
client_id = "cid"
client_secret = "secret"
org_id = "O@AdobeOrg"
[[destinations]]
name = "dlz"
url = "{(tmp_path / 'dlz').as_uri()}"
[[exports]]
name = "web"
destination = "dlz"
path = "web"
datasets = ["ds1"]
format = "json"
flow_id = "{flow_id}"
schedule = {{ timeUnit = "hour", interval = 3, startTime = {int(START.timestamp())}, endTime = {end} }}
"""
    )
    (tmp_path / "dlz").mkdir()
    c.set_enabled(flow_id, False)
    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-20T01:00:00Z", "--format", "json"])
    warnings = {w["code"] for w in __import__("json").loads(result.stdout)["exports"][0]["warnings"]}
    assert warnings == {"export.ending", "flow.disabled", "flow.schedule_changed"}  # the live flow has no endTime


def test_eligible_datasets_are_read_page_by_page(tmp_path: Path) -> None:
    world = World("cid", "secret", now=START)
    world.datasets = [{"id": f"ds{i:03d}", "name": f"dataset {i}"} for i in range(230)]
    with running(world) as base:
        found = client(base).eligible_datasets()
    assert [d["id"] for d in found] == [f"ds{i:03d}" for i in range(230)]


def stored(base: str, kind: str) -> list[dict[str, Any]]:
    """Every entity of one kind on the emulator, read over HTTP with a token of its own."""
    token = HTTP.post(f"{base}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "secret", "scope": "openid"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "x-api-key": "cid", "x-gw-ims-org-id": "O@AdobeOrg"}
    answer = HTTP.get(f"{base}/data/foundation/flowservice/{kind}", headers=headers)
    answer.raise_for_status()
    return list(answer.json()["items"])


@pytest.mark.parametrize("retries", [4, 0])
def test_a_create_whose_answer_is_lost_is_not_made_twice(emulator: str, retries: int) -> None:
    HTTP.post(f"{emulator}/emulator/lost-answers", auth=("cid", "secret"), json={"count": 4, "status": 500}).raise_for_status()  # every create: stored, then 500
    c = client(emulator)
    c._retries = retries
    flow_id = make_flow(c)
    flows = stored(emulator, "flows")
    assert [f["id"] for f in flows] == [flow_id] and flows[0]["name"] == "web"
    sources, bases, targets = (stored(emulator, k) for k in ("sourceConnections", "connections", "targetConnections"))
    assert (len(sources), len(bases), len(targets)) == (1, 1, 1)
    assert flows[0]["sourceConnectionIds"] == [sources[0]["id"]] and flows[0]["targetConnectionIds"] == [targets[0]["id"]]
    assert targets[0]["baseConnectionId"] == bases[0]["id"]


def test_a_same_named_entity_made_earlier_is_not_taken_for_the_lost_one(emulator: str) -> None:
    c = client(emulator)
    first = make_flow(c)
    c.delete("flows", first)  # (a dataflow of the same name is refused: see below) its connections stay, named as before
    HTTP.post(f"{emulator}/emulator/lost-answers", auth=("cid", "secret"), json={"count": 4}).raise_for_status()
    second = make_flow(c)  # the same names again: the entities found must be the new ones
    assert second != first
    assert [f["id"] for f in stored(emulator, "flows")] == [second]
    assert all(len(stored(emulator, k)) == 2 for k in ("sourceConnections", "connections", "targetConnections"))


def test_the_same_dataflow_asked_for_twice_is_made_once(emulator: str) -> None:
    """A form sent twice (the wizard's create, a browser's back button) or a command run again after a timeout made a
    second complete dataflow, exporting the same datasets to the same place. The second is refused before any call."""
    c = client(emulator)
    first = make_flow(c)
    made = {k: len(stored(emulator, k)) for k in ("sourceConnections", "connections", "targetConnections", "flows")}
    with pytest.raises(FlowsError, match=f"a dataflow named 'web' already exists \\({first}\\): nothing was created"):
        make_flow(c)
    assert {k: len(stored(emulator, k)) for k in made} == made == {"sourceConnections": 1, "connections": 1, "targetConnections": 1, "flows": 1}


def test_a_patch_of_a_nested_member_applies_as_json_patch_says(emulator: str) -> None:
    """The emulator took a patch's path as one top-level member: /scheduleParams/endTime was refused ("scheduleParams
    must be an object") and /scheduleParams/interval with an object replaced the whole scheduleParams."""
    c = client(emulator)
    flow_id = make_flow(c)
    before = c.flow(flow_id)
    end = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    etag = c.patch_flow(flow_id, before.etag, [{"op": "add", "path": "/scheduleParams/endTime", "value": end}])
    after = c.flow(flow_id)
    assert dict(after.schedule_params) == {**before.schedule_params, "endTime": end} and after.etag == etag != before.etag
    for bad in ([{"op": "replace", "path": "/scheduleParams/interval", "value": {"timeUnit": "hour"}}],  # no schedule AEP takes
                [{"op": "replace", "path": "/no/such/member", "value": 1}], [{"op": "remove", "path": "/id"}], [{"op": "test", "path": "/name", "value": "other"}]):
        with pytest.raises(FlowsError) as refused:
            c.patch_flow(flow_id, etag, bad)
        assert refused.value.status_code == 400, bad
    assert dict(c.flow(flow_id).schedule_params) == dict(after.schedule_params)  # nothing of a refused patch applied


def test_lost_answers_control_validates_its_input(emulator: str) -> None:
    for body in ({"count": 0}, {"count": "3"}, {"count": True}, {"status": 404}, {"status": 500.0}, []):
        assert HTTP.post(f"{emulator}/emulator/lost-answers", auth=("cid", "secret"), json=body).status_code == 400, body
    assert HTTP.post(f"{emulator}/emulator/lost-answers", auth=("cid", "secret"), json={"count": 2, "status": 502}).json() == {"queued": 2}
