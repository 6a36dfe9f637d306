"""Input that other people control, tried as an attacker would (issue 12, items 1 and 2).

Dataflows anyone with AEP rights can edit are data, never configuration references; object keys
anyone with bucket write access can choose never join a window they do not belong to, and never
make a restore write outside its target.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_settings
from auditor.emulator.server import running
from auditor.emulator.state import World
from auditor.errors import StorageError
from auditor.exporter import encode_records, sample_records
from auditor.flows import DATA_LAKE_SOURCE_SPEC, DESTINATIONS
from auditor.ledger import FileState, WindowState
from auditor.restore import RestorePlan, Step, download
from auditor.storage import open_store
from tests import servers
from tests.conftest import HTTP, Tree, missing_server

DLZ = "10440537-2a7b-4583-ac39-ed38d4b848e8"
CLIENT_SECRET = "emulator-client-secret-value"
START = datetime(2026, 11, 20, tzinfo=UTC)
GOOD_DATASET = "5ef3e3259ad2a1191ab7dd7d"
ENV_NAME = "HOSTILE_LOOKUP"
ENV_SECRET = "env-secret-7c41d09e"
FILE_SECRET = "file-secret-b8f2a6c3"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[str, World]]:
    world = World("auditor-test", CLIENT_SECRET, dlz_url=(tmp_path / "dlz").as_uri(), now=START)
    with running(world) as base:
        yield base, world


def create_flow_over_http(base: str, *, name: str, datasets: list[str], params: dict[str, Any], schedule: dict[str, Any]) -> str:
    """Create a DLZ dataset-export flow with plain HTTP calls, as any AEP user could (not through this project)."""
    token = HTTP.post(f"{base}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "auditor-test", "client_secret": CLIENT_SECRET, "scope": "openid"})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}", "x-api-key": "auditor-test", "x-gw-ims-org-id": "TEST@AdobeOrg", "x-sandbox-name": "prod"}
    api = f"{base}/data/foundation/flowservice"

    def post(kind: str, body: dict[str, Any]) -> str:
        response = HTTP.post(f"{api}/{kind}", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    source = post("sourceConnections", {"name": f"{name} source", "connectionSpec": {"id": DATA_LAKE_SOURCE_SPEC, "version": "1.0"},
                                        "params": {"datasets": [{"dataSetId": d, "name": d} for d in datasets]}})
    connection = post("connections", {"name": f"{name} base", "connectionSpec": {"id": DLZ, "version": "1.0"}})
    target = post("targetConnections", {"name": f"{name} target", "baseConnectionId": connection, "connectionSpec": {"id": DLZ, "version": "1.0"},
                                        "params": {"mode": "Server-to-server", "datasetFileType": "PARQUET", "compression": "GZIP", **params}})
    return post("flows", {"name": name, "flowSpec": {"id": DESTINATIONS[DLZ][1], "version": "1.0"}, "sourceConnectionIds": [source],
                          "targetConnectionIds": [target], "transformations": [], "scheduleParams": schedule})


def test_a_hostile_flow_is_refused_by_flows_sync_and_nothing_it_holds_is_ever_resolved(emulator: tuple[str, World], tmp_path: Path) -> None:
    base, _ = emulator
    secret_file = tmp_path / "host-secret"
    secret_file.write_text(FILE_SECRET + "\n")
    daily = {"exportMode": "FIRST_FULL_THEN_INCREMENTAL", "timeUnit": "day", "interval": 1, "startTime": int(START.timestamp())}
    hostile = {
        "env-dataset": create_flow_over_http(base, name="env dataset", datasets=[f"${{env:{ENV_NAME}}}"], params={"path": "aep/a"}, schedule=daily),
        "file-path": create_flow_over_http(base, name="file path", datasets=[GOOD_DATASET], params={"path": f"x-${{file:{secret_file}}}"}, schedule=daily),
        "template": create_flow_over_http(
            base, name="template", datasets=[GOOD_DATASET], params={"path": "aep/t"},
            schedule={**daily, "foldernameTemplate": f"${{env:{ENV_NAME}}}/%DATASET_ID%/exportTime=%EXPORT_TIME%"},
        ),
        "escape": create_flow_over_http(base, name="escape", datasets=[GOOD_DATASET], params={"path": "aep/../../elsewhere"}, schedule=daily),
        "control": create_flow_over_http(base, name="control", datasets=[GOOD_DATASET], params={"path": "aep/\x1b[2Jwiped"}, schedule=daily),
    }
    create_flow_over_http(base, name="web events", datasets=[GOOD_DATASET], params={"path": "aep/web"}, schedule=daily)
    HTTP.post(f"{base}/emulator/clock", auth=("auditor-test", CLIENT_SECRET), json={"now": (START + timedelta(days=2)).isoformat()}).raise_for_status()

    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""include = ["flows.toml"]
[catalog]
url = "sqlite:///{tmp_path / 'catalog.db'}"
[validation]
isolate = false
[flow_service]
base_url = "{base}/data/foundation/flowservice"
ims_url = "{base}/ims/token/v3"
client_id = "auditor-test"
client_secret = "${{env:AEP_SECRET}}"
org_id = "TEST@AdobeOrg"
dlz_destination = "dlz"
retries = 0
[[destinations]]
name = "dlz"
url = "{(tmp_path / 'dlz').as_uri()}"
"""
    )
    synced_file = tmp_path / "flows.toml"
    synced_file.write_text("")
    environ = {"AEP_SECRET": CLIENT_SECRET, ENV_NAME: ENV_SECRET}
    runner = CliRunner(env=environ)
    synced = runner.invoke(main, ["flows", "sync", "--config", str(config), "--output", str(synced_file)])

    assert synced.exit_code == 0, synced.output
    problems = [line for line in synced.output.splitlines() if line.startswith("warning: flow ")]
    for flow_id in hostile.values():
        assert any(flow_id in line and "refused" in line for line in problems), (flow_id, synced.output)
    assert "\x1b" not in synced.output  # the control character is shown escaped, never sent raw
    written = synced_file.read_text()
    assert "${" not in written and ENV_SECRET not in written and FILE_SECRET not in written
    assert [e["name"] for e in tomllib.loads(written)["exports"]] == ["web-events"]

    settings = load_settings(config, environ)
    assert [e.name for e in settings.exports] == ["web-events"]
    assert ENV_SECRET not in repr(settings) and FILE_SECRET not in repr(settings)

    audited = runner.invoke(main, ["audit", "--config", str(config), "--as-of", (START + timedelta(days=2)).isoformat(), "--format", "json"])
    report = json.loads(audited.stdout)
    assert [e["name"] for e in report["exports"]] == ["web-events"]
    assert ENV_SECRET not in audited.output and FILE_SECRET not in audited.output


