"""Sale arrival times of a lane over a time window: opening hours, hour-of-week rates, bursts.

Pure and deterministic: the sales of a lane on a local day depend only on the
fleet (its seed), the lane and the date, so any window gives the same sales on
the days it covers, and generating lane by lane or day by day gives the same
result. Times are UTC epoch seconds (floats) in strictly increasing order.

The model, per store and local day (see :class:`~.model.Burstiness`):

- closed days (weekday without hours, a holiday, a one-off closed date) and
  the time outside opening hours have no sales;
- inside opening hours the rate is piecewise constant per local hour:
  ``profile[hour of week] * store.scale * lane.scale`` times a store-day and a
  lane-day multiplier (mean 1);
- clusters of customers arrive as a Poisson process at ``rate / mean_cluster``
  and are served back to back; a lane never starts two sales less than
  ``min_gap_s`` apart, and nothing starts at or after closing time.

Cost: about one microsecond per sale in CPython (see docs/fleet-simulator.md
for measured figures), so 8 weeks of 1,000 lanes take seconds.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

from .model import Fleet, Lane, Store, rng_for

# (start, end, sales per second before the lane's own factors), UTC epoch seconds.
Segment = tuple[float, float, float]


def to_epoch(when: datetime | float) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(f"{when.isoformat()} has no UTC offset; times must be aware")
        return when.timestamp()
    return float(when)


class Traffic:
    """Generates sales for the lanes of one fleet; caches per-(store, day) rate segments."""

    def __init__(self, fleet: Fleet, cache_days: int = 4096) -> None:
        self.fleet = fleet
        self._segments: dict[tuple[str, int], list[Segment]] = {}
        self._cache_days = cache_days

    # -- per store and day ----------------------------------------------------------------

    def store_day_multiplier(self, store: Store, day: date) -> float:
        sigma = self.fleet.burstiness.store_day_sigma
        if sigma == 0:
            return 1.0
        rng = rng_for(self.fleet.seed, "store-day", store.id, day.toordinal())
        return rng.lognormvariate(-sigma * sigma / 2, sigma)

    def segments(self, store: Store, day: date) -> list[Segment]:
        """Open time of a store's local day as hour-aligned segments with their rates."""
        key = (store.id, day.toordinal())
        cached = self._segments.get(key)
        if cached is not None:
            return cached
        out: list[Segment] = []
        interval = store.open_interval(day)
        if interval is not None:
            span = store.hours.on(day.weekday())
            assert span is not None
            open_m, close_m = span
            base = interval[0] - open_m * 60.0
            factor = store.scale * self.store_day_multiplier(store, day) / 3600.0
            weekday = day.weekday()
            minute = open_m
            while minute < close_m:
                hour = minute // 60
                seg_end = min(close_m, (hour + 1) * 60)
                rate = self.fleet.profile.rate(weekday, hour) * factor
                out.append((base + minute * 60.0, base + seg_end * 60.0, rate))
                minute = seg_end
        if len(self._segments) >= self._cache_days:
            self._segments.clear()
        self._segments[key] = out
        return out

    # -- per lane and day -------------------------------------------------------------------

    def lane_day(self, lane: Lane, day: date, out: array[float] | None = None) -> array[float]:
        """The sales of one lane on one local date of its store (appended to ``out``)."""
        result: array[float] = array("d") if out is None else out
        store = self.fleet.store_of(lane)
        segments = self.segments(store, day)
        if not segments:
            return result
        burst = self.fleet.burstiness
        rng = rng_for(self.fleet.seed, "lane-day", lane.terminal, day.toordinal())
        factor = lane.scale
        sigma = burst.lane_day_sigma
        if sigma:
            factor *= rng.lognormvariate(-sigma * sigma / 2, sigma)
        factor /= burst.mean_cluster
        log_q = math.log(1.0 - 1.0 / burst.mean_cluster) if burst.mean_cluster > 1.0 else 0.0
        service_low, service_high = burst.service_s
        service_span = service_high - service_low
        gap = burst.min_gap_s
        close = segments[-1][1]
        expo = rng.expovariate
        uniform = rng.random
        append = result.append
        log = math.log
        earliest = -math.inf  # the next sale may not start before this
        for seg_start, seg_end, seg_rate in segments:
            rate = seg_rate * factor
            if rate <= 0.0:
                continue
            t = seg_start
            while True:
                t += expo(rate)
                if t >= seg_end:
                    break
                size = 1 + int(log(1.0 - uniform()) / log_q) if log_q else 1
                when = t
                for _ in range(size):
                    if when < earliest:
                        when = earliest
                    if when >= close:
                        break
                    append(when)
                    earliest = when + gap
                    when += service_low + service_span * uniform()
        return result

    def _days(self, store: Store, start: float, end: float) -> Iterator[date]:
        """Local dates of ``store`` whose open time may overlap [start, end)."""
        first = datetime.fromtimestamp(start, store.zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, store.zone).date()
        day = first
        while day <= last:
            yield day
            day += timedelta(days=1)

    def lane_sales(
        self, lane: Lane, start: datetime | float, end: datetime | float
    ) -> array[float]:
        """Sale start times of ``lane`` in [start, end), increasing."""
        start_s, end_s = to_epoch(start), to_epoch(end)
        out: array[float] = array("d")
        if end_s <= start_s:
            return out
        store = self.fleet.store_of(lane)
        for day in self._days(store, start_s, end_s):
            before = len(out)
            self.lane_day(lane, day, out)
            if len(out) > before and (out[before] < start_s or out[-1] >= end_s):
                kept = [t for t in out[before:] if start_s <= t < end_s]
                del out[before:]
                out.extend(kept)
        return out

    def iter_lane_sales(
        self, lane: Lane, start: datetime | float, end: datetime | float | None = None
    ) -> Iterator[float]:
        """Sale start times from ``start`` on (for ever when ``end`` is None), day by day."""
        start_s = to_epoch(start)
        end_s = math.inf if end is None else to_epoch(end)
        store = self.fleet.store_of(lane)
        day = datetime.fromtimestamp(start_s, store.zone).date() - timedelta(days=1)
        while True:
            interval_start = _local_midnight(store, day)
            if interval_start >= end_s:
                return
            for when in self.lane_day(lane, day):
                if when >= end_s:
                    return
                if when >= start_s:
                    yield when
            day += timedelta(days=1)

    # -- expectations, for tests and evaluation -----------------------------------------------

    def expected_sales(self, lane: Lane, start: datetime | float, end: datetime | float) -> float:
        """Expected number of sales in [start, end) (day multipliers at their mean, 1),
        ignoring ``min_gap_s`` and clusters cut at closing time."""
        start_s, end_s = to_epoch(start), to_epoch(end)
        store = self.fleet.store_of(lane)
        total = 0.0
        for day in self._days(store, start_s, end_s):
            interval = store.open_interval(day)
            if interval is None:
                continue
            span = store.hours.on(day.weekday())
            assert span is not None
            base = interval[0] - span[0] * 60.0
            minute = span[0]
            while minute < span[1]:
                hour = minute // 60
                seg_end = min(span[1], (hour + 1) * 60)
                low = max(start_s, base + minute * 60.0)
                high = min(end_s, base + seg_end * 60.0)
                if high > low:
                    rate = self.fleet.profile.rate(day.weekday(), hour) / 3600.0
                    total += rate * (high - low)
                minute = seg_end
        return total * store.scale * lane.scale


def _local_midnight(store: Store, day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=store.zone).timestamp()


def hour_of_week(store: Store, when: float) -> int:
    """Local hour of week of a UTC instant (Monday 00:00 = 0)."""
    local = datetime.fromtimestamp(when, store.zone)
    return local.weekday() * 24 + local.hour


def hour_of_week_counts(store: Store, times: Sequence[float]) -> list[int]:
    """How many of ``times`` fall in each local hour of week of ``store`` (168 counts).

    Converts once per distinct UTC quarter hour (every UTC offset is a multiple
    of 15 minutes), not per sale.
    """
    counts = [0] * 168
    last_quarter = -1
    index = 0
    for when in times:
        quarter = int(when // 900)
        if quarter != last_quarter:
            last_quarter = quarter
            index = hour_of_week(store, quarter * 900.0)
        counts[index] += 1
    return counts


def iso(when: float) -> str:
    """A UTC epoch instant as ISO 8601 with offset (seconds precision when whole)."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec="seconds" if when == int(when) else "microseconds")
