"""The dead-reader fault: its variants, their shares, and the evidence a real agent gives."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from posedge.protocol.models import Heartbeat
from posedge.simulator.fleet.faults import FaultSpecError, parse_fault, random_faults
from posedge.simulator.fleet.history import generate_history, simulate_terminal
from posedge.simulator.fleet.model import build_fleet
from posedge.simulator.fleet.reader import READER_VARIANTS, ReaderHealth, pick_variant

FLEET = build_fleet(20, 2, seed=1)
T0 = datetime(2026, 10, 20, tzinfo=UTC).timestamp()  # a Tuesday
LANE = FLEET.lanes[0].terminal
AT = T0 + 14 * 3600  # 14:00 UTC, the store open and busy


def _run(variant: str, hours: float = 3.0) -> tuple[object, float]:
    fault = parse_fault(f"dead-reader={variant}:{LANE}@+14h/{hours:g}h", FLEET, T0)
    sim = simulate_terminal(FLEET, LANE, T0, AT + 5 * 3600, [fault])
    return sim, fault.start


def test_variant_syntax_and_errors() -> None:
    fault = parse_fault(f"dead-reader=worn-head:{LANE}@+1h/2h", FLEET, T0)
    assert (fault.kind, fault.variant, fault.end - fault.start) == (
        "dead-reader",
        "worn-head",
        7200,
    )
    assert fault.spec(T0) == f"dead-reader=worn-head:{LANE}@+1h/2h"
    assert fault.as_dict()["variant"] == "worn-head"
    with pytest.raises(FaultSpecError, match=r"unknown dead-reader variant 'melted'.*unplugged"):
        parse_fault(f"dead-reader=melted:{LANE}@+1h", FLEET, T0)
    with pytest.raises(FaultSpecError, match="only dead-reader has variants"):
        parse_fault(f"silent=unplugged:{LANE}@+1h", FLEET, T0)
    # Without a variant: drawn, but the same for the same spec and fleet.
    drawn = {parse_fault(f"dead-reader:{LANE}@+{h}h", FLEET, T0).variant for h in range(1, 40)}
    assert drawn <= set(READER_VARIANTS) and len(drawn) == 3
    again = parse_fault(f"dead-reader:{LANE}@+7h", FLEET, T0)
    assert again == parse_fault(f"dead-reader:{LANE}@+7h", FLEET, T0)


def test_variant_shares() -> None:
    assert sum(READER_VARIANTS.values()) == pytest.approx(1.0)
    counts = Counter(pick_variant(i / 10_000) for i in range(10_000))
    for name, share in READER_VARIANTS.items():
        assert counts[name] == pytest.approx(share * 10_000, abs=1)
    faults = random_faults(FLEET, T0, T0 + 7 * 86400, 3000, kinds=["dead-reader"], seed=3)
    drawn = Counter(f.variant for f in faults)
    for name, share in READER_VARIANTS.items():
        assert drawn[name] / 3000 == pytest.approx(share, abs=0.04)


def test_unplugged_reports_device_state_and_a_critical_alert_after_alert_for() -> None:
    sim, start = _run("unplugged")
    before = sim.heartbeat(start - 1)
    assert before["devices"]["reader"]["state"] == "ok" and "health" not in before
    # 10 s polls, alert_for 30 s: pending at the first poll after the unplug, firing 30 s later.
    pending = sim.heartbeat(start + 15)
    alerts = pending["health"]["alerts"]
    assert pending["devices"]["reader"] == {"state": "unavailable", "faults": ["disconnected"]}
    assert [(a["name"], a["state"]) for a in alerts] == [("reader.present", "pending")]
    beat = sim.heartbeat(start + 60)
    Heartbeat.model_validate(beat)  # the protocol's own model accepts it
    (alert,) = beat["health"]["alerts"]
    assert alert["state"] == "firing" and alert["labels"]["severity"] == "critical"
    assert alert["summary"] == "the card reader is disconnected"
    fired = sim.reader.firing_since["reader.present"]
    assert start + 30 <= fired <= start + 40
    check = {c["name"]: c for c in beat["health"]["checks"]}["reader.present"]
    assert check["status"] == "fail" and "replug" in check["fix"]
    # Sales are refused while the reader is gone (503): nothing journaled in the fault.
    times = [row.ts for row in sim.backlog if start <= row.ts < start + 3 * 3600]
    assert times == []
    # Replugged: the alert resolves after keep_firing_for (60 s) of good polls.
    after = sim.heartbeat(start + 3 * 3600 + 120)
    assert after["devices"]["reader"]["state"] == "ok"
    assert after["health"]["alerts"] == []


def test_worn_head_journals_failed_swipes_and_fires_reader_errors() -> None:
    sim, start = _run("worn-head")
    events = [e for e in sim.events() if start <= _ts(e) < start + 3 * 3600]
    types = Counter(e["type"] for e in events)
    assert types["card.read_failed"] >= 20
    assert types["auth.approved"] == 0 and types["card.read"] == 0
    assert types["sale.cancelled"] + types["sale.abandoned"] == types["sale.created"] > 5
    assert all("pan" not in json_keys(e["payload"]) for e in events)
    beat = sim.heartbeat(start + 3600)
    (alert,) = beat["health"]["alerts"]
    assert alert["name"] == "reader.errors" and alert["labels"]["severity"] == "critical"
    assert alert["value"] >= 0.5
    # The alert fires at the warn rate (4 of the last 20 swipes failed) after alert_for
    # (30 s), and is critical from the first poll with half of them failed (10 swipes).
    failed = sorted(_ts(e) for e in events if e["type"] == "card.read_failed")
    assert sim.reader.firing_since["reader.errors"] >= failed[3] + 30
    assert failed[9] <= sim.reader.critical_since["reader.errors"] <= failed[9] + 10
    assert beat["devices"]["reader"]["state"] == "ok"  # the reader answers its status


def test_no_evidence_is_the_silent_fault() -> None:
    sim, start = _run("no-evidence")
    beat = sim.heartbeat(start + 3600)
    assert "health" not in beat and beat["devices"]["reader"]["state"] == "ok"
    silent = simulate_terminal(
        FLEET, LANE, T0, AT + 5 * 3600, [parse_fault(f"silent:{LANE}@+14h/3h", FLEET, T0)]
    )
    assert [r.text for r in silent.backlog] == [r.text for r in sim.backlog]


def test_history_keeps_the_attempts_of_a_worn_head() -> None:
    faults = [parse_fault(f"dead-reader=worn-head:{LANE}@+14h/3h", FLEET, T0)]
    (hist,) = generate_history(FLEET, T0, T0 + 86400, faults, lanes=[FLEET.lanes[0]])
    (plain,) = generate_history(FLEET, T0, T0 + 86400, lanes=[FLEET.lanes[0]])
    inside = [t for t in plain.sales if AT <= t < AT + 3 * 3600]
    assert list(hist.attempts) == inside and hist.suppressed == len(inside) > 0
    assert not [t for t in hist.sales if AT <= t < AT + 3 * 3600]


def test_reader_health_clears_a_worn_head_only_when_good_swipes_come_back() -> None:
    reader = ReaderHealth(phase_s=0.0)
    for i in range(20):
        reader.swipe(100.0 + i, True)
    for i in range(10):
        reader.swipe(200.0 + i, False)
    reader.advance(260.0)
    assert reader.critical_alert()
    for i in range(17):
        reader.swipe(300.0 + i, True)
    reader.advance(330.0)
    assert reader.health()["alerts"][0]["state"] == "firing"  # rate 3/20 < clear, keep 60 s
    reader.advance(400.0)
    assert reader.health()["alerts"] == [] and not reader.critical_alert()


def _ts(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["ts"])).timestamp()


def json_keys(doc: object) -> set[str]:
    if isinstance(doc, dict):
        out = set(doc)
        for value in doc.values():
            out |= json_keys(value)
        return out
    return set()
