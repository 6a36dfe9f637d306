"""The product page's journey on all six cloud-storage destinations, through the CLI and the emulator
over HTTP: `flows datasets`, `flows create --type T` (a new account, or `--connection ID`), the flow
read back against Adobe's reference IDs, then clock → `flows sync` → `audit`, with injected faults."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from auditor.cli import main
from auditor.emulator.server import running
from auditor.emulator.state import World
from tests import servers
from tests.conftest import HTTP
from tests.storage.conftest import azure_backend, azurite, gcs_backend, gcs_endpoint, moto, s3_backend, sftp_backend, sshd  # noqa: F401 - fixtures

SECRET = "emulator-client-secret-value"
START = datetime(2026, 11, 20, tzinfo=UTC)
FS = "/data/foundation/flowservice"
DATA_LAKE = "23598e46-f560-407b-88d5-ea6207e49db0"
# reference §2.1 (connection spec, dataset flow spec) and §3.3 (target location keys), written out
# here rather than imported, so the test checks the code against the reference
REFERENCE = {
    "s3": ("4fce964d-3f37-408f-9778-e597338a21ee", "269ba276-16fc-47db-92b0-c1049a3c131f", {"bucketName", "path"}, "Access Key"),
    "azure-blob": ("6d6b59bf-fb58-4107-9064-4d246c0e5bb2", "95bd8965-fc8a-4119-b9c3-944c2c2df6d2", {"container", "path"}, "ConnectionString"),
    "adls": ("be2c3209-53bc-47e7-ab25-145db8b873e1", "17be2013-2549-41ce-96e7-a70363bec293", {"path"}, "Azure Service Principal Auth"),
    "dlz": ("10440537-2a7b-4583-ac39-ed38d4b848e8", "cd2fc47e-e838-4f38-a581-8fff2f99b63a", {"path"}, None),
    "gcs": ("c5d93acb-ea8b-4b14-8f53-02138444ae99", "585c15c4-6cbf-4126-8f87-e26bff78b657", {"bucketName", "path"}, "Google Cloud Storage authentication credentials"),
    "sftp": ("36965a81-b1c6-401b-99f8-22508f1e6a26", "354d6aad-4754-46e4-a576-1b384561c440", {"remotePath"}, "SFTP with Password"),
}
DATASET = "5ef3e3259ad2a1191ab7dd7d"
SECRETS = {  # what each type's new account reads from the environment
    "s3": {"AEP_S3_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "AEP_S3_SECRET_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
    "gcs": {"AEP_GCS_ACCESS_KEY_ID": "GOOG1EXAMPLEHMACACCESSKEYID", "AEP_GCS_SECRET_ACCESS_KEY": "bGoa+V7g/yqDXvKRqq+JTFn4uQZbPiQJo4pf9RzJ"},
    "azure-blob": {"AEP_AZURE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=c2VjcmV0LWtleS12YWx1ZQ==;"},
    "adls": {"AEP_ADLS_SERVICE_PRINCIPAL_ID": "00000000-1111-2222-3333-444444444444", "AEP_ADLS_SERVICE_PRINCIPAL_KEY": "sp-key-secret-value"},
    "dlz": {},
    "sftp": {"AEP_SFTP_PASSWORD": "sftp-password-secret-value"},
}
ACCOUNT_ARGS = {
    "s3": ["--bucket", "acme-aep"], "gcs": ["--bucket", "acme-aep"], "azure-blob": ["--container", "acme-aep"],
    "adls": ["--adls-url", "https://acme.dfs.core.windows.net", "--tenant", "acme.onmicrosoft.com"], "dlz": [],
    "sftp": ["--domain", "sftp.acme.example", "--username", "aep"],
}
LOCATION_ARGS = {"s3": ["--bucket", "acme-aep"], "gcs": ["--bucket", "acme-aep"], "azure-blob": ["--container", "acme-aep"], "adls": [], "dlz": [], "sftp": []}


def config_for(tmp_path: Path, base: str, destinations: str = "") -> Path:
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""include = ["flows.toml"]
[catalog]
url = "sqlite:///{tmp_path / 'catalog.db'}"
[flow_service]
base_url = "{base}{FS}"
ims_url = "{base}/ims/token/v3"
client_id = "auditor-test"
client_secret = "${{env:AEP_SECRET}}"
org_id = "TEST@AdobeOrg"
retries = 1
{'dlz_destination = "dlz"' if 'name = "dlz"' in destinations else ""}
[validation]
isolate = false  # checks in this process: the sandbox has tests of its own; six journeys stay quick
{destinations}"""
    )
    (tmp_path / "flows.toml").write_text("")
    return config


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner(env={"AEP_SECRET": SECRET, **(env or {})}).invoke(main, [*args, "--config", str(config)])


