"""Incremental listing: which prefixes of a destination an audit lists, and when it sweeps it all.

Pure. A window is *settled* when its current status is good (ok, late, empty) and its deadline
is more than the destination's `listing_horizon` ago, and the window before it is settled in its own right (its
schema drift is measured against that one); nothing about it is expected to change. Between
full sweeps an audit lists only the prefixes of windows that are not settled (one prefix per
dataset and day, or the window's own folder when it is alone on its day). A settled window outside
those prefixes is *carried*: taken as the catalog last judged it (status, counts, findings, schema),
without a listing, a file row or a check, so an audit's cost follows what can still change, not the
size of the estate. A *full sweep* lists everything: it runs when the last one is
`full_sweep_every` old, when the catalog cannot say what is settled, for a back-dated or deep
audit, and whenever it would cost no more listing requests than the incremental plan. Only a
full sweep notices a file deleted or overwritten in a settled window, or a stray object beside one.

A scheduled sweep of a destination with an `inventory` (S3 Inventory of an s3:// bucket, blob inventory of
an Azure account) reads its newest report instead of listing it (auditor.inventory): the report stands for
every window settled by its time, and the windows that were not are listed as between sweeps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from auditor.config import DestinationSettings, ExportSettings
from auditor.findings import Finding
from auditor.layout import Layout

GOOD = frozenset({"ok", "late", "empty"})
# a good window with one of these findings is never settled: the run evidence it was judged with can still change
UNSETTLED_FINDINGS = frozenset({"run.unfinished", "run.orphan_export"})
PAGE = 1000  # objects per listing request on S3 and GCS (Azure: 5,000), for the cost estimate


WindowKey = tuple[str, str, datetime]  # (export, dataset, slot)


@dataclass(frozen=True, slots=True)  # one per good window of an estate (146,000 in a year of 50 datasets)
class StoredWindow:
    """A window as the catalog last judged it: what an audit carries instead of listing it again."""

    status: str
    folder_key: str | None
    files: int
    bytes: int
    records: int | None
    schema: str | None
    deep_files: int = 0  # of its data files, how many were deep-checked, and the oldest of those checks
    oldest_deep_at: datetime | None = None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class SweepState:
    """What the catalog says about one destination, for planning its listing."""

    last_full_sweep: datetime | None  # as-of time of its last live full sweep
    live_as_of: Mapping[tuple[str, str], datetime | None]  # (export, dataset) -> as-of time of its latest live audit
    good: Mapping[WindowKey, StoredWindow]  # the windows whose current status is good (ok, late, empty), as last judged: what is carried
    files: int = 0  # files the catalog knows there (for the cost of a full listing)
    folders: int = 0
    changed: frozenset[str] = frozenset()  # exports configured otherwise than the catalog recorded (schedule, grace, template …)


@dataclass(frozen=True)
class ListingPlan:
    full: bool
    reason: str
    prefixes: tuple[str, ...] = ()
    last_full_sweep: datetime | None = None
    open_windows: int = 0
    carried: frozenset[WindowKey] = frozenset()  # settled windows outside the prefixes: taken from the catalog
    scheduled: bool = False  # a full sweep because the last one is full_sweep_every old (what an inventory can stand in for)
    inventory: datetime | None = None  # a full sweep from the inventory report of this time, the prefixes listed besides

    def to_json(self, *, listed: int | None = None, carried: int | None = None) -> dict[str, Any]:
        from auditor.report import iso

        return {
            "mode": "full" if self.full else "incremental",
            "source": "inventory" if self.inventory is not None else "listing",
            "inventory_as_of": iso(self.inventory) if self.inventory is not None else None,
            "reason": self.reason,
            "prefixes": len(self.prefixes),
            "open_windows": self.open_windows,
            "listed_objects": listed,
            "carried_windows": len(self.carried),
            "carried_from_catalog": carried,
            "last_full_sweep": iso(self.last_full_sweep) if self.last_full_sweep else None,
        }


def plan_listing(
    destination: DestinationSettings,
    exports: Sequence[ExportSettings],
    state: SweepState | None,
    now: datetime,
    *,
    full_requested: str | None = None,
    walks: bool = False,
    inventory_as_of: datetime | None = None,
) -> ListingPlan:
    """Decide how an audit as of `now` lists `destination` for `exports` (those in its scope there).

    With `inventory_as_of` (the time of an inventory report read for a scheduled sweep), a sweep that is due
    comes from that report: the plan is full and nothing is carried, but every window not settled by the
    report's time is listed (`prefixes`), as the report cannot speak for what changed after it."""
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
    due = None
    if now - last >= destination.full_sweep_every:
        due = f"the last full sweep is {_age(now - last)} old (full_sweep_every = {_age(destination.full_sweep_every)})"
        if inventory_as_of is None:
            return ListingPlan(True, due, last_full_sweep=last, scheduled=True)
    changed = sorted(state.changed & {e.name for e in exports})
    if changed:  # what a settled window's row says was judged against the old configuration
        return full(f"export {changed[0]!r} is configured otherwise than at its last audit")
    cutoff = now if due is None or inventory_as_of is None else min(now, inventory_as_of)  # settled by then
    open_windows: dict[str, list[datetime]] = {}  # whole-day prefix -> slots not settled
    exact: dict[tuple[str, datetime], str] = {}
    settled: list[tuple[WindowKey, Layout, str]] = []  # with the window's whole-day prefix
    days: dict[tuple[str, str, date], str] = {}  # (template, dataset, day) -> whole-day prefix, worked out once per day
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
            # a Parquet window's schema drift is measured against the last window before it with a schema: while that
            # one is open, so is this one
            after_open = False
            for slot in export.schedule.slots(end=now):
                key = (export.name, dataset, slot)
                day_key = (layout.template, dataset, slot.date())
                day = days.get(day_key)
                if day is None:
                    day = days[day_key] = layout.listing_prefix(dataset, slot, whole_day=True)
                stored = state.good.get(key)
                good = stored is not None and slot <= since and slot + settle <= cutoff  # judged good by a live audit, deadline beyond the horizon
                if good and not after_open:
                    settled.append((key, layout, day))
                    continue
                after_open = export.format == "parquet" and (stored is None or not good or stored.schema is None)
                count += 1  # open (a slot never judged is open)
                open_windows.setdefault(day, []).append(slot)
                exact[(day, slot)] = layout.listing_prefix(dataset, slot)
    prefixes = sorted({day if len(slots) > 1 else exact[(day, slots[0])] for day, slots in open_windows.items()})
    prefixes = _outermost(prefixes)
    cost = state.folders + 1 if walks else math.ceil(state.files / PAGE) + 1
    if len(prefixes) >= cost:
        return ListingPlan(
            True, f"a full listing costs no more requests ({cost}) than listing {len(prefixes)} prefixes", last_full_sweep=last, open_windows=count
        )
    if due is not None:  # from the inventory, the windows not settled by its time listed besides
        return ListingPlan(
            True, f"{due}: from the inventory of {inventory_as_of:%Y-%m-%dT%H:%MZ}", tuple(prefixes), last, count, scheduled=True, inventory=inventory_as_of
        )
    under = starts_with(prefixes)
    covered: dict[str, bool] = {}  # whole-day prefix -> listed in full

    def listed(key: WindowKey, layout: Layout, day: str) -> bool:
        whole = covered.get(day)
        if whole is None:
            whole = covered[day] = bool(under(day))
        if whole:
            return True
        return day in open_windows and bool(under(layout.listing_prefix(key[1], key[2])))  # a day listed folder by folder

    carried = frozenset(key for key, layout, day in settled if not listed(key, layout, day))
    return ListingPlan(False, f"{count} window(s) not settled", tuple(prefixes), last, count, carried)


def starts_with(prefixes: Sequence[str]) -> Callable[[str], object]:
    """Whether a key starts with one of `prefixes` (one regex for all; "" matches every key)."""
    if not prefixes:
        return lambda _key: None
    return re.compile("|".join(re.escape(p) for p in sorted(set(prefixes)))).match


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
