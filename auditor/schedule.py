"""Expected export windows of a Flow Service `scheduleParams` object.

Pure: every function takes the times it needs and never reads the clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.errors import ScheduleError

HOURLY_INTERVALS = (3, 6, 8, 9, 12)  # API text says 3/6/9/12; the UI offers 8 (reference §4).
DEFAULT_GRACE = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


class ExportMode(str, enum.Enum):
    DAILY_FULL_EXPORT = "DAILY_FULL_EXPORT"
    FIRST_FULL_THEN_INCREMENTAL = "FIRST_FULL_THEN_INCREMENTAL"


@dataclass(frozen=True)
class Schedule:
    """A validated dataset-export schedule.

    >>> s = parse_schedule({"timeUnit": "hour", "interval": 3, "startTime": 1764547200})
    >>> list(s.slots(end=s.start + timedelta(hours=6)))  # three slots, the last at +6h
    """

    export_mode: ExportMode
    time_unit: str
    interval: int
    start: datetime
    end: datetime | None = None
    folder_template: str | None = None

    @property
    def one_time(self) -> bool:
        return self.export_mode is ExportMode.DAILY_FULL_EXPORT

    @property
    def incremental(self) -> bool:
        return self.export_mode is ExportMode.FIRST_FULL_THEN_INCREMENTAL

    @property
    def step(self) -> timedelta:
        unit = timedelta(hours=1) if self.time_unit == "hour" else timedelta(days=1)
        return unit * self.interval

    def slots(self, *, end: datetime) -> Iterator[datetime]:
        """Scheduled times whose minute is at or before `end`'s minute, in order."""
        limit = floor_minute(end)
        if self.one_time:
            if floor_minute(self.start) <= limit:
                yield self.start
            return
        slot = self.start
        while floor_minute(slot) <= limit and (self.end is None or slot < self.end):
            yield slot
            slot += self.step

    def place(self, minute: datetime) -> tuple[datetime | None, str]:
        """Find the slot whose folder time is `minute`; else None and why it fits no slot."""
        base = floor_minute(self.start)
        if minute < base:
            return None, "before the schedule's startTime"
        offset = minute - base
        steps, rest = divmod(offset, self.step) if not self.one_time else (0, offset)
        if rest:
            return None, "off-schedule time"
        slot = self.start + self.step * steps if not self.one_time else self.start
        if self.end is not None and slot >= self.end:
            return None, "at or after the schedule's endTime"
        return slot, ""


def floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def parse_time(value: Any, *, key: str = "time") -> datetime:
    """Epoch seconds (int or digit string) or ISO-8601 to a tz-aware UTC datetime.

    Raises ScheduleError naming `key` when the value is neither.
    """
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, bool):
        raise ScheduleError(f"{key}: expected epoch seconds or ISO-8601, got {value!r}")
    elif isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = int(value)
        if seconds > 10**11:  # milliseconds by mistake: AEP's scheduleParams are in seconds
            raise ScheduleError(f"{key}: {value!r} looks like milliseconds; scheduleParams use epoch seconds")
        result = datetime.fromtimestamp(seconds, UTC)
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError as e:
            raise ScheduleError(f"{key}: {value!r} is not epoch seconds or ISO-8601") from e
    else:
        raise ScheduleError(f"{key}: expected epoch seconds or ISO-8601, got {value!r}")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    return result.astimezone(UTC)


_GRACE_PART = re.compile(r"(\d+)([dhms])")


def parse_grace(text: str) -> timedelta:
    """`90m`, `1h30m`, `2d`, `45s` or ISO-8601 `PT1H` / `P1DT2H` to a timedelta."""
    value = text.strip()
    if not value:
        raise ScheduleError("grace: empty duration")
    iso = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value.upper())
    if iso and value.upper() not in ("P", "PT") and not value.upper().endswith("T"):
        days, hours, minutes, seconds = (int(g) if g else 0 for g in iso.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if _GRACE_PART.sub("", value.lower()) == "":
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        return timedelta(seconds=sum(int(n) * units[u] for n, u in _GRACE_PART.findall(value.lower())))
    raise ScheduleError(f"grace: {text!r} is not a duration like 90m, 1h30m, 2d or PT1H")


def parse_schedule(params: Mapping[str, Any]) -> Schedule:
    """Validate a `scheduleParams` mapping (keys as AEP spells them) into a Schedule.

    Raises ScheduleError naming the key and value that are wrong.
    """
    known = {"exportMode", "timeUnit", "interval", "startTime", "endTime", "foldernameTemplate", "folderNameTemplate"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ScheduleError(f"schedule.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    raw_mode = params.get("exportMode", ExportMode.FIRST_FULL_THEN_INCREMENTAL.value)
    try:
        mode = ExportMode(str(raw_mode).upper())
    except ValueError:
        raise ScheduleError(f"schedule.exportMode: {raw_mode!r} is not DAILY_FULL_EXPORT or FIRST_FULL_THEN_INCREMENTAL") from None
    unit = str(params.get("timeUnit", "")).lower()
    if unit not in ("hour", "day"):
        raise ScheduleError(f"schedule.timeUnit: {params.get('timeUnit')!r} is not 'hour' or 'day'")
    interval = params.get("interval")
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise ScheduleError(f"schedule.interval: {interval!r} is not an integer")
    if mode is ExportMode.DAILY_FULL_EXPORT:
        if unit != "day" or interval not in (0, 1):
            raise ScheduleError(f"schedule.interval: a one-time full export needs timeUnit 'day' and interval 0, got {unit!r} {interval!r}")
    elif unit == "day" and interval != 1:
        raise ScheduleError(f"schedule.interval: {interval!r} with timeUnit 'day' must be 1")
    elif unit == "hour" and interval not in HOURLY_INTERVALS:
        raise ScheduleError(f"schedule.interval: {interval!r} hours is not one of {HOURLY_INTERVALS}")
    if "startTime" not in params:
        raise ScheduleError("schedule.startTime: required")
    start = parse_time(params["startTime"], key="schedule.startTime")
    end = parse_time(params["endTime"], key="schedule.endTime") if params.get("endTime") is not None else None
    if end is not None and end <= start:
        raise ScheduleError(f"schedule.endTime: {params['endTime']!r} is not after startTime")
    template = params.get("folderNameTemplate", params.get("foldernameTemplate"))
    return Schedule(mode, unit, interval, start, end, template)
