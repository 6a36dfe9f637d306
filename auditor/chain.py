"""The restore chain, once: which windows rebuild a dataset as of a time, and where it breaks.

Pure. The audit (for `restorable_until` and RPO), restore lookups from the catalog (CLI, API,
dashboard), metrics and alerts all walk windows through `walk`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

GOOD_STATUSES = frozenset({"ok", "late", "empty"})
PENDING = "pending"

T = TypeVar("T")


@dataclass(frozen=True)
class Chain(Generic[T]):
    """A walk over one dataset's windows up to a time.

    `steps` are the good windows to apply, in order (for a full-export schedule: the newest good
    one); `broken` is the first window that stops the chain; `pending` are windows at the end that
    are still inside their grace period: they do not break the chain, they are not restorable yet.
    """

    steps: tuple[T, ...]
    broken: T | None
    pending: tuple[T, ...]
    restorable_until: datetime | None

    @property
    def complete(self) -> bool:
        return self.broken is None


def walk(
    windows: Sequence[T],
    *,
    incremental: bool,
    status: Callable[[T], str],
    scheduled: Callable[[T], datetime],
    at: datetime | None = None,
) -> Chain[T]:
    """Walk `windows` (any order) up to `at` (minute precision; None: all of them).

    Incremental exports (first full, then incrementals): every window up to the first pending one
    must be good; that window and everything after it are pending (not restorable yet, not broken).
    Full exports: the newest non-pending window must be good; `restorable_until` is the newest good one.
    """
    limit = _minute(at) if at is not None else None
    ordered = sorted((w for w in windows if limit is None or _minute(scheduled(w)) <= limit), key=scheduled)
    if incremental:  # the chain cannot go past a window still in its grace period: it and all after it are pending
        first = next((i for i, w in enumerate(ordered) if _status(status(w)) == PENDING), len(ordered))
    else:  # each full export stands alone: only a pending tail waits
        first = len(ordered)
        while first and _status(status(ordered[first - 1])) == PENDING:
            first -= 1
    settled, pending = ordered[:first], tuple(ordered[first:])
    if not incremental:
        settled = [w for w in settled if _status(status(w)) != PENDING]
        good = [w for w in settled if _status(status(w)) in GOOD_STATUSES]
        until = scheduled(good[-1]) if good else None
        if settled and _status(status(settled[-1])) not in GOOD_STATUSES:
            return Chain(tuple(good[-1:]), settled[-1], pending, until)
        return Chain(tuple(good[-1:]), None, pending, until)
    steps: list[T] = []
    for window in settled:
        if _status(status(window)) not in GOOD_STATUSES:
            return Chain(tuple(steps), window, pending, scheduled(steps[-1]) if steps else None)
        steps.append(window)
    return Chain(tuple(steps), None, pending, scheduled(steps[-1]) if steps else None)


def rpo_seconds(as_of: datetime, restorable_until: datetime | None) -> int | None:
    """Recovery point objective: how much data a restore as of `as_of` would lose."""
    return None if restorable_until is None else int((as_of - restorable_until).total_seconds())


def _status(value: object) -> str:
    return str(getattr(value, "value", value))


def _minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)
