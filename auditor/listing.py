"""Incremental listing: which prefixes of a destination an audit lists, and when it sweeps it all.

Pure. A window is *settled* when its current status is good (ok, late, empty) and its deadline
is more than the destination's `listing_horizon` ago; nothing about it is expected to change. Between
full sweeps an audit lists only the prefixes of windows that are not settled (one prefix per
dataset and day, or the window's own folder when it is alone on its day) and takes every other
file as the catalog last saw it. A *full sweep* lists everything: it runs when the last one is
`full_sweep_every` old, when the catalog cannot say what is settled, for a back-dated or deep
audit, and whenever it would cost no more listing requests than the incremental plan. Only a
full sweep notices a file deleted or overwritten in a settled window.

The sweep's source is a seam (`FullSweep`): today the store's own recursive listing; a cloud
inventory report (S3 Inventory, Azure Blob inventory) can stand in for it behind the same call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from auditor.config import DestinationSettings, ExportSettings
from auditor.storage.base import ObjectInfo, Store

GOOD = frozenset({"ok", "late", "empty"})
PAGE = 1000  # objects per listing request on S3 and GCS (Azure: 5,000), for the cost estimate


@dataclass(frozen=True)
class SweepState:
    """What the catalog says about one destination, for planning its listing."""

    last_full_sweep: datetime | None  # as-of time of its last live full sweep
    live_as_of: Mapping[tuple[str, str], datetime | None]  # (export, dataset) -> as-of time of its latest live audit
    good: frozenset[tuple[str, str, datetime]]  # (export, dataset, slot) whose current status is good (ok, late, empty)
    files: int = 0  # files the catalog knows there (for the cost of a full listing)
    folders: int = 0


@dataclass(frozen=True)
class ListingPlan:
    full: bool
    reason: str
    prefixes: tuple[str, ...] = ()
    last_full_sweep: datetime | None = None
    open_windows: int = 0

    def to_json(self, *, listed: int | None = None, carried: int | None = None) -> dict[str, Any]:
        from auditor.report import iso

        return {
            "mode": "full" if self.full else "incremental",
            "reason": self.reason,
            "prefixes": len(self.prefixes),
            "open_windows": self.open_windows,
            "listed_objects": listed,
            "carried_from_catalog": carried,
            "last_full_sweep": iso(self.last_full_sweep) if self.last_full_sweep else None,
        }


class FullSweep(Protocol):
    """Where a full sweep's object list comes from: the store's listing, or an inventory report."""

    def objects(self, store: Store) -> list[ObjectInfo]: ...


class ListingSweep:
    """The store's own recursive listing (every object, now)."""

    def objects(self, store: Store) -> list[ObjectInfo]:
        return store.list()


def plan_listing(
    destination: DestinationSettings,
    exports: Sequence[ExportSettings],
    state: SweepState | None,
    now: datetime,
    *,
    full_requested: str | None = None,
    walks: bool = False,
) -> ListingPlan:
    """Decide how an audit as of `now` lists `destination` for `exports` (those in its scope there)."""
    last = state.last_full_sweep if state is not None else None

    def full(reason: str) -> ListingPlan:
        return ListingPlan(True, reason, last_full_sweep=last)

    if full_requested:
        return full(full_requested)
    if state is None:
        return full("the catalog cannot say which windows are settled")
    if last is None:
        return full("no full sweep of this destination yet")
    if now < last:
        return full("back-dated audit: the present state does not describe the past")
    if now - last >= destination.full_sweep_every:
        return full(f"the last full sweep is {_age(now - last)} old (full_sweep_every = {_age(destination.full_sweep_every)})")
    open_windows: dict[str, list[datetime]] = {}  # whole-day prefix -> slots not settled
    exact: dict[tuple[str, datetime], str] = {}
    count = 0
    for export in exports:
        layout = export.layout
        for dataset in export.datasets:
            since = state.live_as_of.get((export.name, dataset))
            if since is None:
                return full(f"dataset {dataset} of export {export.name!r} has no live audit yet")
            if now < since:
                return full("back-dated audit: the present state does not describe the past")
            settle = export.grace + destination.listing_horizon
            for slot in export.schedule.slots(end=now):
                if slot <= since and slot + settle <= now and (export.name, dataset, slot) in state.good:
                    continue  # settled: judged good by a live audit, deadline beyond the horizon (a slot never judged is open)
                count += 1
                day = layout.listing_prefix(dataset, slot, whole_day=True)
                open_windows.setdefault(day, []).append(slot)
                exact[(day, slot)] = layout.listing_prefix(dataset, slot)
    prefixes = sorted({day if len(slots) > 1 else exact[(day, slots[0])] for day, slots in open_windows.items()})
    prefixes = _outermost(prefixes)
    cost = state.folders + 1 if walks else math.ceil(state.files / PAGE) + 1
    if len(prefixes) >= cost:
        return ListingPlan(
            True, f"a full listing costs no more requests ({cost}) than listing {len(prefixes)} prefixes", last_full_sweep=last, open_windows=count
        )
    return ListingPlan(False, f"{count} window(s) not settled", tuple(prefixes), last, count)


def merge_listing(listed: Sequence[ObjectInfo], prefixes: Iterable[str], known: Mapping[str, Any], url: str) -> tuple[list[ObjectInfo], int]:
    """What an incremental audit takes as the listing: the objects listed under `prefixes`, and every
    file the catalog knows (present at its last listing) outside them, as it was then. Returns
    (objects sorted by key, how many came from the catalog)."""
    wanted = sorted(set(prefixes))
    under = re.compile("|".join(re.escape(p) for p in wanted)).match if wanted else (lambda _key: None)
    objects = list(listed)
    seen = {o.key for o in listed}
    carried = 0
    for key, record in known.items():
        if key in seen or under(key):
            continue  # listed just now: the listing says whether it is still there
        objects.append(ObjectInfo(key, f"{url}/{key}", record.size, record.modified, record.etag))
        carried += 1
    objects.sort(key=lambda o: o.key)
    return objects, carried


def _outermost(prefixes: list[str]) -> list[str]:
    """Drop prefixes that another prefix in the list already covers (sorted input)."""
    kept: list[str] = []
    for prefix in prefixes:
        if kept and prefix.startswith(kept[-1]):
            continue
        kept.append(prefix)
    return kept


def _age(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"
