"""Malformed and out-of-range times at the edges: the CLI exits 2 with a message, the API answers 400."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from auditor.cli import main
from auditor.config import load_settings
from auditor.runtime import Runtime
from auditor.service.app import create_app

TOKEN = "time-inputs-read-token"
BAD = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "²", "9" * 5000, "99999999999999999999999", "nan", "-1"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "exports").mkdir()
    path = tmp_path / "auditor.toml"
    path.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[service]
tokens = [{{ name = "r", token = "{TOKEN}", role = "read" }}]
[[destinations]]
name = "local"
url = "{(tmp_path / 'exports').as_uri()}"
[[exports]]
name = "web"
destination = "local"
datasets = ["ds1"]
format = "json"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "2026-11-25T00:00:00Z" }}
"""
    )
    return path


@pytest.mark.parametrize("value", BAD, ids=range(len(BAD)))
@pytest.mark.parametrize("command", [["audit"], ["restore", "ds1", "--at"]], ids=["audit --as-of", "restore --at"])
def test_the_cli_refuses_a_bad_time_with_exit_2_and_no_traceback(config: Path, command: list[str], value: str) -> None:
    args = [*command, value] if command[0] == "restore" else [*command, "--as-of", value]
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and not isinstance(result.exception, (OverflowError, ValueError))
    assert "Invalid value for --" in result.output, result.output
    assert "9" * 100 not in result.output  # a bounded echo


@pytest.mark.parametrize("value", BAD, ids=range(len(BAD)))
def test_every_api_route_that_takes_a_time_answers_400(config: Path, value: str) -> None:
    with Runtime(load_settings(config, {})) as runtime:
        client = TestClient(create_app(runtime), raise_server_exceptions=False)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answers = [
            client.get("/api/restore", params={"dataset": "ds1", "at": value}, headers=headers),
            client.get("/api/exports/web/windows", params={"start": value}, headers=headers),
            client.get("/api/exports/web/windows", params={"end": value}, headers=headers),
            client.get(f"/api/exports/web/windows/{value}/findings", params={"dataset": "ds1"}, headers=headers),
            client.get(f"/api/exports/web/windows/{value}/history", params={"dataset": "ds1"}, headers=headers),
        ]
    for answer in answers:
        assert answer.status_code == 400, (answer.request.url, answer.status_code, answer.text[:300])
        assert "9" * 100 not in answer.text
