"""The lane model: learning from sale times, cold start from siblings, store-quiet vs lane-quiet,
suppression by the calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from posedge.backoffice.silence import SilenceConfig, StoreCalendar, parse_calendars
from posedge.backoffice.silence.evaluate import FleetModel
from posedge.backoffice.silence.learn import learn_sales
from posedge.backoffice.silence.model import LaneStats

# Thursday 2026-11-26 12:00 UTC; training runs the four weeks before.
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()
START = NOW - 28 * 86400


def _calendar() -> StoreCalendar:
    doc = {"stores": {"st": {"timezone": "UTC", "hours": "mon-sun 08:00-20:00"}}}
    return parse_calendars(doc)["st"]


def _regular(every_s: float, start: float = START, end: float = NOW) -> list[float]:
    """A sale every ``every_s`` seconds while the store is open (08:00-20:00 UTC)."""
    out = []
    t = start
    while t < end:
        if 8 <= datetime.fromtimestamp(t, UTC).hour < 20:
            out.append(t)
        t += every_s
    return out


def _lane(name: str, times: list[float], config: SilenceConfig) -> LaneStats:
    stats = LaneStats(name)
    learn_sales(stats, times, _calendar(), config)
    return stats


def _model(lanes: dict[str, LaneStats], config: SilenceConfig) -> FleetModel:
    return FleetModel(lanes, dict.fromkeys(lanes, "st"), config)


def _segments(now: float) -> list[tuple[float, float, int]]:
    return _calendar().open_segments(now - 12 * 3600, now)


def test_learning_counts_runs_per_local_hour_and_open_hours_as_exposure() -> None:
    config = SilenceConfig(half_life_days=1e9)  # no decay: exact counts
    # A queue of three served back to back every 10 minutes: one run each time.
    times = sorted(t + d for t in _regular(600.0) for d in (0.0, 40.0, 80.0))
    stats = _lane("a", times, config)
    thursday_noon = 3 * 24 + 12
    # 4 weeks × 6 runs in each open hour. Exposure: the open time between runs less the
    # run gap after each sale (a run may go on for run_gap_s): 6 × (520 - 90) s an hour.
    assert stats.counts[thursday_noon] == pytest.approx(24.0)
    assert stats.exposure[thursday_noon] == pytest.approx(4 * 6 * 430 / 3600, rel=0.01)
    assert stats.counts[3 * 24 + 3] == 0.0 and stats.exposure[3 * 24 + 3] == 0.0
    assert stats.last_sale_at == times[-1]
    # Learning again from the same times changes nothing (incremental, idempotent).
    before = list(stats.counts)
    assert learn_sales(stats, times, _calendar(), config) == 0
    assert stats.counts == before


def test_a_long_silence_counts_as_exposure_only_up_to_the_cap() -> None:
    config = SilenceConfig(half_life_days=1e9, max_learn_gap_s=3600.0)
    day = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    stats = _lane("a", [day + 9 * 3600, day + 15 * 3600], config)
    assert sum(stats.exposure) == pytest.approx(1.0)
    # A sale within the run gap of the one before adds no exposure and no run.
    assert learn_sales(stats, [day + 15 * 3600 + 60], _calendar(), config) == 0
    assert sum(stats.exposure) == pytest.approx(1.0)


def test_a_silent_lane_is_improbable_when_its_siblings_sell_and_fine_when_the_store_is_quiet() -> (
    None
):
    config = SilenceConfig()
    busy = _regular(300.0)  # 12 runs an hour
    lanes = {name: _lane(name, busy, config) for name in ("a", "b", "c")}
    # Lane a stopped 90 minutes ago; b and c sold on until now.
    now = NOW
    lanes["a"] = _lane("a", [t for t in busy if t < now - 5400], config)
    model = _model(lanes, config)
    verdict = model.verdict("a", now, _segments(now))
    assert verdict is not None
    # Learned: 12 runs per 0.7 h of exposure (210 s after each run's 90 s dead time);
    # silent for 90 min less the run gap.
    rate = 12 * 300 / 210
    assert verdict.expected == pytest.approx(rate * (5400 - 90) / 3600, rel=0.1)
    assert verdict.siblings_seen >= 30
    assert verdict.probability < verdict.threshold
    assert not verdict.store_quiet
    # The same silence while every lane of the store is quiet: the store, not the lane.
    quiet = {name: _lane(name, [t for t in busy if t < now - 5400], config) for name in lanes}
    verdict = _model(quiet, config).verdict("a", now, _segments(now))
    assert verdict is not None
    assert verdict.store_quiet
    assert verdict.probability > verdict.threshold


def test_siblings_selling_make_the_same_silence_more_surprising() -> None:
    config = SilenceConfig()
    busy = _regular(600.0)
    now = NOW
    stopped = [t for t in busy if t < now - 3600]
    normal = _model(
        {"a": _lane("a", stopped, config), "b": _lane("b", busy, config)}, config
    ).verdict("a", now, _segments(now))
    slow_store = _model(
        {"a": _lane("a", stopped, config), "b": _lane("b", stopped, config)}, config
    ).verdict("a", now, _segments(now))
    assert normal is not None and slow_store is not None
    assert normal.probability < slow_store.probability


def test_cold_start_takes_the_siblings_rates() -> None:
    config = SilenceConfig()
    busy = _regular(300.0)
    lanes = {name: _lane(name, busy, config) for name in ("b", "c")}
    lanes["new"] = LaneStats("new", learned_to=NOW - 4 * 3600, last_sale_at=NOW - 4 * 3600)
    model = _model(lanes, config)
    fit = model.fits["new"]
    assert fit.level == pytest.approx(1.0)
    rate, _ = fit.bin(3 * 24 + 10, config.prior_strength_h)
    assert rate == pytest.approx(12 * 300 / 210, rel=0.05)  # the siblings' rate
    verdict = model.verdict("new", NOW, _segments(NOW))
    assert verdict is not None and verdict.probability < verdict.threshold
    # Without siblings or any data there is nothing to judge.
    alone = FleetModel({"new": lanes["new"]}, {"new": "st"}, config)
    assert alone.verdict("new", NOW, _segments(NOW)) is None


def test_no_expected_sales_outside_opening_hours() -> None:
    config = SilenceConfig()
    busy = _regular(300.0)
    lanes = {name: _lane(name, busy, config) for name in ("a", "b")}
    model = _model(lanes, config)
    night = datetime(2026, 11, 27, 6, tzinfo=UTC).timestamp()  # closed since 20:00
    lanes["a"].last_sale_at = night - 10 * 3600 - 300  # 5 minutes before closing
    verdict = model.verdict("a", night, _segments(night))
    assert verdict is not None
    assert verdict.open_hours == pytest.approx((300 - 90) / 3600, abs=1e-3)
    assert verdict.expected == pytest.approx(12 / 0.7 * 210 / 3600, rel=0.05)
    assert verdict.probability > 0.3


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Berlin", datetime(2026, 10, 25, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 8, tzinfo=UTC)),
    ],
)
def test_runs_land_in_their_local_hour_across_a_dst_change(zone: str, change: datetime) -> None:
    """A lane that sells at 12:15 and 12:45 local time every day, for a week either side of
    a DST change: every run is in the 12:00 bin of its weekday, none in 11:00 or 13:00."""
    from zoneinfo import ZoneInfo

    config = SilenceConfig(half_life_days=1e9)
    calendar = parse_calendars(
        {"stores": {"st": {"timezone": zone, "hours": "mon-sun 08:00-20:00"}}}
    )["st"]
    local = ZoneInfo(zone)
    times = []
    for day in range(-7, 8):
        noon = (change.astimezone(local) + timedelta(days=day)).replace(hour=12, minute=15)
        times += [noon.timestamp(), noon.timestamp() + 1800]
    stats = LaneStats("a")
    learn_sales(stats, sorted(times), calendar, config)
    by_hour = [sum(stats.counts[d * 24 + h] for d in range(7)) for h in range(24)]
    assert by_hour[12] == pytest.approx(len(times))
    assert by_hour[11] == by_hour[13] == 0
