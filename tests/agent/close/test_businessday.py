"""The business day and the scheduled instant in local time, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from posedge.agent.close.businessday import BusinessCalendar, parse_business_day
from posedge.agent.close.errors import CloseRefused

BERLIN = BusinessCalendar(timezone="Europe/Berlin", at="23:30")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        ("2026-03-28T22:59:59", "2026-03-28"),  # 23:59:59 CET
        ("2026-03-28T23:00:00", "2026-03-29"),  # 00:00 CET, the 23-hour day starts
        ("2026-03-29T01:30:00", "2026-03-29"),  # 03:30 CEST, just after the gap
        ("2026-03-29T21:59:59", "2026-03-29"),  # 23:59:59 CEST: still the short day
        ("2026-03-29T22:00:00", "2026-03-30"),
        ("2026-10-24T21:59:59", "2026-10-24"),  # 23:59:59 CEST
        ("2026-10-24T22:00:00", "2026-10-25"),  # 00:00 CEST, the 25-hour day starts
        ("2026-10-25T00:30:00", "2026-10-25"),  # 02:30 CEST (first time)
        ("2026-10-25T01:30:00", "2026-10-25"),  # 02:30 CET (second time)
        ("2026-10-25T22:59:59", "2026-10-25"),  # 23:59:59 CET
        ("2026-10-25T23:00:00", "2026-10-26"),
    ],
)
def test_business_day_follows_the_local_calendar_across_dst(instant: str, day: str) -> None:
    assert BERLIN.business_day(utc(instant)) == date.fromisoformat(day)


def test_day_starts_moves_the_small_hours_to_the_previous_day() -> None:
    late = BusinessCalendar(timezone="Europe/Berlin", day_starts="04:00", at="03:00")
    assert late.business_day(utc("2026-03-29T01:30:00")) == date(2026, 3, 28)  # 03:30 CEST
    assert late.business_day(utc("2026-03-29T02:00:00")) == date(2026, 3, 29)  # 04:00 CEST
    # at (03:00) is before day_starts: the close of the 28th fires on the 29th at 03:00 CEST.
    assert late.scheduled_instant(date(2026, 3, 28)) == utc("2026-03-29T01:00:00")


def test_scheduled_instant_in_local_time_and_in_dst_gaps_and_folds() -> None:
    assert BERLIN.scheduled_instant(date(2026, 3, 28)) == utc("2026-03-28T22:30:00")  # CET
    assert BERLIN.scheduled_instant(date(2026, 3, 29)) == utc("2026-03-29T21:30:00")  # CEST
    gap = BusinessCalendar(timezone="Europe/Berlin", at="02:30")
    # 02:30 does not exist on 2026-03-29: read with the offset before the gap (CET).
    assert gap.scheduled_instant(date(2026, 3, 29)) == utc("2026-03-29T01:30:00")
    # 02:30 exists twice on 2026-10-25: the first occurrence (CEST).
    assert gap.scheduled_instant(date(2026, 10, 25)) == utc("2026-10-25T00:30:00")
    assert BusinessCalendar().scheduled_instant(date(2026, 3, 29)) is None


def test_last_and_next_due() -> None:
    assert BERLIN.last_due(utc("2026-03-29T21:29:59")) == date(2026, 3, 28)
    assert BERLIN.last_due(utc("2026-03-29T21:30:00")) == date(2026, 3, 29)
    assert BERLIN.next_due(utc("2026-03-29T21:29:59")) == (
        date(2026, 3, 29),
        utc("2026-03-29T21:30:00"),
    )
    assert BERLIN.next_due(utc("2026-03-29T21:30:00")) == (
        date(2026, 3, 30),
        utc("2026-03-30T21:30:00"),
    )
    assert BusinessCalendar().last_due(utc("2026-03-29T21:30:00")) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-3-29", "is not a date; write YYYY-MM-DD"),
        ("yesterday", "is not a date"),
        ("2026-02-30", "is not a calendar date"),
        ("", "is not a date"),
    ],
)
def test_bad_business_days_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(CloseRefused) as info:
        parse_business_day(text)
    assert says in str(info.value) and info.value.exit_code == 2
