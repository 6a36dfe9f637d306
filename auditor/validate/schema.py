"""Dataset schemas as canonical text, and what changed between two of them.

Pure: a schema is the JSON list of top-level `[name, type]` pairs the Parquet check records.

The types come from the Parquet *logical* schema (each leaf column's physical and logical type,
nested in lists, structs and maps), not from the Arrow schema a writer may store beside it: Polars
stores `large_string` where DuckDB stores `string` for the very same Parquet column, and the
alternation of writers is not a schema change. Nullability is not part of the type either (DuckDB
writes `required` where Polars writes `optional`). The spelling follows Arrow's (`int64`, `string`,
`timestamp[us]`, `decimal128(10, 2)`, `list<string>`, `struct<a: int64>`), so schemas recorded
before (from the Arrow schema) still compare equal where the Parquet schema is the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any


def canonical_schema(fields: list[tuple[str, str]]) -> str:
    return json.dumps([[name, kind] for name, kind in fields], separators=(",", ":"))


def parquet_schema(metadata: Any, arrow: Any = None) -> str:
    """The canonical schema of a Parquet file from its footer metadata (a pyarrow FileMetaData), and its Arrow schema
    where the caller has it already (`ParquetSchema.to_arrow_schema()`: converted here otherwise).

    Raises what pyarrow raises for a schema it cannot read (callers turn that into a finding).
    """
    parquet = metadata.schema
    columns = [parquet.column(i) for i in range(len(parquet))]
    try:
        fields = _nested(parquet.to_arrow_schema() if arrow is None else arrow, columns)
    except (ValueError, TypeError, LookupError, NotImplementedError, StopIteration):
        fields = None
    if fields is None:  # the nesting cannot be followed: one entry per top-level name, its leaves flat
        grouped: dict[str, list[str]] = {}
        for column in columns:
            top, _, rest = str(column.path).partition(".")
            grouped.setdefault(top, []).append(f"{rest}: {leaf_type(column)}" if rest else leaf_type(column))
        fields = [(name, leaves[0] if len(leaves) == 1 and ": " not in leaves[0] else "group<" + ", ".join(leaves) + ">") for name, leaves in grouped.items()]
    return canonical_schema(fields)


def _nested(arrow: Any, columns: list[Any]) -> list[tuple[str, str]] | None:
    """Top-level fields with their types: the nesting (list, struct, map) from the Arrow view of the
    Parquet schema, every leaf from its Parquet column (Arrow leaves are Parquet columns, in order)."""
    leaves = iter(columns)
    fields = [(str(field.name), _shape(field.type, leaves)) for field in arrow]
    return fields if next(leaves, None) is None else None


def _shape(kind: Any, leaves: Iterator[Any]) -> str:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return "struct<" + ", ".join(f"{kind.field(i).name}: {_shape(kind.field(i).type, leaves)}" for i in range(kind.num_fields)) + ">"
    if pa.types.is_map(kind):
        key = _shape(kind.key_type, leaves)
        return f"map<{key}, {_shape(kind.item_type, leaves)}>"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) or _is_list_view(kind):
        return f"list<{_shape(kind.value_type, leaves)}>"
    return leaf_type(next(leaves))


def _is_list_view(kind: Any) -> bool:
    import pyarrow as pa

    checks = [getattr(pa.types, name, None) for name in ("is_list_view", "is_large_list_view")]
    return any(check is not None and check(kind) for check in checks)


_UNITS = {"milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}
_PHYSICAL = {"BOOLEAN": "bool", "INT32": "int32", "INT64": "int64", "INT96": "timestamp[ns]", "FLOAT": "float", "DOUBLE": "double", "BYTE_ARRAY": "binary"}


def leaf_type(column: Any) -> str:
    """One Parquet leaf column's type from its logical type (physical type where it has none)."""
    physical = str(column.physical_type)
    try:
        logical = json.loads(column.logical_type.to_json())
    except (ValueError, AttributeError):
        logical = {"Type": "None"}
    kind = str(logical.get("Type", "None"))
    if kind == "None":
        if physical == "FIXED_LEN_BYTE_ARRAY":
            return f"fixed_size_binary[{column.length}]"
        return _PHYSICAL.get(physical, physical.lower())
    if kind == "String":
        return "string"
    if kind == "Int":
        return f"{'int' if logical.get('isSigned', True) else 'uint'}{logical.get('bitWidth', 64)}"
    if kind == "Decimal":
        precision, scale = logical.get("precision", column.precision), logical.get("scale", column.scale)
        return f"decimal{128 if int(precision) <= 38 else 256}({precision}, {scale})"
    if kind == "Date":
        return "date32[day]"
    if kind == "Time":
        unit = _UNITS.get(str(logical.get("timeUnit")), str(logical.get("timeUnit")))
        return f"time32[{unit}]" if unit == "ms" else f"time64[{unit}]"
    if kind == "Timestamp":
        unit = _UNITS.get(str(logical.get("timeUnit")), str(logical.get("timeUnit")))
        return f"timestamp[{unit}, tz=UTC]" if logical.get("isAdjustedToUTC") else f"timestamp[{unit}]"
    if kind == "Float16":
        return "halffloat"
    if kind == "Unknown":
        return "null"
    return kind.lower()  # enum, json, bson, uuid, interval …


# What differs between Arrow schemas of one Parquet schema, and so between schemas recorded from the
# Arrow schema (before) and from the Parquet schema (now): large/view variants, dictionary encoding,
# list child names, the time zone name of a UTC-adjusted timestamp, nullability.
_LOOSE = [
    (re.compile(r" not null"), ""),
    (re.compile(r"\b(?:large_string|string_view|large_utf8|utf8)\b"), "string"),
    (re.compile(r"\b(?:large_binary|binary_view)\b"), "binary"),
    (re.compile(r"\b(?:large_list_view|large_list|list_view|fixed_size_list)<"), "list<"),
    (re.compile(r"\blist<[^:<>,]+: "), "list<"),
    (re.compile(r"(list<[^\[\]]*>)\[\d+\]"), r"\1"),
    (re.compile(r"dictionary<values=([^,<>]+(?:<[^<>]*>)?), indices=[^,]+, ordered=[01]>"), r"\1"),
    (re.compile(r"(timestamp\[\w+), tz=[^\]]+\]"), r"\1, tz=UTC]"),
]


@lru_cache(maxsize=4096)
def comparable(kind: str) -> str:
    """A type as compared for drift: spellings of the same Parquet type made equal."""
    for pattern, replacement in _LOOSE:
        kind = pattern.sub(replacement, kind)
    return kind


def describe_drift(previous: str, current: str) -> str | None:
    """A short description of how `current` differs from `previous`, or None when they agree."""
    if previous == current:
        return None
    try:
        before = dict(json.loads(previous))
        after = dict(json.loads(current))
    except (ValueError, TypeError):
        return None if previous == current else "schema changed"
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    retyped = [f"{name} {before[name]} -> {after[name]}" for name in after if name in before and comparable(str(before[name])) != comparable(str(after[name]))]
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if retyped:
        parts.append("changed " + ", ".join(retyped))
    return "; ".join(parts) or None
