"""The one restore-chain walk (auditor.chain) that the audit, restore lookups, the API and alerts share."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from auditor.chain import walk
from tests.conftest import t

START = t("2026-11-27T00:00")


def chain(*statuses: str, incremental: bool = True, at: datetime | None = None) -> tuple[list[int], int | None, list[int], int | None]:
    """(steps, broken, pending, restorable_until) as window indexes."""
    windows = [(START + timedelta(hours=3 * i), s) for i, s in enumerate(statuses)]
    index = {w[0]: i for i, w in enumerate(windows)}
    walked = walk(list(reversed(windows)), incremental=incremental, status=lambda w: w[1], scheduled=lambda w: w[0], at=at)
    until = index[walked.restorable_until] if walked.restorable_until else None
    return [index[w[0]] for w in walked.steps], index[walked.broken[0]] if walked.broken else None, [index[w[0]] for w in walked.pending], until


@pytest.mark.parametrize(
    "statuses, expected",
    [
        (("ok", "late", "empty"), ([0, 1, 2], None, [], 2)),
        (("ok", "ok", "pending"), ([0, 1], None, [2], 1)),  # a pending tail does not break the chain
        (("ok", "pending", "ok", "missing"), ([0], None, [1, 2, 3], 0)),  # the chain waits at a pending window (grace longer than the interval)
        (("ok", "missing", "ok"), ([0], 1, [], 0)),
        (("unknown", "ok"), ([], 0, [], None)),
        (("pending",), ([], None, [0], None)),
        ((), ([], None, [], None)),
    ],
)
def test_incremental_chains(statuses: tuple[str, ...], expected: tuple[list[int], int | None, list[int], int | None]) -> None:
    assert chain(*statuses) == expected


@pytest.mark.parametrize(
    "statuses, expected",
    [
        (("ok", "missing", "ok"), ([2], None, [], 2)),  # a full export stands alone
        (("ok", "ok", "invalid"), ([1], 2, [], 1)),  # the newest is bad: the one before still restores, but not as of now
        (("ok", "ok", "pending"), ([1], None, [2], 1)),
    ],
)
def test_full_export_chains(statuses: tuple[str, ...], expected: tuple[list[int], int | None, list[int], int | None]) -> None:
    assert chain(*statuses, incremental=False) == expected


def test_the_walk_stops_at_the_asked_time_by_the_minute() -> None:
    assert chain("ok", "ok", "missing", at=t("2026-11-27T03:00") + timedelta(seconds=59)) == ([0, 1], None, [], 1)
