"""The fleet as data: stores (time zone, opening hours, closed days), lanes, rate profiles.

A :class:`Fleet` is a pure value built deterministically from a seed by
:func:`build_fleet`; nothing here does I/O or reads a clock. Traffic is
generated from it by :mod:`.traffic`.

Rates are *sales per hour* at a lane whose ``scale`` is 1.0, by local hour of
week (``weekday * 24 + hour``, Monday 00:00 = 0). A lane's expected rate at a
local hour is ``profile[how] * store.scale * lane.scale``, and zero whenever its
store is closed (outside opening hours, or on a closed day).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOURS_PER_WEEK = 168
MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Relative traffic by local hour of day: a slow morning, a lunch peak, an evening peak.
DEFAULT_HOUR_SHAPE: tuple[float, ...] = (
    0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.45,  # 00-07
    0.6, 0.7, 0.8, 1.0, 1.5, 1.35, 0.9, 0.85,  # 08-15
    1.05, 1.45, 1.6, 1.25, 0.85, 0.55, 0.35, 0.2,  # 16-23
)  # fmt: skip
# Relative traffic by weekday, Monday first: Friday and Saturday busy, Sunday low.
DEFAULT_WEEKDAY_FACTOR: tuple[float, ...] = (0.9, 0.9, 0.95, 1.0, 1.2, 1.45, 0.7)
# Sales per hour of a lane with scale 1.0 at relative traffic 1.0.
DEFAULT_BASE_RATE = 14.0

# Recurring closed days (month, day) of the default calendar.
DEFAULT_HOLIDAYS: tuple[tuple[int, int], ...] = ((1, 1), (5, 1), (12, 25), (12, 26))
DEFAULT_TIMEZONES: tuple[str, ...] = ("Europe/Berlin", "Europe/London", "Europe/Lisbon")
# Currency of a store by time zone prefix (anything else: EUR).
_CURRENCY_BY_ZONE = {"Europe/London": "GBP", "America/": "USD", "Europe/Zurich": "CHF"}

TERMINAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HHMM_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


class FleetError(ValueError):
    """A fleet description is wrong; the message says what to fix."""


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (stable across processes, unlike ``hash``)."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by :func:`derive_seed` of ``parts``."""
    return random.Random(derive_seed(*parts))


