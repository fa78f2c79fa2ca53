"""Store calendars: when a store is open, in its own local time (IANA zone, DST by zoneinfo).

A calendar is per store: a time zone, opening hours per weekday (one or more
intervals, or closed), recurring holidays (``MM-DD``), one-off closed dates and
early closes on given dates. It is loaded from a TOML or JSON file
(docs/silence.md, "Store calendar") by :func:`load_calendars`; every mistake
raises :class:`CalendarError` naming the file, the store and the key.

:meth:`StoreCalendar.open_segments` cuts a UTC window into the open time it
contains, one segment per local wall-clock hour, labelled with its local hour
of week (Monday 00:00 = 0). Boundaries are local wall times converted by
zoneinfo, so a spring-forward hour that does not exist has no segment and a
fall-back hour that happens twice is one segment two hours long in its bin.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOURS_PER_WEEK = 168
MINUTES_PER_DAY = 1440
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Span = tuple[int, int]
"""An open interval of one local day in minutes, ``0 <= open < close <= 1440``."""
Segment = tuple[float, float, int]
"""(UTC start, UTC end, local hour of week) of open time."""

_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_MMDD = re.compile(r"^(\d{2})-(\d{2})$")
_KNOWN_KEYS = frozenset({"timezone", "hours", "holidays", "closed", "early_close"})


class CalendarError(ValueError):
    """A store calendar is wrong; the message names where and what to write instead."""


def _minutes(text: str, where: str) -> int:
    match = _HHMM.match(text.strip())
    if match is not None:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if minutes < 60 and hours * 60 + minutes <= MINUTES_PER_DAY:
            return hours * 60 + minutes
    raise CalendarError(f"{where}: {text!r} is not a time of day; write HH:MM (00:00 to 24:00)")


def parse_spans(text: str, where: str) -> tuple[Span, ...]:
    """``"07:00-13:00 14:00-20:00"`` or ``"closed"`` → the day's open spans, in order."""
    if text.strip().lower() == "closed":
        return ()
    spans: list[Span] = []
    for piece in text.replace(",", " ").split():
        low, sep, high = piece.partition("-")
        if not sep:
            raise CalendarError(
                f"{where}: {piece!r} is not an interval; write HH:MM-HH:MM (e.g. 07:00-21:00) "
                "or closed"
            )
        start, end = _minutes(low, where), _minutes(high, where)
        if start >= end:
            raise CalendarError(
                f"{where}: {piece!r} closes before it opens; an interval stays within one "
                "day (use 24:00 for midnight at the end of the day)"
            )
        if spans and start < spans[-1][1]:
            raise CalendarError(f"{where}: {piece!r} overlaps or precedes the interval before it")
        spans.append((start, end))
    if not spans:
        raise CalendarError(f"{where}: empty; write HH:MM-HH:MM or closed")
    return tuple(spans)


def parse_hours(value: object, where: str) -> tuple[tuple[Span, ...], ...]:
    """Opening hours as a table ``{mon = "07:00-21:00", …, sun = "closed"}`` (a weekday
    not named is closed) or one text ``"mon-sat 07:00-21:00, sun closed"``."""
    days: list[tuple[Span, ...]] = [()] * 7
    if isinstance(value, Mapping):
        for key, text in value.items():
            if not isinstance(text, str):
                raise CalendarError(f'{where}.{key}: give the hours as text, e.g. "07:00-21:00"')
            for day in _parse_days(str(key), f"{where}.{key}"):
                days[day] = parse_spans(text, f"{where}.{key}")
        return tuple(days)
    if isinstance(value, str):
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            which, _, hours = part.partition(" ")
            if not hours.strip():
                raise CalendarError(
                    f"{where}: {part!r} needs DAYS HH:MM-HH:MM or DAYS closed, "
                    'e.g. "mon-sat 07:00-21:00, sun closed"'
                )
            spans = parse_spans(hours, f"{where} ({which})")
            for day in _parse_days(which, where):
                days[day] = spans
        return tuple(days)
    raise CalendarError(
        f"{where}: give opening hours as a table of weekdays or as text like "
        '"mon-sat 07:00-21:00, sun closed"'
    )