# -- object keys in a real S3 bucket (moto) -----------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[servers.Moto]:
    try:
        import boto3  # noqa: F401
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError as e:
        missing_server(f"moto, boto3 or s3fs is not installed: {e}")
    with servers.moto_server() as server:
        yield server


@pytest.fixture
def bucket(moto: servers.Moto) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """A fresh bucket: its name, the auditor's storage options, and a boto3 client that writes keys verbatim."""
    import boto3

    name = f"aep-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    yield name, {"endpoint_url": moto.endpoint, "key": "testing", "secret": "testing"}, client


def files_below(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.s3
def test_a_dot_dot_key_in_a_bucket_joins_no_window_and_a_restore_writes_only_below_its_target(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path) -> None:
    name, options, client = bucket
    slot = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    folder = f"exportTime={slot:%Y%m%d%H%M}"
    data = encode_records(sample_records(GOOD_DATASET, slot, 5), file_format="parquet", compression="gzip")
    real = f"aep/prod/{GOOD_DATASET}/{folder}/part-00000-a.gz.parquet"
    hostile = f"aep/../{GOOD_DATASET}/{folder}/part-00001-evil.gz.parquet"  # %SANDBOX_NAME% would match '..'
    for key in (real, hostile):
        client.put_object(Bucket=name, Key=key, Body=data)
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'catalog.db'}"
[validation]
isolate = false
[[destinations]]
name = "backups"
url = "s3://{name}/aep"
options = {{ endpoint_url = "{options['endpoint_url']}", key = "testing", secret = "testing" }}
[[exports]]
name = "web"
destination = "backups"
datasets = ["{GOOD_DATASET}"]
format = "parquet"
folder_template = "%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%"
schedule = {{ exportMode = "DAILY_FULL_EXPORT", timeUnit = "day", interval = 0, startTime = "{slot.isoformat()}" }}
"""
    )
    runner = CliRunner()
    audited = runner.invoke(main, ["audit", "--config", str(config), "--format", "json"])
    report = json.loads(audited.stdout)
    window = report["exports"][0]["windows"][0]
    assert window["status"] in ("ok", "late") and window["files"] == 1, window
    assert {u["path"]: u["reason"] for u in report["unexpected"]} == {f"s3://{name}/{hostile}": "unsafe object key: it has a '..' path segment"}

    out = tmp_path / "out"
    target = out / "restore"
    restored = runner.invoke(main, ["restore", GOOD_DATASET, "--at", datetime.now(UTC).isoformat(), "--config", str(config), "--download", str(target)])
    assert restored.exit_code == 0, restored.output
    assert files_below(out) == [f"restore/prod/{GOOD_DATASET}/{folder}/part-00000-a.gz.parquet"]


def plan_of(keys: list[str], *, bucket_name: str) -> RestorePlan:
    scheduled = datetime(2026, 11, 27, 3, tzinfo=UTC)
    window = WindowState("web", GOOD_DATASET, scheduled, "ok", "ds/exportTime=202611270300", len(keys), 12 * len(keys), None, scheduled, 1)
    files = tuple(FileState(key, f"s3://{bucket_name}/{key}", 12, None, None) for key in keys)
    return RestorePlan("web", "backups", GOOD_DATASET, scheduled, True, (Step(window, f"s3://{bucket_name}/ds/exportTime=202611270300", files),), None, (), None, scheduled, None)


@pytest.mark.s3
@pytest.mark.parametrize("hostile", ["../../outside/part-1.parquet", "ds/exportTime=202611270300/../../../../outside/part-1.parquet", "/tmp/outside/part-1.parquet", "ds//part-1.parquet"])
def test_a_download_refuses_a_key_that_would_leave_its_target_before_writing_anything(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path, hostile: str) -> None:
    """A catalog written before keys were checked may still hold such a key: the download itself refuses it."""
    name, options, client = bucket
    good = "ds/exportTime=202611270300/part-0.parquet"
    for key in (good, hostile):
        client.put_object(Bucket=name, Key=key, Body=b"PAR1....PAR1")
    out = tmp_path / "out"
    target = out / "restore"
    with pytest.raises(StorageError, match="would be written outside") as raised:
        download(plan_of([good, hostile], bucket_name=name), open_store(f"s3://{name}", options), str(target))
    assert repr(hostile) in str(raised.value)
    assert files_below(tmp_path) == []  # not even the good file: every path is checked first


@pytest.mark.s3
def test_a_download_does_not_follow_a_symbolic_link_out_of_its_target(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path) -> None:
    name, options, client = bucket
    key = "ds/exportTime=202611270300/part-0.parquet"
    client.put_object(Bucket=name, Key=key, Body=b"PAR1....PAR1")
    target, elsewhere = tmp_path / "restore", tmp_path / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    (target / "ds").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        download(plan_of([key], bucket_name=name), open_store(f"s3://{name}", options), str(target))
    assert files_below(elsewhere) == []


@pytest.mark.s3
def test_a_download_copies_every_file_of_the_plan_below_its_target(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path) -> None:
    name, options, client = bucket
    keys = ["ds/exportTime=202611270300/part-0.parquet", "ds/exportTime=202611270300/part-1.parquet"]
    for key in keys:
        client.put_object(Bucket=name, Key=key, Body=b"PAR1....PAR1")
    written = download(plan_of(keys, bucket_name=name), open_store(f"s3://{name}", options), (tmp_path / "restore").as_uri())
    assert len(written) == 2 and files_below(tmp_path / "restore") == keys


def test_two_folders_for_one_window_make_it_invalid_with_a_finding_naming_both(tree: Tree, tmp_path: Path) -> None:
    slot = datetime(2026, 11, 27, tzinfo=UTC)
    data = encode_records(sample_records(GOOD_DATASET, slot, 5), file_format="parquet", compression="gzip")
    for day in (slot - timedelta(days=1), slot):
        tree.put(f"prod/{GOOD_DATASET}/exportTime={day:%Y%m%d%H%M}/part-00000-a.gz.parquet", data, day + timedelta(minutes=10))
    tree.put(f"copy/{GOOD_DATASET}/exportTime={slot:%Y%m%d%H%M}/part-00000-b.gz.parquet", data, slot + timedelta(minutes=20))
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'catalog.db'}"
[validation]
isolate = false
[[destinations]]
name = "backups"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "backups"
datasets = ["{GOOD_DATASET}"]
format = "parquet"
folder_template = "%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%"
schedule = {{ timeUnit = "day", interval = 1, startTime = "{(slot - timedelta(days=1)).isoformat()}" }}
"""
    )
    audited = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-27T12:00:00Z", "--format", "json"])
    report = json.loads(audited.stdout)
    first, second = report["exports"][0]["windows"]
    assert first["status"] == "ok" and second["status"] == "invalid" and second["files"] == 1, second
    [finding] = [f for f in second["findings"] if f["code"] == "folder.duplicate_slot"]
    assert finding["severity"] == "error"
    assert f"{tree.url}/copy/{GOOD_DATASET}/exportTime=202611270000" in finding["message"] and f"{tree.url}/prod/{GOOD_DATASET}/exportTime=202611270000" in finding["message"]
    assert [u["reason"].split(":")[0] for u in report["unexpected"]] == ["folder.duplicate_slot"]
    assert report["exports"][0]["restorable_until"] == "2026-11-26T00:00:00Z"  # the chain stops before the contested window
    assert audited.exit_code == 1


