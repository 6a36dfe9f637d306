"""One time parser for the API, the CLI and the configuration: a UTC time or a ScheduleError, nothing else."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.errors import ScheduleError
from auditor.schedule import parse_grace, parse_time

EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)  # what the auditor accepts

HOSTILE = [
    "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC: OverflowError before
    "9999-12-31T23:59:59-01:00",  # after datetime.max once in UTC
    "9999-12-31T23:59:59Z",  # in range for datetime, not for the arithmetic that follows
    "0001-01-01T00:00:00Z",
    "²",  # str.isdigit() says yes, int() says no: ValueError before
    "١٧٩٦٠٨٣٢٠٠",  # Arabic-Indic digits
    "9" * 5000,  # more digits than int() converts
    10**5000,
    -(10**5000),
    10**30,
    -1,
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    "",
    "   ",
    "\x00",
    "\ud800",
    "2026-11-28T12:00:00+25:00",
    "yesterday",
    True,
    None,
    [],
    {"now": 1},
]


@pytest.mark.parametrize("value", HOSTILE, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(HOSTILE)])
def test_malformed_or_out_of_range_times_are_schedule_errors_naming_the_key(value: Any) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_time(value, key="at")
    message = str(raised.value)
    assert message.startswith("at: ") and len(message) < 300


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-28T12:00:00Z", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("2026-11-28T13:00:00+01:00", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        ("2026-11-28T12:00:00", datetime(2026, 11, 28, 12, tzinfo=UTC)),
        (1796083200, datetime(2026, 12, 1, tzinfo=UTC)),
        (" 1796083200 ", datetime(2026, 12, 1, tzinfo=UTC)),
        (1796083200.9, datetime(2026, 12, 1, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", EARLIEST),
        ("8999-12-31T23:59:59Z", datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_good_times_are_utc(value: Any, expected: datetime) -> None:
    assert parse_time(value) == expected


def _aware_utc_or_schedule_error(value: Any) -> None:
    try:
        result = parse_time(value, key="t")
    except ScheduleError as e:
        assert str(e).startswith("t: ")
        return
    assert isinstance(result, datetime) and result.utcoffset() == timedelta(0) and result.tzinfo is UTC
    assert EARLIEST <= result < LATEST
    assert result + timedelta(days=3660) > result  # arithmetic on an accepted time never overflows


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_text_is_a_utc_time_or_a_schedule_error(value: str) -> None:
    _aware_utc_or_schedule_error(value)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[0-9+\-:TZ. ]{0,40}", fullmatch=True) | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
def test_time_shaped_text_is_a_utc_time_or_a_schedule_error(value: str) -> None:
    _aware_utc_or_schedule_error(value)


@settings(max_examples=300, deadline=None)
@given(st.integers() | st.integers(min_value=-(10**4000), max_value=10**4000) | st.floats(allow_nan=True, allow_infinity=True))
def test_any_number_is_a_utc_time_or_a_schedule_error(value: float) -> None:
    _aware_utc_or_schedule_error(value)
    _aware_utc_or_schedule_error(str(value))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_duration_text_is_a_duration_or_a_schedule_error(value: str) -> None:
    try:
        result = parse_grace(value)
    except ScheduleError:
        return
    assert timedelta(0) <= result <= timedelta(days=3660)


@pytest.mark.parametrize("value", ["9" * 5000 + "d", "99999999999d", "P999999999D", "١h"])
def test_huge_or_odd_durations_are_schedule_errors(value: str) -> None:
    with pytest.raises(ScheduleError, match="grace"):
        parse_grace(value)
