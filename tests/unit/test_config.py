from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.config import load_settings, resolve_config_path, settings_from_mapping
from auditor.errors import ConfigError


def base() -> dict[str, Any]:
    return {
        "destinations": [{"name": "b", "url": "file:///tmp/x", "options": {"key": "${env:KEY}"}}],
        "exports": [
            {
                "name": "web",
                "destination": "b",
                "datasets": ["ds1"],
                "format": "parquet",
                "schedule": {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-25T00:00:00Z"},
            }
        ],
    }


def test_references_are_resolved_from_env_and_files(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    data = base()
    data["catalog"] = {"url": f"postgresql+psycopg://u:${{file:{secret}}}@db/${{env:DB}}"}
    settings = settings_from_mapping(data, {"KEY": "k1", "DB": "auditor"})
    assert settings.destinations[0].options == {"key": "k1"}
    assert settings.catalog.url == "postgresql+psycopg://u:hunter2@db/auditor"


def test_defaults() -> None:
    settings = settings_from_mapping(base(), {"KEY": "k"})
    export = settings.exports[0]
    assert (export.compression, export.manifest, export.grace.total_seconds(), export.path, settings.catalog.url) == ("gzip", False, 3600, "", "sqlite:///auditor.db")
    assert export.layout.template == "%DATASET_ID%/exportTime=%EXPORT_TIME%"


def change(path: str, value: Any) -> dict[str, Any]:
    data = base()
    target: Any = data
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (change("exports.0.format", "csv"), "exports[0].format"),
        (change("exports.0.compression", "snappy"), "exports[0].compression"),
        (change("exports.0.grace", "soon"), "exports[0].grace"),
        (change("exports.0.schedule", {"timeUnit": "hour", "interval": 5, "startTime": 0}), "exports[0].schedule: interval"),
        (change("exports.0.destination", "nowhere"), "exports[0].destination: 'nowhere'"),
        (change("exports.0.datasets", []), "exports[0].datasets"),
        (change("exports.0.datasets", ["a", "a"]), "exports[0].datasets"),
        (change("exports.0.folder_template", "%DATASET_ID%"), "exports[0].folder_template"),
        (change("exports.0.colour", "blue"), "exports[0].colour: unknown key"),
        (change("catalog", {"uri": "x"}), "catalog.uri: unknown key"),
        (change("catalog", {"lock_lease": "1s"}), "catalog.lock_lease: .*at least 2s and at most 1d"),
        (change("catalog", {"lock_lease": "soon"}), "catalog.lock_lease"),
        ({**base(), "extra": 1}, "extra: unknown key"),
        (change("exports.0", {"name": "web"}), "exports[0].destination: required"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings_from_mapping(data, {"KEY": "k"})


def test_a_missing_reference_names_the_key_and_variable() -> None:
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.options\.key: environment variable KEY"):
        settings_from_mapping(base(), {})


def test_option_values_are_never_echoed_in_errors() -> None:
    data = base()
    data["destinations"][0]["options"] = "sekrit-value"
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping(data, {})
    assert "sekrit-value" not in str(raised.value)


def test_config_path_order(tmp_path: Path) -> None:
    assert resolve_config_path("a.toml", {"AUDITOR_CONFIG": "b.toml"}) == Path("a.toml")
    assert resolve_config_path(None, {"AUDITOR_CONFIG": "b.toml"}) == Path("b.toml")
    assert resolve_config_path(None, {}) == Path("config/auditor.toml")


@pytest.mark.parametrize("text, message", [("not = [toml", "not valid TOML"), (None, "does not exist")])
def test_unreadable_files_are_config_errors(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "auditor.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, {})


def test_the_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "config" / "auditor.example.toml"
    environ = {
        "S3_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AEP_CLIENT_ID": "c", "AEP_CLIENT_SECRET": "s",
        "AEP_ORG_ID": "o@AdobeOrg", "AUDITOR_READ_TOKEN": "r", "AUDITOR_ADMIN_TOKEN": "a", "ONCALL_WEBHOOK_URL": "http://127.0.0.1:9/hook", "ONCALL_WEBHOOK_KEY": "k",
    }
    settings = load_settings(example, environ)
    assert [e.name for e in settings.exports] == ["web-events", "profiles-snapshot"]


def test_the_example_config_documents_every_setting() -> None:
    from auditor.config import (
        AlertRuleSettings,
        CatalogSettings,
        ChannelSettings,
        DestinationSettings,
        ExportSettings,
        FlowServiceSettings,
        InventorySettings,
        ServiceSettings,
        Settings,
        TokenSettings,
        ValidationSettings,
    )

    example = (Path(__file__).parents[2] / "config" / "auditor.example.toml").read_text()
    undocumented = [
        f"{model.__name__}.{name}"
        for model in (Settings, CatalogSettings, ValidationSettings, FlowServiceSettings, ServiceSettings, TokenSettings, ChannelSettings, AlertRuleSettings, DestinationSettings, InventorySettings, ExportSettings)
        for name in model.model_fields
        if f"{name} =" not in example and f"[{name}]" not in example and f"[[{name}]]" not in example
    ]
    assert undocumented == []


def test_an_export_path_prefixes_the_folder_template() -> None:
    data = base()
    data["exports"][0]["path"] = "/aep/web/"
    export = settings_from_mapping(data, {"KEY": "k"}).exports[0]
    match = export.layout.match("aep/web/ds1/exportTime=202611250300/part-0.parquet")
    assert match is not None and match.dataset_id == "ds1" and match.folder == "aep/web/ds1/exportTime=202611250300"
    assert export.layout.match("ds1/exportTime=202611250300/part-0.parquet") is None


def test_included_files_add_exports(tmp_path: Path) -> None:
    (tmp_path / "flows.toml").write_text(
        '[[exports]]\nname = "synced"\ndestination = "b"\ndatasets = ["ds9"]\nformat = "json"\nschedule = { timeUnit = "day", interval = 1, startTime = 0 }\n'
    )
    main = tmp_path / "auditor.toml"
    main.write_text('include = ["flows.toml"]\n[[destinations]]\nname = "b"\nurl = "file:///tmp/x"\n')
    assert [e.name for e in load_settings(main, {}).exports] == ["synced"]
    (tmp_path / "flows.toml").write_text("[catalog]\nurl = 'sqlite://'\n")
    with pytest.raises(ConfigError, match="only"):
        load_settings(main, {})
