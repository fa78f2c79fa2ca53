"""The business day of an instant and the instant of a scheduled close, in local time.

docs/close.md: the business day of an instant *t* is the calendar date of
``local_wall_time(t) − day_starts`` (wall-clock arithmetic, so a 23- or 25-hour DST day is
still one business day). The scheduled close of business day *D* fires at local wall time
``at`` on date *D* when ``at ≥ day_starts``, else on *D + 1*. A wall time in a DST gap is
read with the offset before the gap (``fold=0``), one that exists twice at its first
occurrence. Pure: no clock of its own, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import CloseRefused

_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_clock(text: str) -> time:
    """``"23:30"`` → 23:30 (validated by the configuration already)."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class BusinessCalendar:
    """``[close] timezone``, ``day_starts`` and ``at`` as times."""

    timezone: str = "UTC"
    day_starts: str = "00:00"
    at: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def business_day(self, instant: datetime) -> date:
        """The business day ``instant`` (timezone-aware) belongs to."""
        local = instant.astimezone(self.zone).replace(tzinfo=None)
        start = parse_clock(self.day_starts)
        return (local - timedelta(hours=start.hour, minutes=start.minute)).date()

    def scheduled_instant(self, day: date) -> datetime | None:
        """When the scheduled close of business day ``day`` fires (UTC); None: no schedule."""
        if self.at is None:
            return None
        at = parse_clock(self.at)
        on = day if at >= parse_clock(self.day_starts) else day + timedelta(days=1)
        local = datetime.combine(on, at).replace(tzinfo=self.zone, fold=0)
        return local.astimezone(UTC)

    def last_due(self, now: datetime) -> date | None:
        """The latest business day whose scheduled close is at or before ``now``."""
        if self.at is None:
            return None
        today = self.business_day(now)
        for day in (today + timedelta(days=1), today, today - timedelta(days=1)):
            fires = self.scheduled_instant(day)
            if fires is not None and fires <= now:
                return day
        return today - timedelta(days=2)  # unreachable for sane settings; stay defined

    def next_due(self, now: datetime) -> tuple[date, datetime] | None:
        """The next scheduled close after ``now``: its business day and instant (UTC)."""
        if self.at is None:
            return None
        today = self.business_day(now)
        for offset in range(-1, 3):
            day = today + timedelta(days=offset)
            fires = self.scheduled_instant(day)
            if fires is not None and fires > now:
                return day, fires
        return None  # pragma: no cover - some day within three always fires later


def parse_business_day(text: str) -> date:
    """``YYYY-MM-DD`` → a date; :class:`CloseRefused` (exit 2) naming what is wrong."""
    if not _DAY_RE.fullmatch(text):
        raise CloseRefused(
            f"business day {text!r} is not a date; write YYYY-MM-DD (e.g. 2026-03-29)",
            field="business_day",
        )
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CloseRefused(
            f"business day {text!r} is not a calendar date; write YYYY-MM-DD (e.g. 2026-03-29)",
            field="business_day",
        ) from None
