"""`auditor flows …` and `auditor emulator serve` as a user runs them, against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.emulator.server import running
from auditor.emulator.state import World
from tests.servers import free_port

START = datetime(2026, 11, 20, tzinfo=UTC)
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[str, Path, World]]:
    world = World("cid", "client-secret", dlz_url=(tmp_path / "dlz").as_uri(), now=START)
    with running(world) as base:
        config = tmp_path / "auditor.toml"
        config.write_text(
            f"""[flow_service]
base_url = "{base}/data/foundation/flowservice"
ims_url = "{base}/ims/token/v3"
adhoc_url = "{base}/data/core/activation/disflowprovider/adhocrun"
client_id = "cid"
client_secret = "${{env:AEP_SECRET}}"
org_id = "O@AdobeOrg"
retries = 0
"""
        )
        yield base, config, world


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env={"AEP_SECRET": "client-secret", **(env or {})}).invoke(main, [*args, "--config", str(config)])
    return result.exit_code, result.stdout, result.output


def test_create_list_runs_disable_enable_and_trigger(setup: tuple[str, Path, World]) -> None:
    base, config, world = setup
    code, out, both = run(
        config, "flows", "create", "--name", "web events", "--type", "s3", "--dataset", "ds1", "--bucket", "acme-aep", "--path", "aep/web",
        "--schedule", "every-6h", "--start", "2026-11-20T00:00:00Z", env={"AEP_S3_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "AEP_S3_SECRET_KEY": S3_SECRET},
    )
    assert code == 0, both
    flow_id = out.strip()
    assert S3_SECRET not in both
    stored = world.entities["connections"]
    assert all(S3_SECRET not in json.dumps(c) for c in stored.values())  # never served back either

    code, out, _ = run(config, "flows", "list", "--format", "json")
    assert code == 0 and [f["name"] for f in json.loads(out)] == ["web events"]

    # this emulator has no S3 endpoint: the S3 flow's runs fail, and say why
    httpx.post(f"{base}/emulator/clock", auth=("cid", "client-secret"), json={"now": "2026-11-20T12:00:00Z"}).raise_for_status()
    code, out, _ = run(config, "flows", "runs", flow_id, "--format", "json")
    runs = json.loads(out)
    assert code == 0 and len(runs) == 3 and {r["status"] for r in runs} == {"failed"}
    assert all(r["errors"] and r["errors"][0][0] == "ACTIVATION_BATCH-0000-FAILED" for r in runs)

    assert run(config, "flows", "disable", flow_id)[0] == 0
    assert world.entities["flows"][flow_id]["state"] == "disabled"
    assert run(config, "flows", "enable", flow_id)[0] == 0
    assert world.entities["flows"][flow_id]["state"] == "enabled"

    code, out, both = run(config, "flows", "trigger", flow_id)
    assert code == 0 and "undocumented" in both
    assert out.strip() in world.runs


def test_create_refuses_secrets_missing_from_the_environment(setup: tuple[str, Path, World]) -> None:
    _, config, world = setup
    code, _, both = run(config, "flows", "create", "--name", "x", "--type", "s3", "--dataset", "ds1", "--bucket", "b", "--start", "2026-11-20T00:00:00Z")
    assert code == 2 and "AEP_S3_ACCESS_KEY" in both and world.entities["flows"] == {}


def test_flows_commands_without_a_flow_service_section_are_usage_errors(tmp_path: Path) -> None:
    config = tmp_path / "auditor.toml"
    config.write_text("")
    result = CliRunner().invoke(main, ["flows", "list", "--config", str(config)])
    assert result.exit_code == 2 and "[flow_service]" in result.output


def test_wrong_credentials_exit_2_without_echoing_them(setup: tuple[str, Path, World]) -> None:
    _, config, _ = setup
    code, _, both = run(config, "flows", "list", env={"AEP_SECRET": "not-the-secret"})
    assert code == 2 and "401" in both and "not-the-secret" not in both


def test_emulator_serve_from_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "auditor", "emulator", "serve", "--port", str(port), "--client-id", "cid", "--dlz-url", (tmp_path / "dlz").as_uri()],
        env={"EMULATOR_CLIENT_SECRET": "s3cret", "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                token = httpx.post(f"http://127.0.0.1:{port}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "s3cret", "scope": "openid"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert token.status_code == 200 and token.json()["expires_in"] == 86399
        wrong = httpx.post(f"http://127.0.0.1:{port}/ims/token/v3", data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "x", "scope": "openid"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    finally:
        process.terminate()
        process.wait(10)


def test_every_flows_command_closes_its_client(setup: tuple[str, Path, World], monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.flows.client import FlowsClient

    _, config, _ = setup
    opened: list[FlowsClient] = []
    closed: list[FlowsClient] = []
    original_init, original_close = FlowsClient.__init__, FlowsClient.close

    def init(self: FlowsClient, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    def close(self: FlowsClient) -> None:
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(FlowsClient, "__init__", init)
    monkeypatch.setattr(FlowsClient, "close", close)
    env = {"AEP_S3_ACCESS_KEY": "AKIAIOSFODNN7EXAMPLE", "AEP_S3_SECRET_KEY": S3_SECRET}
    code, flow_id, both = run(config, "flows", "create", "--name", "w", "--type", "s3", "--dataset", "ds1", "--bucket", "b", "--start", "2026-11-20T00:00:00Z", env=env)
    assert code == 0, both
    commands = [("flows", "list"), ("flows", "sync"), ("flows", "runs", flow_id.strip()), ("flows", "disable", flow_id.strip()), ("flows", "enable", flow_id.strip()),
                ("flows", "runs", "no-such-flow")]  # the last one fails: its client is closed too
    for command in commands:
        run(config, *command)
    assert len(opened) == len(commands) + 1 and {id(c) for c in closed} == {id(c) for c in opened}