def read_back(base: str, kind: str, entity_id: str) -> dict[str, Any]:
    token = HTTP.post(f"{base}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "auditor-test", "client_secret": SECRET, "scope": "openid"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "x-api-key": "auditor-test", "x-gw-ims-org-id": "TEST@AdobeOrg", "x-sandbox-name": "prod"}
    response = HTTP.get(f"{base}{FS}/{kind}/{entity_id}", headers=headers)
    response.raise_for_status()
    return dict(response.json()["items"][0])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[str, World]]:
    world = World("auditor-test", SECRET, dlz_url=(tmp_path / "dlz").as_uri(), now=START)
    with running(world) as base:
        yield base, world


@pytest.mark.parametrize("kind", list(REFERENCE))
def test_create_with_an_existing_connection_gives_the_reference_specs_and_params(kind: str, emulator: tuple[str, World], tmp_path: Path) -> None:
    base, world = emulator
    config = config_for(tmp_path, base)
    spec, flow_spec, location_keys, auth_spec = REFERENCE[kind]
    common = ["--dataset", DATASET, "--path", "acme/aep/web", "--start", "2026-11-20T00:00:00Z"]
    first = cli(config, "flows", "create", "--name", f"{kind} first", "--type", kind, *ACCOUNT_ARGS[kind], *common, env=SECRETS[kind])
    assert first.exit_code == 0, first.output
    for secret in SECRETS[kind].values():
        assert secret not in first.output
        assert all(secret not in json.dumps(c) for c in world.entities["connections"].values())  # never served back
    account = read_back(base, "targetConnections", read_back(base, "flows", first.stdout.strip())["targetConnectionIds"][0])["baseConnectionId"]

    created = cli(config, "flows", "create", "--name", f"{kind} second", "--type", kind, "--connection", account, *LOCATION_ARGS[kind], *common)  # no secrets needed
    assert created.exit_code == 0, created.output
    flow = read_back(base, "flows", created.stdout.strip())
    assert flow["flowSpec"] == {"id": flow_spec, "version": "1.0"}
    source = read_back(base, "sourceConnections", flow["sourceConnectionIds"][0])
    assert source["connectionSpec"] == {"id": DATA_LAKE, "version": "1.0"} and [d["dataSetId"] for d in source["params"]["datasets"]] == [DATASET]
    target = read_back(base, "targetConnections", flow["targetConnectionIds"][0])
    assert target["connectionSpec"] == {"id": spec, "version": "1.0"} and target["baseConnectionId"] == account
    assert set(target["params"]) == location_keys | {"mode", "datasetFileType", "compression", "includeFileManifest"}
    assert target["params"]["mode"] == "Server-to-server" and target["params"]["datasetFileType"] == "PARQUET" and target["params"]["compression"] == "GZIP"
    assert target["params"].get("path", target["params"].get("remotePath")) == "acme/aep/web"
    if "bucketName" in location_keys or "container" in location_keys:
        assert target["params"].get("bucketName", target["params"].get("container")) == "acme-aep"
    connection = read_back(base, "connections", account)
    assert connection["connectionSpec"] == {"id": spec, "version": "1.0"}
    assert (connection.get("auth") or {}).get("specName") == auth_spec
    assert len(world.entities["connections"]) == 1  # the second flow made no account of its own
    flow_of_type = read_back(base, "flows", first.stdout.strip())
    assert flow_of_type["inheritedAttributes"]["targetConnections"][0]["connectionSpec"]["id"] == spec


