"""Every broken file of the corpus gives its error finding, in isolation and inside a real audit."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.validate import validate_data_file
from auditor.validate.sandbox import BytesSource
from tests.conftest import Tree, t
from tests.validation.corpus import CASES, Case, valid_ndjson, valid_parquet

START = t("2026-11-27T00:00")
SUFFIX = {"parquet": ".gz.parquet", "json": ".json.gz"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_broken_file_gives_its_error(case: Case) -> None:
    data = case.build()
    name = "part-00000-c000" + SUFFIX[case.file_format]
    deep = validate_data_file(BytesSource(data), name, deep=True)
    quick = validate_data_file(BytesSource(data), name, deep=False)
    assert case.code in {f.code for f in deep.findings if f.is_error}
    assert quick.ok is case.deep, "quick checks see exactly the cases that are not marked deep-only"


def test_the_corpus_in_an_audit_makes_every_window_invalid(tree: Tree, tmp_path: Path) -> None:
    """One window per broken file (next to a valid one), after one window that is all valid."""
    exports = ""
    expected: dict[tuple[str, str], Case | None] = {}
    for fmt in ("parquet", "json"):
        good = valid_parquet() if fmt == "parquet" else gzip.compress(valid_ndjson())
        cases: list[Case | None] = [None, *(c for c in CASES if c.file_format == fmt)]
        for index, case in enumerate(cases):
            slot = START + timedelta(hours=3 * index)
            folder = f"ds-{fmt}/exportTime={slot:%Y%m%d%H%M}"
            tree.put(f"{folder}/part-00000-c000{SUFFIX[fmt]}", good if case is None else case.build(), slot + timedelta(minutes=5))
            tree.put(f"{folder}/part-00001-c000{SUFFIX[fmt]}", good, slot + timedelta(minutes=5))
            expected[(fmt, f"{slot:%Y-%m-%dT%H:%M:%SZ}")] = case
        end = START + timedelta(hours=3 * len(cases))
        exports += f"""
[[exports]]
name = "{fmt}"
destination = "d"
datasets = ["ds-{fmt}"]
format = "{fmt}"
schedule = {{ timeUnit = "hour", interval = 3, startTime = "{START:%Y-%m-%dT%H:%M:%SZ}", endTime = "{end:%Y-%m-%dT%H:%M:%SZ}" }}
"""
    config = tmp_path / "auditor.toml"
    config.write_text(f'[catalog]\nurl = "sqlite:///{tmp_path / "c.db"}"\n[[destinations]]\nname = "d"\nurl = "{tree.url}"\n' + exports)

    result = CliRunner().invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-30T00:00:00Z", "--deep", "--format", "json"])

    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["unexpected"] == []
    seen = {
        (export["name"], window["scheduled"]): (window["status"], {f["code"] for f in window["findings"] if f["severity"] == "error"})
        for export in report["exports"]
        for window in export["windows"]
    }
    assert set(seen) == set(expected)
    for key, case in expected.items():
        status, codes = seen[key]
        if case is None:
            assert (status, codes) == ("ok", set()), key
        else:
            assert status == "invalid" and case.code in codes, (case.name, status, codes)
