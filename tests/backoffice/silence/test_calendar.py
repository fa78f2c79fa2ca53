"""Store calendars: local open time in UTC across DST changes, closed days, bad input."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from posedge.backoffice.silence import CalendarError, StoreCalendar, load_calendars, parse_calendars


def _always(zone: str) -> StoreCalendar:
    return parse_calendars({"stores": {"s": {"timezone": zone, "hours": "mon-sun 00:00-24:00"}}})[
        "s"
    ]


def _day_bins(calendar: StoreCalendar, day: date) -> dict[int, float]:
    hours: dict[int, float] = defaultdict(float)
    for start, end, how in calendar.day_segments(day):
        hours[how % 24] += (end - start) / 3600.0
    return dict(hours)


@pytest.mark.parametrize(
    ("zone", "spring", "autumn", "hour"),
    [
        ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25), 2),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1), 1),
    ],
)
def test_dst_days_have_23_and_25_open_hours_in_the_right_local_bins(
    zone: str, spring: date, autumn: date, hour: int
) -> None:
    calendar = _always(zone)
    spring_bins = _day_bins(calendar, spring)
    assert sum(spring_bins.values()) == pytest.approx(23.0)
    # Spring forward: the skipped wall-clock hour (Berlin 02:00, New York 02:00) has no time.
    assert 2 not in spring_bins
    autumn_bins = _day_bins(calendar, autumn)
    assert sum(autumn_bins.values()) == pytest.approx(25.0)
    # Fall back: the repeated wall-clock hour is two real hours in its bin.
    assert autumn_bins[hour] == pytest.approx(2.0)
    assert autumn_bins[(hour + 3) % 24] == pytest.approx(1.0)


def test_open_segments_are_local_hours_in_utc() -> None:
    calendar = parse_calendars(
        {"stores": {"b": {"timezone": "Europe/Berlin", "hours": "mon-sat 07:00-21:00"}}}
    )["b"]
    # Thursday 2026-11-26 (CET, UTC+1): 07:00 local is 06:00 UTC.
    start = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    segments = calendar.open_segments(start, start + 86400)
    assert len(segments) == 14
    first = segments[0]
    assert datetime.fromtimestamp(first[0], UTC).hour == 6
    assert first[2] == 3 * 24 + 7  # Thursday 07:00 local
    assert calendar.is_open(start + 12 * 3600)
    assert not calendar.is_open(start + 22 * 3600)


def test_holidays_closed_dates_and_early_closes() -> None:
    calendar = parse_calendars(
        {
            "stores": {
                "b": {
                    "timezone": "Europe/Berlin",
                    "hours": {"mon-sat": "07:00-21:00", "sun": "closed"},
                    "holidays": ["12-25"],
                    "closed": ["2026-11-27"],
                    "early_close": {"2026-12-24": "14:00"},
                }
            }
        }
    )["b"]
    assert list(calendar.day_segments(date(2026, 12, 25))) == []
    assert list(calendar.day_segments(date(2026, 11, 27))) == []
    assert list(calendar.day_segments(date(2026, 11, 29))) == []  # a Sunday
    assert sum(e - s for s, e, _ in calendar.day_segments(date(2026, 12, 24))) == 7 * 3600
    assert sum(e - s for s, e, _ in calendar.day_segments(date(2026, 12, 23))) == 14 * 3600
    weekly = calendar.weekly_open_hours()
    assert sum(weekly) == pytest.approx(6 * 14)


def test_split_days_and_files(tmp_path: Path) -> None:
    toml = tmp_path / "calendar.toml"
    toml.write_text(
        '[stores.s1]\ntimezone = "America/New_York"\nhours = "mon-fri 08:00-12:00 13:00-18:00"\n'
    )
    calendar = load_calendars(toml)["s1"]
    assert calendar.hours[0] == ((480, 720), (780, 1080))
    assert calendar.hours[5] == ()
    doc = {"stores": {"s2": {"timezone": "Europe/London", "hours": "mon-sun 06:00-23:00"}}}
    (tmp_path / "calendar.json").write_text(json.dumps(doc))
    assert load_calendars(tmp_path / "calendar.json")["s2"].timezone == "Europe/London"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"timezone": "Mars/Olympus", "hours": "mon 07:00-21:00"}, "timezone: 'Mars/Olympus'"),
        ({"hours": "mon 07:00-21:00"}, "stores.s.timezone: required"),
        ({"timezone": "UTC"}, "stores.s.hours: required"),
        ({"timezone": "UTC", "hours": "mon 21:00-07:00"}, "closes before it opens"),
        ({"timezone": "UTC", "hours": "mon 07:00-12:00 11:00-14:00"}, "overlaps"),
        ({"timezone": "UTC", "hours": "mon 7-21"}, "'7' is not a time of day"),
        ({"timezone": "UTC", "hours": "mon 07:00"}, "not an interval"),
        ({"timezone": "UTC", "hours": "mon 07:00-25:00"}, "'25:00' is not a time of day"),
        ({"timezone": "UTC", "hours": "monday 07:00-21:00"}, "'monday' is not a weekday"),
        ({"timezone": "UTC", "hours": "mon 07:00-21:00", "holidays": ["25-12"]}, "MM-DD"),
        ({"timezone": "UTC", "hours": "mon 07:00-21:00", "closed": ["2026-13-01"]}, "YYYY-MM-DD"),
        (
            {"timezone": "UTC", "hours": "mon 07:00-21:00", "early_close": {"2026-12-24": "2pm"}},
            "stores.s.early_close.2026-12-24",
        ),
        ({"timezone": "UTC", "hours": "mon 07:00-21:00", "open": "x"}, "unknown key(s) open"),
    ],
)
def test_bad_calendars_name_the_store_the_key_and_the_fix(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_calendars({"stores": {"s": entry}}, "cal.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("cal.toml: stores.s")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read"):
        load_calendars(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stores.s\n")
    with pytest.raises(CalendarError, match="not valid TOML"):
        load_calendars(bad)
    other = tmp_path / "cal.yaml"
    other.write_text("stores: {}")
    with pytest.raises(CalendarError, match=r"\.toml or \.json"):
        load_calendars(other)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(CalendarError, match=r"no stores"):
        load_calendars(empty)