def _parse_days(text: str, where: str) -> list[int]:
    out: list[int] = []
    for piece in text.lower().split("+"):
        low, _, high = piece.partition("-")
        if low not in WEEKDAYS or (high and high not in WEEKDAYS):
            raise CalendarError(
                f"{where}: {piece!r} is not a weekday or a range of them (mon … sun, e.g. mon-fri)"
            )
        first, last = WEEKDAYS.index(low), WEEKDAYS.index(high or low)
        if last < first:
            raise CalendarError(f"{where}: {piece!r} runs backwards; write e.g. mon-fri")
        out.extend(range(first, last + 1))
    return out


@dataclass(frozen=True)
class StoreCalendar:
    """When one store is open. Build it with :meth:`from_mapping` or directly."""

    store: str
    timezone: str
    hours: tuple[tuple[Span, ...], ...]
    holidays: frozenset[tuple[int, int]] = frozenset()
    closed_dates: frozenset[date] = frozenset()
    early_closes: Mapping[date, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"store {self.store}"
        if len(self.hours) != 7:
            raise CalendarError(f"{where}: opening hours need 7 weekdays, got {len(self.hours)}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(
                f"{where}: timezone {self.timezone!r} is not an IANA time zone name "
                "(e.g. Europe/Berlin, America/New_York)"
            ) from None

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def always_open(cls, store: str, timezone: str = "UTC") -> StoreCalendar:
        """A store without a calendar: open around the clock (its learned rates say when
        it is quiet)."""
        return cls(store, timezone, (((0, MINUTES_PER_DAY),),) * 7)

    @classmethod
    def from_mapping(cls, store: str, doc: Mapping[str, Any], where: str = "") -> StoreCalendar:
        """One store's entry of a calendar file (see docs/silence.md)."""
        where = f"{where}stores.{store}"
        unknown = sorted(set(doc) - _KNOWN_KEYS)
        if unknown:
            raise CalendarError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(_KNOWN_KEYS))
            )
        zone = doc.get("timezone")
        if not isinstance(zone, str) or not zone:
            raise CalendarError(f"{where}.timezone: required, an IANA name like Europe/Berlin")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(
                f"{where}.timezone: {zone!r} is not an IANA time zone name "
                "(e.g. Europe/Berlin, America/New_York)"
            ) from None
        if "hours" not in doc:
            raise CalendarError(
                f'{where}.hours: required, e.g. hours = "mon-sat 07:00-21:00, sun closed"'
            )
        hours = parse_hours(doc["hours"], f"{where}.hours")
        holidays: set[tuple[int, int]] = set()
        for text in _strings(doc.get("holidays", []), f"{where}.holidays"):
            match = _MMDD.match(text)
            month, day = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
            try:
                date(2024, month, day)  # a leap year: 02-29 is a valid recurring day
            except ValueError:
                raise CalendarError(
                    f"{where}.holidays: {text!r} is not a day of the year; write MM-DD, "
                    'e.g. "12-25"'
                ) from None
            holidays.add((month, day))
        closed = frozenset(
            _date(text, f"{where}.closed") for text in _strings(doc.get("closed", []), where)
        )
        early: dict[date, int] = {}
        raw = doc.get("early_close", {})
        if not isinstance(raw, Mapping):
            raise CalendarError(
                f'{where}.early_close: a table of date = "HH:MM", e.g. "2026-12-24" = "14:00"'
            )
        for key, text in raw.items():
            close_day = _date(str(key), f"{where}.early_close")
            if not isinstance(text, str):
                raise CalendarError(f'{where}.early_close.{key}: write the closing time "HH:MM"')
            early[close_day] = _minutes(text, f"{where}.early_close.{key}")
        return cls(store, zone, hours, frozenset(holidays), closed, early)

    # -- queries ---------------------------------------------------------------------------

    def spans_on(self, day: date) -> tuple[Span, ...]:
        """The open spans of a local date (none on a closed day)."""
        if day in self.closed_dates or (day.month, day.day) in self.holidays:
            return ()
        spans = self.hours[day.weekday()]
        close = self.early_closes.get(day)
        if close is None:
            return spans
        return tuple((low, min(high, close)) for low, high in spans if low < close)

    def _utc(self, day: date, minute: int) -> float:
        if minute >= MINUTES_PER_DAY:
            nxt = day + timedelta(days=1)
            return datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.zone).timestamp()
        return datetime(
            day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.zone
        ).timestamp()

    def day_segments(self, day: date) -> list[Segment]:
        """The open time of a local date, per local hour, in UTC (cached per calendar)."""
        cache: dict[date, list[Segment]] = self.__dict__.setdefault("_day_cache", {})
        found = cache.get(day)
        if found is None:
            if len(cache) > 4096:
                cache.clear()
            found = cache[day] = list(self._day_segments(day))
        return found

    def _day_segments(self, day: date) -> Iterator[Segment]:
        weekday = day.weekday()
        spans = self.spans_on(day)
        if not spans:
            return
        midnight = self._utc(day, 0)
        # A day of exactly 24 hours has one UTC offset throughout: plain arithmetic. A DST
        # day (23 or 25 hours) converts every boundary through zoneinfo.
        steady = self._utc(day, MINUTES_PER_DAY) - midnight == 86400.0
        for low, high in spans:
            minute = low
            while minute < high:
                end = min(high, (minute // 60 + 1) * 60)
                if steady:
                    start_s, end_s = midnight + minute * 60.0, midnight + end * 60.0
                else:
                    start_s, end_s = self._utc(day, minute), self._utc(day, end)
                if end_s > start_s:  # a local hour that DST skipped has no open time
                    yield start_s, end_s, weekday * 24 + minute // 60
                minute = end

    def open_segments(self, start: float, end: float) -> list[Segment]:
        """The open time within UTC [start, end), per local hour, in time order."""
        if end <= start:
            return []
        first = datetime.fromtimestamp(start, self.zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self.zone).date()
        out: list[Segment] = []
        day = first
        while day <= last:
            for seg_start, seg_end, how in self.day_segments(day):
                low, high = max(seg_start, start), min(seg_end, end)
                if high > low:
                    out.append((low, high, how))
            day += timedelta(days=1)
        return out

    def is_open(self, when: float) -> bool:
        return bool(self.open_segments(when, when + 1e-3))

    def weekly_open_hours(self) -> list[float]:
        """Open hours per local hour of week in an ordinary week (no holidays): 0 to 1."""
        out = [0.0] * HOURS_PER_WEEK
        for weekday, spans in enumerate(self.hours):
            for low, high in spans:
                minute = low
                while minute < high:
                    end = min(high, (minute // 60 + 1) * 60)
                    out[weekday * 24 + minute // 60] += (end - minute) / 60.0
                    minute = end
        return out


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CalendarError(f'{where}: give a list of texts, e.g. ["2026-12-24"]')
    return [str(v) for v in value]


def _date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CalendarError(
            f'{where}: {text!r} is not a date; write YYYY-MM-DD, e.g. "2026-12-24"'
        ) from None


def parse_calendars(doc: Mapping[str, Any], source: str = "") -> dict[str, StoreCalendar]:
    """The ``[stores.<id>]`` tables of a calendar document."""
    where = f"{source}: " if source else ""
    unknown = sorted(set(doc) - {"stores"})
    if unknown:
        raise CalendarError(
            f"{where}unknown top-level key(s) {', '.join(unknown)}; use [stores.ID]"
        )
    stores = doc.get("stores")
    if not isinstance(stores, Mapping) or not stores:
        raise CalendarError(f"{where}no stores: write one [stores.ID] table per store")
    out: dict[str, StoreCalendar] = {}
    for store, entry in stores.items():
        if not isinstance(entry, Mapping):
            raise CalendarError(f"{where}stores.{store}: must be a table")
        out[str(store)] = StoreCalendar.from_mapping(str(store), entry, where)
    return out


def load_calendars(path: Path) -> dict[str, StoreCalendar]:
    """Calendars from a ``.toml`` or ``.json`` file (by suffix)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read the calendar file: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(raw)
        elif path.suffix.lower() == ".toml":
            doc = tomllib.loads(raw.decode("utf-8"))
        else:
            raise CalendarError(f"{path}: name the calendar file .toml or .json")
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, CalendarError):
            raise
        raise CalendarError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise CalendarError(f"{path}: the document must be a table/object with [stores.ID]")
    return parse_calendars(doc, str(path))