def test_create_refuses_what_does_not_fit_the_type(emulator: tuple[str, World], tmp_path: Path) -> None:
    base, world = emulator
    config = config_for(tmp_path, base)
    common = ["--dataset", DATASET, "--start", "2026-11-20T00:00:00Z"]
    key = tmp_path / "key.asc"
    key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\nexample\n-----END PGP PUBLIC KEY BLOCK-----\n")
    for args, env, message in [
        (["--type", "gcs", "--path", "x"], SECRETS["gcs"], "--bucket is required"),
        (["--type", "sftp", "--domain", "h", "--username", "u"], SECRETS["sftp"], "--path is required"),
        (["--type", "sftp", "--path", "/x", "--username", "u"], SECRETS["sftp"], "--domain and --username"),
        (["--type", "adls", "--path", "fs/x", "--adls-url", "https://a.dfs.core.windows.net", "--tenant", "t"], {}, "AEP_ADLS_SERVICE_PRINCIPAL_KEY"),
        (["--type", "dlz", "--pgp-public-key", str(key)], {}, "no file encryption"),
        (["--type", "s3", "--bucket", "b", "--connection", "c1", "--domain", "h"], {}, "not with --connection"),
        (["--type", "azure-blob", "--container", "c", "--secret-env", "nope=X"], {}, "PARAM=VAR"),
    ]:
        result = cli(config, "flows", "create", "--name", "x", *args, *common, env=env)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert world.entities["flows"] == {}

    # the encryption key goes on the new account; a secret can come from another variable
    result = cli(config, "flows", "create", "--name", "enc", "--type", "s3", "--bucket", "b", "--pgp-public-key", str(key), "--secret-env", "s3SecretKey=MY_S3_SECRET",
                 *common, env={"AEP_S3_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "MY_S3_SECRET": "other-secret-value"})
    assert result.exit_code == 0, result.output
    (connection,) = world.entities["connections"].values()
    assert connection["encryption"]["specName"] == "File PGP/GPG Encryption" and connection["encryption"]["params"]["encryptionAlgo"] == "PGP/GPG"
    assert world.secrets[connection["id"]]["s3SecretKey"] == "other-secret-value"
    # an account of another type is refused
    wrong = cli(config, "flows", "create", "--name", "w", "--type", "gcs", "--bucket", "b", "--path", "x", "--connection", connection["id"], *common)
    assert wrong.exit_code == 2 and "not Google Cloud Storage" in wrong.output


def test_eligible_datasets_every_page_with_a_name_filter(emulator: tuple[str, World], tmp_path: Path) -> None:
    base, world = emulator
    world.datasets = [{"id": f"{i:024x}", "name": f"{'Web' if i % 3 == 0 else 'CRM'} events {i}", "state": "DRAFT", "fileDescription": {"format": "parquet"}} for i in range(230)]
    config = config_for(tmp_path, base)
    every = cli(config, "flows", "datasets", "--format", "json")
    assert every.exit_code == 0, every.output
    assert len(json.loads(every.stdout)) == 230
    web = cli(config, "flows", "datasets", "--name", "web", "--format", "json")
    assert [d["name"] for d in json.loads(web.stdout)] == [f"Web events {i}" for i in range(0, 230, 3)]
    table = cli(config, "flows", "datasets", "--name", "events 229")
    assert table.exit_code == 0 and "CRM events 229" in table.stdout and "(1)" in table.stdout


# -- end to end on real storage ----------------------------------------------------------------


def destination(kind: str, request: pytest.FixtureRequest, tmp_path: Path, world: World) -> tuple[str, dict[str, Any], list[str], dict[str, str]]:
    """(destination URL, its options, `flows create` args, environment) for one type's export tree."""
    if kind == "dlz":
        (tmp_path / "dlz").mkdir()
        return (tmp_path / "dlz").as_uri(), {}, ["--path", "exports/web"], {}
    if kind == "s3":
        moto_server = request.getfixturevalue("moto")
        world.s3_endpoint = moto_server.endpoint
        b = s3_backend(moto_server)
        bucket = b.write_root.split("/")[0]
        return b.url, b.options, ["--bucket", bucket, "--path", "exports/web"], {"AEP_S3_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "AEP_S3_SECRET_KEY": "testing"}
    if kind == "gcs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        world.gcs_endpoint = endpoint
        b = gcs_backend(endpoint)
        return b.url, b.options, ["--bucket", b.write_root.split("/")[0], "--path", "exports/web"], SECRETS["gcs"]
    if kind in ("azure-blob", "adls"):
        endpoint = request.getfixturevalue("azurite")
        b = azure_backend(endpoint, "az" if kind == "azure-blob" else "abfs")
        container = b.write_root.split("/")[0]
        if kind == "azure-blob":
            return b.url, b.options, ["--container", container, "--path", "exports/web"], {"AEP_AZURE_CONNECTION_STRING": servers.azurite_connection_string(endpoint)}
        world.adls_options = {"connection_string": servers.azurite_connection_string(endpoint)}
        args = ["--path", f"{container}/exports/web", "--adls-url", "https://devstoreaccount1.dfs.core.windows.net", "--tenant", "test.onmicrosoft.com"]
        return b.url, b.options, args, SECRETS["adls"]
    sshd_server = request.getfixturevalue("sshd")
    b = sftp_backend(sshd_server, password=True)
    user = pwd.getpwnam(servers.SFTP_USER)
    os.chown(b.write_root, user.pw_uid, user.pw_gid)  # the export lands as the SFTP user
    args = ["--path", f"{b.write_root}/web", "--domain", "127.0.0.1", "--port", str(sshd_server.port), "--username", servers.SFTP_USER]
    return b.url, b.options, args, {"AEP_SFTP_PASSWORD": servers.SFTP_PASSWORD}


MARKS = {"s3": pytest.mark.s3, "gcs": pytest.mark.gcs, "azure-blob": pytest.mark.azure, "adls": pytest.mark.azure, "sftp": pytest.mark.sftp}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=MARKS[k]) if k in MARKS else k for k in REFERENCE])
def test_create_run_sync_audit_on_each_destination(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Cloud stores stamp an object with the real time it was written, so the flows run on slots
    just behind the real clock: a clean flow's one window lands before its deadline (compliant);
    a second flow's earlier windows get a fault each (missing, invalid) and its last lands clean."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clean, faulty = now - timedelta(minutes=10), now - timedelta(hours=12, minutes=10)
    world = World("auditor-test", SECRET, dlz_url=(tmp_path / "dlz").as_uri(), now=faulty - timedelta(hours=1))
    with running(world) as base:
        url, options, args, env = destination(kind, request, tmp_path, world)
        name = "dlz" if kind == "dlz" else "store"
        config = config_for(tmp_path, base, tomli_w.dumps({"destinations": [{"name": name, "url": url, "options": options}]}))
        auth = ("auditor-test", SECRET)

        def create(flow_name: str, start: datetime, schedule: str, folder_args: list[str]) -> str:
            created = cli(config, "flows", "create", "--name", flow_name, "--type", kind, "--dataset", DATASET, "--format", "parquet", "--schedule", schedule,
                          "--start", start.isoformat(), *folder_args, env=env)
            assert created.exit_code == 0, created.output
            return str(created.stdout.strip())

        def sync_and_audit() -> tuple[int, dict[str, list[tuple[str, str]]]]:
            HTTP.post(f"{base}/emulator/clock", auth=auth, json={"now": now.isoformat()}).raise_for_status()
            synced = cli(config, "flows", "sync", "--output", str(tmp_path / "flows.toml"))
            assert synced.exit_code == 0 and "warning" not in synced.output, synced.output
            audited = cli(config, "audit", "--as-of", datetime.now(UTC).isoformat(), "--format", "json")
            report = json.loads(audited.stdout)
            assert report["errors"] == [] and report["unexpected"] == [], audited.output
            return audited.exit_code, {e["name"]: [(w["scheduled"], w["status"]) for w in e["windows"]] for e in report["exports"]}

        create("clean", clean, "daily", args)
        code, windows = sync_and_audit()
        assert (code, windows) == (0, {"clean": [(iso(clean), "ok")]})

        flow = create("faulty", faulty, "every-6h", [a.removesuffix("/web") + "/faulty" if a.endswith("/web") else a for a in args])
        for slot, fault in ((faulty, "nothing_written"), (faulty + timedelta(hours=6), "corrupt_file")):
            HTTP.post(f"{base}/emulator/faults", auth=auth, json={"flowId": flow, "slot": slot.isoformat(), "kind": fault}).raise_for_status()
        code, windows = sync_and_audit()
    assert code == 1
    assert windows == {
        "clean": [(iso(clean), "ok")],
        "faulty": [(iso(faulty), "missing"), (iso(faulty + timedelta(hours=6)), "invalid"), (iso(faulty + timedelta(hours=12)), "ok")],
    }


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.sftp
def test_an_sftp_account_with_an_ssh_key_writes_with_it(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import base64

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    world = World("auditor-test", SECRET, now=now - timedelta(hours=1))
    sshd_server = request.getfixturevalue("sshd")
    b = sftp_backend(sshd_server)
    user = pwd.getpwnam(servers.SFTP_USER)
    os.chown(b.write_root, user.pw_uid, user.pw_gid)
    key = base64.b64encode(Path(sshd_server.key_file).read_bytes()).decode()
    with running(world) as base:
        config = config_for(tmp_path, base)
        created = cli(config, "flows", "create", "--name", "keyed", "--type", "sftp", "--sftp-auth", "ssh-key", "--domain", "127.0.0.1", "--port", str(sshd_server.port),
                      "--username", servers.SFTP_USER, "--path", f"{b.write_root}/web", "--dataset", DATASET, "--start", (now - timedelta(minutes=5)).isoformat(),
                      env={"AEP_SFTP_SSH_KEY": key})
        assert created.exit_code == 0, created.output
        (connection,) = world.entities["connections"].values()
        assert connection["auth"]["specName"] == "SFTP with SSH Key" and key not in json.dumps(connection)
        HTTP.post(f"{base}/emulator/clock", auth=("auditor-test", SECRET), json={"now": now.isoformat()}).raise_for_status()
    (run,) = world.runs.values()
    assert run["metrics"]["statusSummary"]["status"] == "Success", run["metrics"]["statusSummary"]
    landed = [p for p in b.writer.find(f"{b.write_root}/web")]
    assert len([p for p in landed if "/part-" in p]) == 3 and any("/manifest-" in p for p in landed)
