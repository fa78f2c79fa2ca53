"""Faults: the --fault syntax, and the ground truth the offline history reports for each kind."""

from __future__ import annotations

import bisect
import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from posedge.simulator.fleet.faults import (
    Fault,
    FaultSchedule,
    FaultSpecError,
    parse_duration,
    parse_fault,
    random_faults,
)
from posedge.simulator.fleet.history import generate_history
from posedge.simulator.fleet.model import build_fleet
from posedge.simulator.fleet.traffic import Traffic

FLEET = build_fleet(20, 4, seed=9, hours="convenience")
START = datetime(2026, 2, 2, tzinfo=UTC).timestamp()  # Monday 00:00 UTC
END = START + 7 * 86400


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("8w") == 8 * 7 * 86400
    assert parse_duration("250ms") == 0.25
    assert parse_duration("0") == parse_duration("0s") == 0
    for bad in ("", "10", "1x", "h1", "1h 30m", "-1h"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_fault_syntax_relative_absolute_and_open_ended() -> None:
    silent = parse_fault("silent:store002-lane03@+2h", FLEET, START)
    assert (silent.kind, silent.terminals, silent.start, silent.end) == (
        "silent", ("store002-lane03",), START + 7200, None,
    )  # fmt: skip
    down = parse_fault("network-down:store003@2026-02-03T10:00:00+01:00/30m", FLEET, START)
    assert down.terminals == FLEET.store_by_id["store003"].lanes
    assert down.start == datetime(2026, 2, 3, 9, tzinfo=UTC).timestamp()
    assert down.end == down.start + 1800
    assert parse_fault(down.spec(START), FLEET, START) == down  # the text form round-trips
    assert parse_fault(down.spec(), FLEET, START) == down
    lane_down = parse_fault("network-down:store001-lane02@+1d/1h", FLEET, START)
    assert lane_down.terminals == ("store001-lane02",)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("silent", "KIND[=VARIANT]:TARGET@WHEN"),
        ("sleepy:store001-lane01@+1h", "unknown kind 'sleepy'; use one of silent, dead"),
        ("silent:store001@+1h", "'store001' is not a lane id"),
        ("silent:store009-lane01@+1h", "is not a lane id of this fleet"),
        ("backlog:store001-lane01@soon", "WHEN 'soon' is neither"),
        ("dead:store001-lane01@2026-02-03T10:00:00", "has no UTC offset"),
        ("network-down:store001@+1h/ever", "DURATION 'ever' is not a duration"),
        ("network-down:store001@+1h/0s", "more than 0"),
    ],
)
def test_bad_faults_say_what_to_fix(text: str, says: str) -> None:
    with pytest.raises(FaultSpecError, match=re.escape(says)):
        parse_fault(text, FLEET, START)


def test_schedule_combines_overlapping_faults() -> None:
    lane = "store001-lane01"
    schedule = FaultSchedule(
        [
            parse_fault(f"backlog:{lane}@+1h/2h", FLEET, START),
            parse_fault("network-down:store001@+2h/2h", FLEET, START),
        ]
    )
    hour = 3600.0
    assert schedule.effect(lane, START).uploads
    assert not schedule.effect(lane, START + 1.5 * hour).uploads
    assert schedule.effect(lane, START + 1.5 * hour).heartbeats
    both = schedule.effect(lane, START + 2.5 * hour)
    assert not both.uploads and not both.heartbeats and both.sells and not both.online
    assert schedule.effect(lane, START + 4 * hour).uploads
    assert schedule.intervals(lane, "uploads", START, END) == [(START + hour, START + 4 * hour)]
    assert schedule.next_boundary(lane, START + 1.5 * hour) == START + 2 * hour
    assert schedule.effect("store002-lane01", START + 2.5 * hour).uploads


