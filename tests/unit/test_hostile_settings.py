"""Settings that would crash the auditor are configuration errors: a PostgreSQL URL whose driver is not
installed, TOML nested thousands deep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.catalog.engine import make_engine
from auditor.cli import main
from auditor.config import load_settings, settings_from_mapping
from auditor.errors import CatalogError, ConfigError

PASSWORD = "pg-password-0451"


@pytest.mark.parametrize("url", [f"postgresql+psycopg2://auditor:{PASSWORD}@db/auditor", f"postgresql+asyncpg://auditor:{PASSWORD}@db/auditor", f"postgresql+nosuchdriver://auditor:{PASSWORD}@db/auditor"])
def test_a_postgresql_url_with_a_driver_that_is_not_installed_is_a_catalog_error(url: str) -> None:
    with pytest.raises(CatalogError) as raised:
        make_engine(url)
    assert "export-auditor[postgres]" in str(raised.value) and "postgresql+psycopg://" in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_without_psycopg_the_error_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)  # as if `pip install export-auditor` without [postgres]
    for url in (f"postgresql+psycopg://auditor:{PASSWORD}@db/auditor", f"postgresql://auditor:{PASSWORD}@db/auditor"):
        with pytest.raises(CatalogError, match=r"pip install 'export-auditor\[postgres\]'") as raised:
            make_engine(url)
        assert PASSWORD not in str(raised.value)


def test_the_cli_reports_a_missing_driver_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "auditor.toml"
    config.write_text(f'[catalog]\nurl = "postgresql+psycopg2://auditor:{PASSWORD}@127.0.0.1:9/auditor"\n')
    result = CliRunner().invoke(main, ["audit", "--config", str(config)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "export-auditor[postgres]" in result.output and PASSWORD not in result.output
    assert not isinstance(result.exception, ImportError)


@pytest.mark.parametrize("text", ["a = " + "[" * 2000 + "]" * 2000 + "\n", "a = " + "{ b = " * 2000 + "1" + " }" * 2000 + "\n"], ids=["arrays", "inline tables"])
def test_toml_nested_thousands_deep_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path, {})
    result = CliRunner().invoke(main, ["scan", "--config", str(path)])
    assert result.exit_code == 2 and "nested too deeply" in result.output and not isinstance(result.exception, RecursionError)


def test_an_included_file_nested_thousands_deep_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "more.toml").write_text("[[destinations]]\nname = 'x'\nurl = 'file:///x'\noptions = { a = " + "[" * 2000 + "]" * 2000 + " }\n")
    path = tmp_path / "auditor.toml"
    path.write_text('include = ["more.toml"]\n')
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path, {})


def test_a_mapping_nested_thousands_deep_is_a_config_error() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigError, match="nested too deeply"):
        settings_from_mapping({"destinations": [{"name": "d", "url": "file:///x", "options": {"a": deep}}]}, {})
