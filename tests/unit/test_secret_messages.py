"""No secret in any message: values from references are never echoed in config errors, and names
chosen by others (object keys, dataset IDs) cannot drive the terminal through the table reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_settings, settings_from_mapping
from auditor.errors import ConfigError
from auditor.render import render_report, render_scan
from tests.conftest import Tree, audit_once

SECRET = "the-secret-value-0451"


def base() -> dict[str, Any]:
    return {
        "destinations": [{"name": "b", "url": "file:///tmp/x"}],
        "exports": [{"name": "web", "destination": "b", "datasets": ["ds1"], "format": "json", "schedule": {"timeUnit": "day", "interval": 1, "startTime": 0}}],
    }


def with_value(path: str, value: Any) -> dict[str, Any]:
    data = base()
    target: Any = data
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    target[int(last) if last.isdigit() else last] = value
    return data


CASES = [
    ("service.tokens", "${env:SECRET}", "service.tokens"),  # a list expected: the issue's own example
    ("service.tokens", [{"name": "n", "token": "${env:SECRET}", "role": "sudo"}], "service.tokens[0].role"),
    ("service.tokens", [{"name": "n", "token": "${env:SECRET}", "role": "${env:SECRET}"}], "service.tokens[0].role"),
    ("flow_service", {"client_id": "c", "client_secret": "${env:SECRET}", "org_id": "o", "retries": "${env:SECRET}"}, "flow_service.retries"),
    ("exports.0.destination", "${env:SECRET}", "exports[0].destination"),
    ("exports.0.format", "x-${env:SECRET}", "exports[0].format"),
    ("exports.0.datasets", ["${env:SECRET}", "${env:SECRET}"], "exports[0].datasets"),
    ("exports.0.schedule", {"timeUnit": "day", "interval": 1, "startTime": "${env:SECRET}"}, "exports[0].schedule"),
    ("exports.0.grace", "${file:SECRET_FILE}", "exports[0].grace"),
    ("destinations.0.audit_every", "${env:SECRET}", "destinations[0].audit_every"),
    ("channels", [{"name": "c", "kind": "${env:SECRET}", "url": "${env:SECRET}"}], "channels[0].kind"),
]


@pytest.mark.parametrize("path, value, key", CASES, ids=[c[2] + f"-{i}" for i, c in enumerate(CASES)])
def test_config_errors_name_the_key_but_never_echo_a_referenced_value(tmp_path: Path, path: str, value: Any, key: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    data = json.loads(json.dumps(with_value(path, value)).replace("SECRET_FILE", str(secret_file)))

    with pytest.raises(ConfigError) as raised:
        settings_from_mapping(data, {"SECRET": SECRET})

    message = str(raised.value)
    assert key in message, message
    assert SECRET not in message and SECRET[:12] not in message, message


def test_a_bad_inline_value_is_still_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"exports\[0\]\.format: .*\(got 'csv'\)"):
        settings_from_mapping(with_value("exports.0.format", "csv"), {})


def test_a_config_file_with_a_reference_error_does_not_echo_it(tmp_path: Path) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text('[service]\ntokens = "${env:SECRET}"\n')
    result = CliRunner().invoke(main, ["scan", "--config", str(path)])
    assert result.exit_code == 2 and "service.tokens" in result.output and SECRET not in result.output


HOSTILE = "part-\x1b]0;owned\x07\x1b[2J\x1b[31m\u202egpj.\r\n00000.parquet"


def hostile_tree(tree: Tree, tmp_path: Path) -> Path:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    tree.export("ds1", start, file_format="json", manifest=False)
    tree.put(f"ds1/exportTime=202611250000/{HOSTILE}", b"x", start + timedelta(minutes=5))
    tree.put(f"ds\x1b[8m{HOSTILE}/exportTime=202611250000/part-00000.json.gz", b"x", start + timedelta(minutes=5))
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
isolate = false
[[destinations]]
name = "local"
url = "{tree.url}"
[[exports]]
name = "web"
destination = "local"
datasets = ["ds1"]
format = "json"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-25T00:00:00Z", endTime = "2026-11-26T00:00:00Z" }}
"""
    )
    return config


def assert_terminal_safe(text: str) -> None:
    for char in ("\x1b", "\x07", "\r", "\u202e", "\x9b"):
        assert char not in text, (char, text)
    assert "\\x1b" in text  # shown, escaped


def test_the_table_report_escapes_control_characters_in_object_names(tree: Tree, tmp_path: Path) -> None:
    report = audit_once(load_settings(hostile_tree(tree, tmp_path), {}), now=datetime(2026, 11, 28, tzinfo=UTC))
    assert any("\x1b" in u.path for u in report.unexpected)  # the report keeps the real names ...

    assert_terminal_safe(render_report(report, "table"))  # ... the terminal sees them escaped
    junit = render_report(report, "junit")
    assert "\x1b" not in junit and "\x07" not in junit  # XML 1.0 cannot carry them


def test_auditor_scan_escapes_control_characters_in_object_names(tree: Tree, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["scan", "--config", str(hostile_tree(tree, tmp_path))])
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.stdout)
    assert json.loads(CliRunner().invoke(main, ["scan", "--format", "json", "--config", str(hostile_tree(tree, tmp_path))]).stdout)["unexpected"]


def test_scan_tables_escape_every_cell() -> None:
    folders = [{"export": "e\x1b[1m", "dataset_id": "d\x1b]0;x\x07", "scheduled": "s", "files": 1, "bytes": 2, "manifests": 0}]
    assert_terminal_safe(render_scan(folders, [{"path": "p\x1b[2J", "reason": "r\r"}], "table"))


def test_terminal_safe_keeps_ordinary_text() -> None:
    from auditor.render import terminal_safe

    assert terminal_safe("ds1/exportTime=202611250000/part-00000.json.gz — café") == "ds1/exportTime=202611250000/part-00000.json.gz — café"
