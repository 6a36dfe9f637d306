"""`--format json` of an audit: the same document json.dumps writes, laid out with each window on a line of its own."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auditor.render import layered_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(JSON_VALUES, st.integers(min_value=0, max_value=5))
def test_the_layout_is_the_same_json_document_at_any_depth(value: Any, depth: int) -> None:
    assert json.loads(layered_json(value, depth=depth)) == value


def test_a_report_is_indented_down_to_its_windows_and_each_window_is_one_line() -> None:
    window = {"scheduled": "2026-11-28T06:00:00Z", "status": "invalid", "findings": [{"code": "parquet.bad_magic", "message": "line\nbreak \u202e"}]}
    report = {"status": "not_compliant", "exports": [{"name": "web", "windows": [window, {**window, "findings": []}]}], "unexpected": [], "errors": []}
    text = layered_json(report, depth=4)
    assert json.loads(text) == report
    assert text == json.dumps(report, indent=2).split('"windows": [')[0] + '"windows": [\n' + ",\n".join(
        f"        {json.dumps(w)}" for w in report["exports"][0]["windows"]
    ) + "\n      ]\n    }\n  ],\n  \"unexpected\": [],\n  \"errors\": []\n}"
    assert sum(line.lstrip().startswith('{"scheduled"') for line in text.splitlines()) == 2