@dataclass(frozen=True)
class OpeningHours:
    """Per weekday (Monday first) the open interval in local minutes, or None when closed.

    ``close`` may be 1440 (midnight at the end of the day); an interval never
    crosses midnight.
    """

    days: tuple[tuple[int, int] | None, ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise FleetError(f"opening hours need 7 weekdays, got {len(self.days)}")
        for name, span in zip(WEEKDAYS, self.days, strict=True):
            if span is None:
                continue
            open_m, close_m = span
            if not 0 <= open_m < close_m <= MINUTES_PER_DAY:
                raise FleetError(
                    f"opening hours on {name}: {_hhmm(open_m)}-{_hhmm(close_m)} is not an "
                    "interval within one day (open before close, 00:00 to 24:00)"
                )

    def on(self, weekday: int) -> tuple[int, int] | None:
        return self.days[weekday]

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        """``"mon-sat 07:00-21:00, sun closed"``; days not named are closed."""
        days: list[tuple[int, int] | None] = [None] * 7
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                which, hours = part.split(None, 1)
            except ValueError:
                raise FleetError(
                    f"opening hours {part!r}: write DAYS HH:MM-HH:MM or DAYS closed, "
                    'e.g. "mon-sat 07:00-21:00, sun closed"'
                ) from None
            which_days = _parse_days(which)
            span = None if hours.strip() == "closed" else _parse_span(hours.strip())
            for day in which_days:
                days[day] = span
        return cls(tuple(days))

    def describe(self) -> str:
        parts = []
        for name, span in zip(WEEKDAYS, self.days, strict=True):
            shown = "closed" if span is None else f"{_hhmm(span[0])}-{_hhmm(span[1])}"
            parts.append(f"{name} {shown}")
        return ", ".join(parts)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_span(text: str) -> tuple[int, int]:
    try:
        low, high = (p.strip() for p in text.split("-"))
        start, end = _minutes(low), _minutes(high)
    except ValueError:
        raise FleetError(f"opening hours {text!r}: write HH:MM-HH:MM, e.g. 07:00-21:00") from None
    return start, end


def _minutes(text: str) -> int:
    match = _HHMM_RE.match(text)
    if match is None:
        raise ValueError(text)
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes >= 60 or hours * 60 + minutes > MINUTES_PER_DAY:
        raise ValueError(text)
    return hours * 60 + minutes


def _parse_days(text: str) -> list[int]:
    out: list[int] = []
    for piece in text.lower().split("+"):
        low, _, high = piece.partition("-")
        if low not in WEEKDAYS or (high and high not in WEEKDAYS):
            raise FleetError(
                f"opening hours: {piece!r} is not a day or a day range (mon, tue, …, sun; "
                "e.g. mon-fri)"
            )
        first = WEEKDAYS.index(low)
        last = WEEKDAYS.index(high) if high else first
        out.extend(range(first, last + 1))
    return out


# Opening-hours templates; build_fleet assigns them to stores by seed.
HOURS_TEMPLATES: dict[str, OpeningHours] = {
    "supermarket": OpeningHours.parse("mon-sat 07:00-21:00, sun closed"),
    "convenience": OpeningHours.parse("mon-sun 06:00-23:00"),
    "mall": OpeningHours.parse("mon-sat 10:00-20:00, sun 12:00-18:00"),
    "around-the-clock": OpeningHours.parse("mon-sun 00:00-24:00"),
}
# How often each template is picked (weights, same order as HOURS_TEMPLATES).
HOURS_MIX: tuple[float, ...] = (0.6, 0.2, 0.15, 0.05)
# Templates that open on the recurring holidays of the calendar.
OPEN_ON_HOLIDAYS = frozenset({"convenience", "around-the-clock"})


@dataclass(frozen=True)
class RateProfile:
    """Sales per hour, by local hour of week (Monday 00:00 = index 0), for scale 1.0."""

    rates: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.rates) != HOURS_PER_WEEK:
            raise FleetError(f"a rate profile has {HOURS_PER_WEEK} hours, got {len(self.rates)}")
        if any(not math.isfinite(r) or r < 0 for r in self.rates):
            raise FleetError("rates must be finite and not negative")

    @classmethod
    def default(
        cls,
        base_rate: float = DEFAULT_BASE_RATE,
        hour_shape: Sequence[float] = DEFAULT_HOUR_SHAPE,
        weekday_factor: Sequence[float] = DEFAULT_WEEKDAY_FACTOR,
    ) -> RateProfile:
        """Busier at lunch and in the evening, on Friday and Saturday; lower on Sunday."""
        if len(hour_shape) != 24 or len(weekday_factor) != 7:
            raise FleetError("hour_shape needs 24 values and weekday_factor 7")
        return cls(
            tuple(
                base_rate * weekday_factor[d] * hour_shape[h] for d in range(7) for h in range(24)
            )
        )

    def rate(self, weekday: int, hour: int) -> float:
        return self.rates[weekday * 24 + hour]


@dataclass(frozen=True)
class Burstiness:
    """How arrivals cluster.

    Customers arrive in clusters (a queue forms, a bus stops): clusters are a
    Poisson process at ``rate / mean_cluster``; a cluster holds
    ``1 + Geometric`` customers with mean ``mean_cluster``, served back to back
    ``service_s`` apart. Each (store, day) has a shared multiplier (weather,
    events: lognormal with mean 1 and ``store_day_sigma``) and each (lane, day)
    its own (``lane_day_sigma``). A lane never starts a sale less than
    ``min_gap_s`` after the one before. ``mean_cluster=1`` and both sigmas 0
    give a plain inhomogeneous Poisson process (apart from ``min_gap_s``).
    """

    mean_cluster: float = 1.6
    service_s: tuple[float, float] = (25.0, 60.0)
    store_day_sigma: float = 0.15
    lane_day_sigma: float = 0.1
    min_gap_s: float = 20.0

    def __post_init__(self) -> None:
        if not self.mean_cluster >= 1.0:
            raise FleetError("mean_cluster must be at least 1 (one customer per cluster)")
        low, high = self.service_s
        if not 0 < low <= high:
            raise FleetError("service_s must be (low, high) with 0 < low <= high")
        if self.store_day_sigma < 0 or self.lane_day_sigma < 0 or self.min_gap_s < 0:
            raise FleetError("sigmas and min_gap_s must not be negative")

    @classmethod
    def none(cls) -> Burstiness:
        """No clustering and no day-to-day variation: a Poisson process."""
        return cls(mean_cluster=1.0, store_day_sigma=0.0, lane_day_sigma=0.0, min_gap_s=0.0)


