"""Expected export windows of a Flow Service `scheduleParams` object.

Pure: every function takes the times it needs and never reads the clock.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
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

    @cached_property
    def step(self) -> timedelta:  # (cached: a restore places each window of its chain, an audit each folder)
        unit = timedelta(hours=1) if self.time_unit == "hour" else timedelta(days=1)
        return unit * self.interval

    @cached_property
    def _base(self) -> datetime:
        return floor_minute(self.start)

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
        base = self._base
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


# The times the auditor accepts: from the Unix epoch to the start of year 9000. Anything outside
# is an input mistake, and staying far from datetime's own limits means adding a grace period, an
# interval or a time zone offset to an accepted time can never overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_EPOCH_SECONDS = 10**11  # beyond this it is milliseconds by mistake (AEP's scheduleParams use seconds)
_MAX_TEXT = 64  # longer than any ISO-8601 time: not worth parsing


def parse_time(value: Any, *, key: str = "time") -> datetime:
    """Epoch seconds (int or digit string) or ISO-8601 to a tz-aware UTC datetime.

    The one time parser of the API, the CLI and the configuration: anything malformed or outside
    [1970-01-01, 9000-01-01) raises ScheduleError naming `key` (never ValueError or OverflowError).
    """
    result = _parse_time(value, key)
    try:
        result = result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ScheduleError(f"{key}: {_shown(value)} is out of range (from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d})") from None
    if not EARLIEST <= result < LATEST:
        raise ScheduleError(f"{key}: {_shown(value)} is out of range (from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d})")
    return result


def _parse_time(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ScheduleError(f"{key}: expected epoch seconds or ISO-8601, got {_shown(value)}")
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise ScheduleError(f"{key}: {_shown(value)} is not epoch seconds or ISO-8601 (too long)")
    text = value.strip() if isinstance(value, str) else ""
    if isinstance(value, int | float) or (text.isascii() and text.isdigit()):
        return _from_epoch(value if not isinstance(value, str) else int(text), value, key)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(text.replace("z", "Z"))
        except (ValueError, OverflowError, TypeError):
            raise ScheduleError(f"{key}: {_shown(value)} is not epoch seconds or ISO-8601") from None
    raise ScheduleError(f"{key}: expected epoch seconds or ISO-8601, got {_shown(value)}")


def _from_epoch(number: float, original: Any, key: str) -> datetime:
    if isinstance(number, float) and not math.isfinite(number):
        raise ScheduleError(f"{key}: {_shown(original)} is not a time")
    if number > MAX_EPOCH_SECONDS * 1000:
        raise ScheduleError(f"{key}: {_shown(original)} is out of range (epoch seconds up to {MAX_EPOCH_SECONDS})")
    if number > MAX_EPOCH_SECONDS:
        raise ScheduleError(f"{key}: {_shown(original)} looks like milliseconds; scheduleParams use epoch seconds")
    if number < 0:
        raise ScheduleError(f"{key}: {_shown(original)} is before 1970-01-01 (negative epoch seconds)")
    return datetime.fromtimestamp(int(number), UTC)


def _shown(value: Any) -> str:
    """A bounded repr of an input value for a message (never the whole of 5,000 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        digits = int(abs(value).bit_length() * math.log10(2)) + 1  # repr() of a huge int may raise
        return f"a {'negative ' if value < 0 else ''}number of about {digits} digits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile value's repr
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:60] + "…" + text[-10:]


_GRACE_PART = re.compile(r"([0-9]+)([dhms])")


MAX_DURATION = timedelta(days=3660)  # ten years: longer is a typo, and would overflow time arithmetic


def parse_grace(text: str) -> timedelta:
    """`90m`, `1h30m`, `2d`, `45s` or ISO-8601 `PT1H` / `P1DT2H` to a timedelta (at most ten years)."""
    value = text.strip()
    if not value:
        raise ScheduleError("grace: empty duration")
    if len(value) > _MAX_TEXT:
        raise ScheduleError(f"grace: {_shown(text)} is not a duration like 90m, 1h30m, 2d or PT1H (too long)")
    iso = re.fullmatch(r"P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?", value.upper())
    if iso and value.upper() not in ("P", "PT") and not value.upper().endswith("T"):
        days, hours, minutes, seconds = (int(g) if g else 0 for g in iso.groups())
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    elif value.isascii() and _GRACE_PART.sub("", value.lower()) == "":
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        total = sum(int(n) * units[u] for n, u in _GRACE_PART.findall(value.lower()))
    else:
        raise ScheduleError(f"grace: {_shown(text)} is not a duration like 90m, 1h30m, 2d or PT1H")
    if total > MAX_DURATION.total_seconds():
        raise ScheduleError(f"grace: {_shown(text)} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=total)


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