@pytest.mark.s3
def test_a_download_refuses_a_file_overwritten_since_the_audit_before_copying_anything(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path) -> None:
    """A file of the plan overwritten with other bytes of the same size (a new ETag): the download copied the new bytes
    under the audited name and said it had restored the plan."""
    name, options, client = bucket
    keys = ["ds/exportTime=202611270300/part-0.parquet", "ds/exportTime=202611270300/part-1.parquet"]
    for key in keys:
        client.put_object(Bucket=name, Key=key, Body=b"PAR1....PAR1")
    store = open_store(f"s3://{name}", options)
    listed = {o.key: o for o in store.list()}
    plan = plan_of(keys, bucket_name=name)
    plan = replace(plan, steps=(replace(plan.steps[0], files=tuple(replace(f, etag=listed[f.key].etag) for f in plan.steps[0].files)),))
    client.put_object(Bucket=name, Key=keys[1], Body=b"PAR1xxxxPAR1")  # same size, other bytes
    with pytest.raises(StorageError, match="changed since the audit"):
        download(plan, store, (tmp_path / "restore").as_uri())
    assert files_below(tmp_path) == []


@pytest.mark.s3
def test_a_download_into_the_audited_storage_is_refused(bucket: tuple[str, dict[str, Any], Any], tmp_path: Path) -> None:
    """A target at the audited destination's root opened each backup file for writing as it read it: the file was
    emptied. A target inside the destination wrote into the audited bucket."""
    name, options, client = bucket
    key = "ds/exportTime=202611270300/part-0.parquet"
    client.put_object(Bucket=name, Key=key, Body=b"PAR1....PAR1")
    store = open_store(f"s3://{name}", options)
    for target in (f"s3://{name}", f"s3://{name}/restore-out", f"s3a://{name}/ds/"):
        with pytest.raises(StorageError, match="never writes to the storage it audits"):
            download(plan_of([key], bucket_name=name), store, target, options=options, audited=[f"s3://{name}"])
    for target in (f"simplecache::s3://{name}", f"simplecache::s3://{name}/restore-out", f"blockcache::s3://{name}/ds"):  # chained: the check could not see it
        with pytest.raises(StorageError, match="not a chained or wrapping one"):
            download(plan_of([key], bucket_name=name), store, target, options=options, audited=[f"s3://{name}"])
    assert client.get_object(Bucket=name, Key=key)["Body"].read() == b"PAR1....PAR1"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]] == [key]