@dataclass(frozen=True)
class Store:
    id: str
    timezone: str
    hours: OpeningHours
    hours_template: str = "custom"
    scale: float = 1.0
    currency: str = "EUR"
    holidays: tuple[tuple[int, int], ...] = DEFAULT_HOLIDAYS
    """Recurring closed days (month, day)."""
    closed_dates: frozenset[date] = frozenset()
    """One-off closed days (renovation, stocktaking)."""
    lanes: tuple[str, ...] = ()

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_closed_day(self, day: date) -> bool:
        return (
            self.hours.on(day.weekday()) is None
            or day in self.closed_dates
            or (day.month, day.day) in self.holidays
        )

    def open_interval(self, day: date) -> tuple[float, float] | None:
        """The open interval of a local date as UTC epoch seconds, or None when closed.

        The UTC offset at the opening time is used for the whole interval: a DST
        change inside opening hours (only around-the-clock stores) shifts the
        rest of that day by the change.
        """
        if self.is_closed_day(day):
            return None
        span = self.hours.on(day.weekday())
        assert span is not None
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        opening = midnight.replace(hour=span[0] // 60, minute=span[0] % 60)
        offset = opening.utcoffset()
        assert offset is not None
        local_midnight_epoch = (day.toordinal() - _EPOCH_ORDINAL) * 86400.0
        base = local_midnight_epoch - offset.total_seconds()
        return base + span[0] * 60.0, base + span[1] * 60.0

    def is_open(self, when: float) -> bool:
        """Whether the store is open at a UTC epoch instant."""
        local = datetime.fromtimestamp(when, self.zone)
        for day in (local.date(), date.fromordinal(local.date().toordinal() - 1)):
            interval = self.open_interval(day)
            if interval is not None and interval[0] <= when < interval[1]:
                return True
        return False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timezone": self.timezone,
            "hours": self.hours_template,
            "opening_hours": self.hours.describe(),
            "scale": round(self.scale, 4),
            "currency": self.currency,
            "holidays": [f"{m:02d}-{d:02d}" for m, d in self.holidays],
            "closed_dates": sorted(d.isoformat() for d in self.closed_dates),
            "lanes": list(self.lanes),
        }


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class Lane:
    """One till, one simulated terminal."""

    terminal: str
    store: str
    number: int
    scale: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "store": self.store,
            "lane": self.number,
            "scale": round(self.scale, 4),
        }


@dataclass(frozen=True)
class Fleet:
    stores: tuple[Store, ...]
    lanes: tuple[Lane, ...]
    profile: RateProfile = field(default_factory=RateProfile.default)
    burstiness: Burstiness = field(default_factory=Burstiness)
    seed: int = 0

    def __post_init__(self) -> None:
        store_ids = [s.id for s in self.stores]
        if len(set(store_ids)) != len(store_ids):
            raise FleetError("store ids must be unique")
        ids = [lane.terminal for lane in self.lanes]
        if len(set(ids)) != len(ids):
            raise FleetError("terminal ids must be unique")
        known = set(store_ids)
        for lane in self.lanes:
            if lane.store not in known:
                raise FleetError(f"lane {lane.terminal} names unknown store {lane.store}")
            if not TERMINAL_ID_RE.match(lane.terminal):
                raise FleetError(
                    f"{lane.terminal!r} is not a terminal id (1-64 of A-Z a-z 0-9 . _ -, "
                    "starting with a letter or digit)"
                )

    @cached_property
    def store_by_id(self) -> dict[str, Store]:
        return {s.id: s for s in self.stores}

    @cached_property
    def lane_by_terminal(self) -> dict[str, Lane]:
        return {lane.terminal: lane for lane in self.lanes}

    def store_of(self, lane: Lane) -> Store:
        return self.store_by_id[lane.store]

    def lanes_of(self, store_id: str) -> list[Lane]:
        return [lane for lane in self.lanes if lane.store == store_id]

    @property
    def terminals(self) -> list[str]:
        return [lane.terminal for lane in self.lanes]

    def expected_rate(self, lane: Lane, when: float) -> float:
        """Expected sales per hour of ``lane`` at a UTC instant (0 when closed), before
        the day multipliers."""
        store = self.store_of(lane)
        if not store.is_open(when):
            return 0.0
        local = datetime.fromtimestamp(when, store.zone)
        return self.profile.rate(local.weekday(), local.hour) * store.scale * lane.scale

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "stores": [s.as_dict() for s in self.stores],
            "lanes": [lane.as_dict() for lane in self.lanes],
        }


