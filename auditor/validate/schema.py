"""Dataset schemas as canonical text, and what changed between two of them.

Pure: a schema is the JSON list of top-level `[name, type]` pairs the Parquet check records.
"""

from __future__ import annotations

import json


def canonical_schema(fields: list[tuple[str, str]]) -> str:
    return json.dumps([[name, kind] for name, kind in fields], separators=(",", ":"))


def describe_drift(previous: str, current: str) -> str | None:
    """A short description of how `current` differs from `previous`, or None when they agree."""
    try:
        before = dict(json.loads(previous))
        after = dict(json.loads(current))
    except (ValueError, TypeError):
        return None if previous == current else "schema changed"
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    retyped = [f"{name} {before[name]} -> {after[name]}" for name in after if name in before and before[name] != after[name]]
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if retyped:
        parts.append("changed " + ", ".join(retyped))
    return "; ".join(parts) or None
