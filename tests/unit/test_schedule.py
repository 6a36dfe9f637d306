from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from auditor.errors import ScheduleError
from auditor.schedule import ExportMode, parse_grace, parse_schedule, parse_time
from tests.conftest import t

START = "2026-11-25T00:00:00Z"


@pytest.mark.parametrize(
    "params, end, expected",
    [
        ({"timeUnit": "hour", "interval": 3, "startTime": START}, "2026-11-25T09:00", ["00:00", "03:00", "06:00", "09:00"]),
        ({"timeUnit": "hour", "interval": 6, "startTime": START}, "2026-11-25T17:59", ["00:00", "06:00", "12:00"]),
        ({"timeUnit": "hour", "interval": 8, "startTime": START}, "2026-11-25T23:00", ["00:00", "08:00", "16:00"]),
        ({"timeUnit": "hour", "interval": 9, "startTime": START}, "2026-11-25T23:00", ["00:00", "09:00", "18:00"]),
        ({"timeUnit": "hour", "interval": 12, "startTime": START}, "2026-11-26T00:00", ["00:00", "12:00", "00:00"]),
        ({"timeUnit": "day", "interval": 1, "startTime": START}, "2026-11-27T00:00", ["00:00", "00:00", "00:00"]),
        ({"timeUnit": "hour", "interval": 3, "startTime": START, "endTime": "2026-11-25T06:00:00Z"}, "2026-11-26T00:00", ["00:00", "03:00"]),
        ({"exportMode": "DAILY_FULL_EXPORT", "timeUnit": "day", "interval": 0, "startTime": START}, "2026-12-31T00:00", ["00:00"]),
        ({"exportMode": "DAILY_FULL_EXPORT", "timeUnit": "day", "interval": 0, "startTime": START}, "2026-11-24T23:59", []),
        ({"timeUnit": "hour", "interval": 3, "startTime": START}, "2026-11-24T00:00", []),
    ],
)
def test_slots_follow_the_schedule_until_end_time_exclusive(params: dict[str, Any], end: str, expected: list[str]) -> None:
    schedule = parse_schedule(params)
    assert [s.strftime("%H:%M") for s in schedule.slots(end=t(end))] == expected


def test_slots_compare_at_minute_precision() -> None:
    schedule = parse_schedule({"timeUnit": "hour", "interval": 3, "startTime": 1796083230})  # 00:00:30
    assert len(list(schedule.slots(end=schedule.start.replace(second=0)))) == 1


def test_epoch_seconds_and_iso_times_mean_the_same_moment() -> None:
    assert parse_time(1796083200) == parse_time("2026-12-01T00:00:00Z") == parse_time("2026-12-01T01:00:00+01:00") == parse_time("1796083200")


@pytest.mark.parametrize("value", ["yesterday", True, None, 1796083200000, "2026-13-01"])
def test_unreadable_times_are_errors(value: Any) -> None:
    with pytest.raises(ScheduleError):
        parse_time(value, key="schedule.startTime")


@pytest.mark.parametrize(
    "minute, slot, reason",
    [
        ("2026-11-25T03:00", "2026-11-25T03:00", ""),
        ("2026-11-25T04:00", None, "off-schedule time"),
        ("2026-11-24T21:00", None, "before the schedule's startTime"),
        ("2026-11-26T00:00", None, "at or after the schedule's endTime"),
    ],
)
def test_place_finds_the_slot_or_says_why_not(minute: str, slot: str | None, reason: str) -> None:
    schedule = parse_schedule({"timeUnit": "hour", "interval": 3, "startTime": START, "endTime": "2026-11-26T00:00:00Z"})
    found, why = schedule.place(t(minute))
    assert (found, why) == ((t(slot) if slot else None), reason)


def test_one_time_export_has_only_its_start_slot() -> None:
    schedule = parse_schedule({"exportMode": "DAILY_FULL_EXPORT", "timeUnit": "day", "interval": 0, "startTime": START})
    assert schedule.place(t("2026-11-25T00:00")) == (t("2026-11-25T00:00"), "")
    assert schedule.place(t("2026-11-26T00:00"))[0] is None


def test_missing_export_mode_means_incremental() -> None:
    assert parse_schedule({"timeUnit": "day", "interval": 1, "startTime": START}).export_mode is ExportMode.FIRST_FULL_THEN_INCREMENTAL


@pytest.mark.parametrize(
    "params, key",
    [
        ({"timeUnit": "hour", "interval": 5, "startTime": START}, "schedule.interval"),
        ({"timeUnit": "day", "interval": 2, "startTime": START}, "schedule.interval"),
        ({"timeUnit": "week", "interval": 1, "startTime": START}, "schedule.timeUnit"),
        ({"exportMode": "DAILY_FULL_EXPORT", "timeUnit": "hour", "interval": 3, "startTime": START}, "schedule.interval"),
        ({"exportMode": "WEEKLY", "timeUnit": "day", "interval": 1, "startTime": START}, "schedule.exportMode"),
        ({"timeUnit": "day", "interval": 1}, "schedule.startTime"),
        ({"timeUnit": "day", "interval": 1, "startTime": START, "endTime": START}, "schedule.endTime"),
        ({"timeUnit": "day", "interval": 1, "startTime": START, "frequency": "DAILY"}, "schedule.frequency"),
        ({"timeUnit": "day", "interval": "1", "startTime": START}, "schedule.interval"),
    ],
)
def test_invalid_schedules_name_the_key(params: dict[str, Any], key: str) -> None:
    with pytest.raises(ScheduleError, match=key.replace(".", r"\.")):
        parse_schedule(params)


def test_both_folder_template_spellings_are_accepted() -> None:
    for key in ("foldernameTemplate", "folderNameTemplate"):
        assert parse_schedule({"timeUnit": "day", "interval": 1, "startTime": START, key: "%DATASET_ID%/x=%EXPORT_TIME%"}).folder_template == "%DATASET_ID%/x=%EXPORT_TIME%"


@pytest.mark.parametrize(
    "text, expected",
    [("90m", timedelta(minutes=90)), ("1h30m", timedelta(minutes=90)), ("2d", timedelta(days=2)), ("PT1H", timedelta(hours=1)), ("P1DT2H", timedelta(hours=26)), ("45s", timedelta(seconds=45))],
)
def test_grace_durations(text: str, expected: timedelta) -> None:
    assert parse_grace(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "1x", "PT", "P", "h1"])
def test_bad_grace_is_an_error(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_grace(text)