def store_id(index: int, width: int = 3, prefix: str = "store") -> str:
    return f"{prefix}{index:0{width}d}"


def terminal_id(store: str, lane: int) -> str:
    return f"{store}-lane{lane:02d}"


def build_fleet(
    terminals: int,
    stores: int,
    *,
    seed: int = 0,
    timezones: Iterable[str] = DEFAULT_TIMEZONES,
    profile: RateProfile | None = None,
    burstiness: Burstiness | None = None,
    hours: str | None = None,
    holidays: Iterable[tuple[int, int]] = DEFAULT_HOLIDAYS,
    store_prefix: str = "store",
) -> Fleet:
    """``terminals`` lanes spread as evenly as possible over ``stores`` stores.

    Stores are ``{store_prefix}001`` …, lanes ``{store}-lane01`` …: fleets with
    different prefixes can share one back office (several simulator processes).

    Store ``i`` gets a time zone from ``timezones`` (round robin), an opening
    hours template (``hours`` names one of :data:`HOURS_TEMPLATES` for all
    stores, else picked by seed), a size (lognormal scale, mean about 1) and a
    currency from its zone. Lane 1 of a store is its busiest; each further lane
    is about 12 % quieter, with some per-lane noise. The same arguments always
    give the same fleet.
    """
    if stores < 1:
        raise FleetError("a fleet needs at least one store")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$", store_prefix):
        raise FleetError(
            f"store prefix {store_prefix!r} must be 1-40 of A-Z a-z 0-9 . _ -, starting with "
            "a letter or digit"
        )
    if terminals < stores:
        raise FleetError(
            f"{terminals} terminals cannot fill {stores} stores: every store needs a lane"
        )
    zones = list(timezones)
    if not zones:
        raise FleetError("give at least one time zone")
    for zone in zones:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FleetError(
                f"{zone!r} is not a time zone name (IANA, e.g. Europe/Berlin)"
            ) from None
    if hours is not None and hours not in HOURS_TEMPLATES:
        raise FleetError(
            f"opening hours template {hours!r} is unknown; use one of: "
            + ", ".join(HOURS_TEMPLATES)
        )
    recurring = tuple(holidays)
    width = max(3, len(str(stores)))
    names = list(HOURS_TEMPLATES)
    per_store, extra = divmod(terminals, stores)
    store_list: list[Store] = []
    lane_list: list[Lane] = []
    for index in range(stores):
        sid = store_id(index + 1, width, store_prefix)
        rng = rng_for(seed, "store", sid)
        template = hours or rng.choices(names, weights=HOURS_MIX)[0]
        zone = zones[index % len(zones)]
        count = per_store + (1 if index < extra else 0)
        lanes = []
        for number in range(1, count + 1):
            tid = terminal_id(sid, number)
            noise = rng_for(seed, "lane", tid).lognormvariate(0.0, 0.15)
            lanes.append(Lane(tid, sid, number, scale=0.88 ** (number - 1) * noise))
        lane_list.extend(lanes)
        store_list.append(
            Store(
                id=sid,
                timezone=zone,
                hours=HOURS_TEMPLATES[template],
                hours_template=template,
                scale=rng.lognormvariate(-0.045, 0.3),
                currency=_currency(zone),
                holidays=() if template in OPEN_ON_HOLIDAYS else recurring,
                lanes=tuple(lane.terminal for lane in lanes),
            )
        )
    return Fleet(
        stores=tuple(store_list),
        lanes=tuple(lane_list),
        profile=profile or RateProfile.default(),
        burstiness=burstiness or Burstiness(),
        seed=seed,
    )


def _currency(zone: str) -> str:
    for prefix, currency in _CURRENCY_BY_ZONE.items():
        if zone.startswith(prefix):
            return currency
    return "EUR"
