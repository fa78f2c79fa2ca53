"""The fleet model and its traffic: hour-of-week profile, opening hours, closed days, seeds,
bursts."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta

import pytest

from posedge.simulator.fleet.cli import HOURS_CHOICES
from posedge.simulator.fleet.model import (
    HOURS_TEMPLATES,
    Burstiness,
    Fleet,
    FleetError,
    Lane,
    OpeningHours,
    RateProfile,
    Store,
    build_fleet,
)
from posedge.simulator.fleet.traffic import Traffic, hour_of_week, hour_of_week_counts

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # no holiday of the default calendar nearby


def one_store_fleet(
    hours: str = "mon-sun 00:00-24:00",
    profile: RateProfile | None = None,
    burstiness: Burstiness | None = None,
    lanes: int = 1,
    zone: str = "UTC",
    holidays: tuple[tuple[int, int], ...] = (),
    closed: frozenset[date] = frozenset(),
    seed: int = 1,
) -> Fleet:
    ids = tuple(f"s1-lane{n}" for n in range(1, lanes + 1))
    store = Store(
        "s1", zone, OpeningHours.parse(hours), holidays=holidays, closed_dates=closed, lanes=ids
    )
    return Fleet(
        stores=(store,),
        lanes=tuple(Lane(tid, "s1", n) for n, tid in enumerate(ids, 1)),
        profile=profile or RateProfile.default(),
        burstiness=burstiness or Burstiness(),
        seed=seed,
    )


def test_hour_of_week_profile_shows_up_in_the_counts() -> None:
    fleet = one_store_fleet(lanes=4, burstiness=Burstiness(min_gap_s=0))
    traffic = Traffic(fleet)
    store = fleet.stores[0]
    counts = [0] * 168
    for lane in fleet.lanes:
        sales = traffic.lane_sales(lane, MONDAY, MONDAY + timedelta(weeks=6))
        for index, count in enumerate(hour_of_week_counts(store, sales)):
            counts[index] += count
    expected = [rate * 4 * 6 for rate in fleet.profile.rates]
    # The shape: observed counts follow the profile hour by hour.
    assert statistics.correlation(counts, expected) > 0.97
    # The landmarks: Saturday evening over Sunday evening, lunch over mid-afternoon,
    # and the night far below the day.
    saturday_18, sunday_18 = counts[5 * 24 + 18], counts[6 * 24 + 18]
    assert saturday_18 > 1.6 * sunday_18
    weekday_lunch = sum(counts[d * 24 + 12] for d in range(5))
    weekday_15 = sum(counts[d * 24 + 15] for d in range(5))
    assert weekday_lunch > 1.4 * weekday_15
    assert sum(counts[d * 24 + 3] for d in range(7)) < 0.1 * sum(
        counts[d * 24 + 18] for d in range(7)
    )
    # The total: within 5 % of the expectation (day multipliers have mean 1).
    assert sum(counts) == pytest.approx(sum(expected), rel=0.05)


def test_sales_fall_inside_opening_hours_only() -> None:
    fleet = build_fleet(60, 12, seed=2)  # every hours template, three time zones
    assert {s.hours_template for s in fleet.stores} == set(HOURS_TEMPLATES)
    traffic = Traffic(fleet)
    start, end = MONDAY, MONDAY + timedelta(weeks=1)
    total = 0
    for lane in fleet.lanes:
        store = fleet.store_of(lane)
        sales = traffic.lane_sales(lane, start, end)
        total += len(sales)
        assert list(sales) == sorted(sales)
        assert all(start.timestamp() <= t < end.timestamp() for t in sales)
        for when in sales:
            local = datetime.fromtimestamp(when, store.zone)
            span = store.hours.on(local.weekday())
            assert span is not None, f"{lane.terminal} sold on a closed {local:%A}"
            minute = local.hour * 60 + local.minute
            assert span[0] <= minute < span[1], f"{lane.terminal} sold at {local} outside hours"
    assert total > 10_000


def test_opening_hours_follow_local_time_across_a_dst_change() -> None:
    fleet = one_store_fleet(hours="mon-sun 08:00-20:00", zone="Europe/Berlin")
    lane = fleet.lanes[0]
    sales = Traffic(fleet).lane_sales(
        lane, datetime(2026, 3, 23, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC)
    )
    by_day: dict[date, list[float]] = {}
    for when in sales:
        by_day.setdefault(datetime.fromtimestamp(when, UTC).date(), []).append(when)
    # 08:00 Berlin is 07:00 UTC in winter time and 06:00 UTC in summer time (from 29 March).
    winter = min(min(v) for d, v in by_day.items() if d < date(2026, 3, 29))
    summer = min(min(v) for d, v in by_day.items() if d > date(2026, 3, 29))
    assert datetime.fromtimestamp(winter, UTC).hour == 7
    assert datetime.fromtimestamp(summer, UTC).hour == 6


def test_closed_weekdays_holidays_and_closed_dates_have_no_sales() -> None:
    closed = frozenset({date(2026, 1, 14)})
    fleet = one_store_fleet(
        hours="mon-sat 07:00-21:00, sun closed",
        holidays=((1, 1), (1, 6)),
        closed=closed,
        lanes=3,
    )
    store = fleet.stores[0]
    traffic = Traffic(fleet)
    days: set[date] = set()
    for lane in fleet.lanes:
        sales = traffic.lane_sales(lane, datetime(2025, 12, 29, tzinfo=UTC), MONDAY + timedelta(14))
        days |= {datetime.fromtimestamp(t, UTC).date() for t in sales}
    assert not {d for d in days if d.weekday() == 6}, "sales on a Sunday"
    assert date(2026, 1, 1) not in days and date(2026, 1, 6) not in days  # holidays
    assert date(2026, 1, 14) not in days  # one-off closed date
    assert date(2026, 1, 2) in days and date(2026, 1, 15) in days  # the days around them sell
    assert store.is_closed_day(date(2026, 1, 6)) and not store.is_closed_day(date(2026, 1, 7))


def test_the_same_seed_gives_the_same_sales_and_any_window_agrees() -> None:
    a, b, c = (Traffic(build_fleet(30, 3, seed=s)) for s in (7, 7, 8))
    start, end = MONDAY, MONDAY + timedelta(days=10)
    for lane in a.fleet.lanes[:5]:
        first = a.lane_sales(lane, start, end)
        assert first == b.lane_sales(lane, start, end)
        assert first != c.lane_sales(c.fleet.lane_by_terminal[lane.terminal], start, end)
        # Split windows and the streaming form give the same sales as one window.
        middle = start + timedelta(days=3, hours=13, minutes=7)
        assert first == a.lane_sales(lane, start, middle) + a.lane_sales(lane, middle, end)
        assert list(first) == list(a.iter_lane_sales(lane, start, end))
    assert build_fleet(30, 3, seed=7) == build_fleet(30, 3, seed=7)


def test_bursts_make_counts_overdispersed_and_no_bursts_is_poisson() -> None:
    flat = RateProfile(tuple([12.0] * 168))
    windows = 0

    def dispersion(burstiness: Burstiness) -> float:
        nonlocal windows
        fleet = one_store_fleet(profile=flat, burstiness=burstiness, lanes=5, seed=3)
        traffic = Traffic(fleet)
        counts: list[int] = []
        for lane in fleet.lanes:
            sales = traffic.lane_sales(lane, MONDAY, MONDAY + timedelta(weeks=4))
            per_window = [0] * (4 * 7 * 24 * 4)
            for when in sales:
                per_window[int((when - MONDAY.timestamp()) // 900)] += 1
            counts.extend(per_window)
        windows = len(counts)
        return statistics.variance(counts) / statistics.mean(counts)

    bursty = dispersion(Burstiness())
    poisson = dispersion(Burstiness.none())
    assert windows > 10_000
    assert bursty > 1.5, f"index of dispersion {bursty:.2f}: arrivals are not bursty"
    assert 0.9 < poisson < 1.1, f"index of dispersion {poisson:.2f} without bursts"


def test_store_day_multiplier_is_shared_by_the_lanes_of_a_store() -> None:
    fleet = one_store_fleet(
        profile=RateProfile(tuple([12.0] * 168)),
        burstiness=Burstiness(store_day_sigma=0.5, lane_day_sigma=0.0, mean_cluster=1.0),
        lanes=2,
    )
    traffic = Traffic(fleet)
    daily = []
    for lane in fleet.lanes:
        sales = traffic.lane_sales(lane, MONDAY, MONDAY + timedelta(days=60))
        per_day = [0] * 60
        for when in sales:
            per_day[int((when - MONDAY.timestamp()) // 86400)] += 1
        daily.append(per_day)
    assert statistics.correlation(daily[0], daily[1]) > 0.8


def test_expected_sales_matches_the_profile_integral() -> None:
    fleet = one_store_fleet(hours="mon-fri 09:00-17:30")
    lane = fleet.lanes[0]
    expected = Traffic(fleet).expected_sales(lane, MONDAY, MONDAY + timedelta(weeks=1))
    by_hand = sum(
        fleet.profile.rate(day, hour) * (0.5 if hour == 17 else 1.0)
        for day in range(5)
        for hour in range(9, 18)
    )
    assert expected == pytest.approx(by_hand)


def test_hour_of_week_is_local() -> None:
    fleet = one_store_fleet(zone="America/New_York")
    store = fleet.stores[0]
    # Monday 05:00 UTC is Monday 00:00 in New York (winter).
    assert hour_of_week(store, MONDAY.timestamp() + 5 * 3600) == 0


def test_bad_descriptions_say_what_to_fix() -> None:
    with pytest.raises(FleetError, match="mon-fri"):
        OpeningHours.parse("weekdays 9-5")
    with pytest.raises(FleetError, match="HH:MM-HH:MM"):
        OpeningHours.parse("mon 9-17")
    with pytest.raises(FleetError, match="every store needs a lane"):
        build_fleet(3, 5)
    with pytest.raises(FleetError, match="not a time zone"):
        build_fleet(3, 1, timezones=["Mars/Olympus"])
    with pytest.raises(FleetError, match="unknown"):
        build_fleet(3, 1, hours="nightclub")


def test_fleet_layout_and_cli_choices() -> None:
    fleet = build_fleet(1000, 100, seed=2)
    assert len(fleet.lanes) == 1000 and len(fleet.stores) == 100
    assert all(len(store.lanes) == 10 for store in fleet.stores)
    assert fleet.lanes[0].terminal == "store001-lane01"
    assert tuple(HOURS_TEMPLATES) == HOURS_CHOICES
    uneven = build_fleet(7, 3)
    assert [len(s.lanes) for s in uneven.stores] == [3, 2, 2]