def test_history_ground_truth_for_each_kind() -> None:
    faults = [
        parse_fault("silent:store001-lane01@+1d/2d", FLEET, START),
        parse_fault("dead:store002-lane01@+3d", FLEET, START),
        parse_fault("network-down:store003@+1d12h/6h", FLEET, START),
        parse_fault("backlog:store004-lane02@+2d/1d", FLEET, START),
    ]
    plain = {h.terminal: h for h in generate_history(FLEET, START, END)}
    faulty = {h.terminal: h for h in generate_history(FLEET, START, END, faults)}
    assert plain.keys() == faulty.keys() == set(FLEET.terminals)
    untouched = {t for t in FLEET.terminals if not any(t in f.terminals for f in faults)}
    for terminal in untouched:
        assert faulty[terminal].sales == plain[terminal].sales
        assert faulty[terminal].delivered() == plain[terminal].sales
        assert not faulty[terminal].no_heartbeats and not faulty[terminal].faults

    # silent: no sales in the window, heartbeats and uploads go on; the suppressed sales
    # are exactly the ones the lane would have made.
    silent = faulty["store001-lane01"]
    low, high = START + 86400, START + 3 * 86400
    assert not [t for t in silent.sales if low <= t < high]
    would = [t for t in plain["store001-lane01"].sales if low <= t < high]
    assert silent.suppressed == len(would) > 100
    assert [t for t in silent.sales if t >= high] == [
        t for t in plain["store001-lane01"].sales if t >= high
    ]
    assert not silent.no_heartbeats and not silent.no_uploads

    # dead: nothing from +3d to the end, no heartbeats either.
    dead = faulty["store002-lane01"]
    assert max(dead.sales) < START + 3 * 86400
    assert dead.no_heartbeats == [(START + 3 * 86400, math.inf)]
    assert not [t for t in dead.heartbeat_times(60) if t >= START + 3 * 86400]

    # network-down: every lane of the store keeps selling; what it sold in the outage
    # reaches the back office when it ends; no heartbeats in between.
    outage = (START + 1.5 * 86400, START + 1.5 * 86400 + 6 * 3600)
    for terminal in FLEET.store_by_id["store003"].lanes:
        history = faulty[terminal]
        assert history.sales == plain[terminal].sales
        assert history.no_uploads == history.no_heartbeats == [outage]
        delivered = history.delivered()
        for sale, arrival in zip(history.sales, delivered, strict=True):
            expected = outage[1] if outage[0] <= sale < outage[1] else sale
            assert arrival == expected
        beats = history.heartbeat_times(60, phase_s=7)
        assert not [t for t in beats if outage[0] <= t < outage[1]]
        assert len(beats) == pytest.approx((7 * 86400 - 6 * 3600) / 60, abs=2)
        inside = bisect.bisect_left(history.sales, outage[1]) - bisect.bisect_left(
            history.sales, outage[0]
        )
        assert inside > 10

    # backlog: sales and heartbeats go on, uploads wait.
    backlog = faulty["store004-lane02"]
    assert backlog.sales == plain["store004-lane02"].sales
    assert backlog.no_uploads == [(START + 2 * 86400, START + 3 * 86400)]
    assert not backlog.no_heartbeats
    assert [f.as_dict()["kind"] for f in backlog.faults] == ["backlog"]


def test_ground_truth_documents() -> None:
    fault = parse_fault("network-down:store003@+1h/30m", FLEET, START)
    doc = fault.as_dict()
    assert doc["terminals"] == list(FLEET.store_by_id["store003"].lanes)
    assert doc["start"] == "2026-02-02T01:00:00+00:00" and doc["end"] == "2026-02-02T01:30:00+00:00"
    assert (doc["sells"], doc["heartbeats"], doc["uploads"]) == (True, False, False)


def test_random_faults_are_seeded_and_inside_the_window() -> None:
    first = random_faults(FLEET, START, END, 40, seed=3)
    assert first == random_faults(FLEET, START, END, 40, seed=3)
    assert first != random_faults(FLEET, START, END, 40, seed=4)
    assert len(first) == 40 and {f.kind for f in first} == {"silent", "dead", "network-down",
                                                             "backlog", "dead-reader"}  # fmt: skip
    assert {f.variant for f in first if f.kind == "dead-reader"} <= {
        "unplugged", "worn-head", "no-evidence"}  # fmt: skip
    assert all(f.variant is None for f in first if f.kind != "dead-reader")
    for fault in first:
        assert START <= fault.start < END
        assert fault.end is None or fault.start < fault.end <= END
        assert isinstance(fault, Fault)
    with pytest.raises(FaultSpecError, match="unknown fault kind"):
        random_faults(FLEET, START, END, 1, kinds=["gremlins"])


def test_generate_history_covers_a_fleet_week() -> None:
    """Issue 14 wants 8 weeks of 1,000 lanes; a slice of that here keeps the suite quick
    (docs/fleet-simulator.md has the full measurement)."""
    fleet = build_fleet(100, 10, seed=1)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    traffic = Traffic(fleet)
    total = sum(
        len(h.sales)
        for h in generate_history(fleet, start, start + timedelta(weeks=1), traffic=traffic)
    )
    assert total > 50_000
