"""Planning an incremental listing (pure): which prefixes, when a full sweep, what the catalog stands in for."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from auditor.config import DestinationSettings, ExportSettings
from auditor.layout import parse_layout
from auditor.listing import StoredWindow, SweepState, plan_listing
from tests.conftest import t


def _export(**schedule: object) -> ExportSettings:
    params = {"timeUnit": "hour", "interval": 3, "startTime": "2026-11-28T00:00:00Z", **schedule}
    return ExportSettings.model_validate({"name": "e", "destination": "d", "datasets": ["dsA", "dsB"], "format": "parquet", "schedule": params})


DESTINATION = DestinationSettings(name="d", url="file:///x", full_sweep_every=timedelta(days=1), listing_horizon=timedelta(hours=6))
NOW = t("2026-11-30T10:00")


def _judged_good(*names: str) -> frozenset[tuple[str, str, datetime]]:
    """Every slot up to the last live audit (09:00) judged good, as the catalog would hold it."""
    slots = list(_export().schedule.slots(end=t("2026-11-30T09:00")))
    return frozenset((name, dataset, slot) for name in names or ("e",) for dataset in ("dsA", "dsB") for slot in slots)


def _state(**overrides: object) -> SweepState:
    """`good`: the windows judged good, each as a Parquet window with a schema (one ok row apiece)."""
    good = cast(frozenset[tuple[str, str, datetime]], overrides.pop("good", _judged_good()))
    values: dict[str, object] = {
        "last_full_sweep": t("2026-11-30T00:00"),
        "live_as_of": {("e", "dsA"): t("2026-11-30T09:00"), ("e", "dsB"): t("2026-11-30T09:00")},
        "good": {key: StoredWindow("ok", f"{key[1]}/{key[2]:%Y%m%d%H%M}", 1, 1, 1, "schema") for key in good},
        "files": 100_000,
        "folders": 1_000,
        **overrides,
    }
    return SweepState(**values)  # type: ignore[arg-type]


def test_only_windows_within_the_horizon_or_not_good_are_listed_one_prefix_per_dataset_and_day() -> None:
    old_gap = ("e", "dsB", t("2026-11-28T06:00"))
    plan = plan_listing(DESTINATION, [_export()], _state(good=_judged_good() - {old_gap}), NOW)
    # settled: deadline (slot + 1 h grace) + 6 h horizon at or before 10:00, so up to 03:00; open: 06:00 and 09:00 per dataset,
    # the old gap, and the window after it (its schema drift is measured against the gap's)
    assert not plan.full and plan.open_windows == 2 * 2 + 2
    assert plan.prefixes == ("dsA/exportTime=20261130", "dsB/exportTime=20261128", "dsB/exportTime=20261130")


def test_a_full_sweep_when_due_back_dated_unknown_to_the_catalog_or_cheaper() -> None:
    export = _export()
    assert plan_listing(DESTINATION, [export], None, NOW).reason == "the catalog cannot say which windows are settled"
    assert plan_listing(DESTINATION, [export], _state(last_full_sweep=None), NOW).reason == "no full sweep of this destination yet"
    due = plan_listing(DESTINATION, [export], _state(last_full_sweep=t("2026-11-29T10:00")), NOW)
    assert due.full and due.reason == "the last full sweep is 1d old (full_sweep_every = 1d)"
    assert plan_listing(DESTINATION, [export], _state(), t("2026-11-30T08:00")).reason == "back-dated audit: the present state does not describe the past"
    new = plan_listing(DESTINATION, [export], _state(live_as_of={("e", "dsA"): t("2026-11-30T09:00"), ("e", "dsB"): None}), NOW)
    assert new.full and "dataset dsB" in new.reason
    assert plan_listing(DESTINATION, [export], _state(), NOW, full_requested="requested (--full-sweep)").reason == "requested (--full-sweep)"
    # a young, small destination: one paged listing costs fewer requests than a prefix per open day
    cheap = plan_listing(DESTINATION, [export], _state(files=900), NOW)
    assert cheap.full and "costs no more requests (2)" in cheap.reason
    walked = plan_listing(DESTINATION, [export], _state(files=10**6, folders=1), NOW, walks=True)
    assert walked.full  # a file system walks folder by folder: two folders cost less than two prefixes


def test_prefixes_follow_the_template_and_stop_at_a_macro_the_auditor_cannot_expand() -> None:
    slot = t("2026-11-30T03:00")
    assert parse_layout("%DATASET_ID%/%DATETIME(YYYY/MM/dd/HHmmss)%").listing_prefix("ds", slot, whole_day=True) == "ds/2026/11/30/"
    assert parse_layout("%DATASET_ID%/%DATETIME(YYYYMMdd_HHmmss)%").listing_prefix("ds", slot) == "ds/20261130_0300"
    assert parse_layout("aep/%SANDBOX_NAME%/%DATASET_ID%/exportTime=%EXPORT_TIME%").listing_prefix("ds", slot) == "aep/"
    # a prefix another already covers is listed once
    plan = plan_listing(
        DESTINATION,
        [_export(), _export().model_copy(update={"name": "f"})],
        _state(live_as_of={(n, d): t("2026-11-30T09:00") for n in "ef" for d in ("dsA", "dsB")}, good=_judged_good("e", "f")),
        NOW,
    )
    assert len(plan.prefixes) == len(set(plan.prefixes)) == 2


def test_a_slot_the_catalog_never_judged_is_open() -> None:
    """A corrected startTime adds slots before the first audited one: they have no row, so they are listed."""
    earlier = _export(startTime="2026-11-27T00:00:00Z")
    plan = plan_listing(DESTINATION, [earlier], _state(), NOW)
    assert not plan.full and "dsA/exportTime=20261127" in plan.prefixes and plan.open_windows == 2 * 8 + 2 + 2 * 2  # and 11-28T00:00 after them


def test_settled_windows_outside_the_prefixes_are_carried_and_those_inside_are_listed() -> None:
    """A settled window is carried (taken as the catalog judged it) unless a listed prefix covers its folder:
    a day with two open windows is listed whole, its settled windows with it; a day with one is listed by that
    window's folder, and its other windows are carried."""
    export = _export(startTime="2026-11-29T00:00:00Z")
    open_gaps = {("e", "dsA", t("2026-11-29T06:00")), ("e", "dsA", t("2026-11-29T12:00")), ("e", "dsB", t("2026-11-29T21:00"))}
    good = frozenset((n, d, s) for n, d, s in _judged_good() | frozenset(("e", d, s) for d in ("dsA", "dsB") for s in export.schedule.slots(end=t("2026-11-29T21:00"))))
    plan = plan_listing(DESTINATION, [export], _state(good=good - open_gaps), NOW)
    assert not plan.full
    assert plan.prefixes == ("dsA/exportTime=20261129", "dsA/exportTime=20261130", "dsB/exportTime=202611292100", "dsB/exportTime=20261130")
    every = {("e", d, s) for d in ("dsA", "dsB") for s in export.schedule.slots(end=NOW)}
    listed_days = {s for s in export.schedule.slots(end=NOW) if s >= t("2026-11-30T00:00")}
    expected = {
        ("e", d, s)
        for _e, d, s in every
        if s not in listed_days and not (d == "dsA" and s >= t("2026-11-29T00:00")) and (d, s) != ("dsB", t("2026-11-29T21:00"))
    }
    assert plan.carried == expected
    assert ("e", "dsB", t("2026-11-29T09:00")) in plan.carried  # settled, beside the one open window of its day
    assert not plan.carried & open_gaps and ("e", "dsA", t("2026-11-29T09:00")) not in plan.carried  # its day is listed whole
    assert plan.to_json(listed=3, carried=40)["carried_windows"] == len(expected)
    assert plan_listing(DESTINATION, [export], _state(good=good), NOW, full_requested="requested (--full-sweep)").carried == frozenset()
