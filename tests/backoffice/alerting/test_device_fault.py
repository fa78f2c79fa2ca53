"""device_fault: the terminal's own report of a broken reader or printer becomes an alert,
and mutes the lane's lane_not_selling; failed card reads become anomaly alerts. Heartbeats
and events come from the fleet simulator's terminal, whose reader evidence runs the agent's
own health defaults and lifecycle — on both backends."""

from __future__ import annotations

import json
from typing import Any

from posedge.backoffice.alerting.devices import device_faults, device_observations
from posedge.backoffice.alerting.engine import evaluate, list_alerts
from posedge.backoffice.alerting.receivers import Receivers
from posedge.backoffice.silence import SilenceSignal
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import Heartbeat
from posedge.simulator.fleet.terminal import SimTerminal

from .conftest import Clock
from .support import T0, Till, normal_day, sim_terminal

HOOK = "http://127.0.0.1:9/hook"  # never contacted: only the outbox is looked at


def beat(store: BackofficeStore, sim: SimTerminal, now: float) -> dict[str, Any]:
    """A heartbeat as the API stores it (validated by the protocol model, then dumped)."""
    doc = Heartbeat.model_validate(sim.heartbeat(now)).model_dump(mode="json")
    store.record_heartbeat(sim.terminal, doc, 60, now=now)
    return doc


def not_selling(*terminals: str) -> Any:
    """A signal source: lane_not_selling active on ``terminals`` (placed, to test muting)."""

    def source(store: BackofficeStore, now: float) -> list[SilenceSignal]:
        return [SilenceSignal("lane_not_selling", t, "S1", True, 1e-9, 1e-6, f"{t}: quiet")
                for t in terminals]  # fmt: skip

    return source


def notified(store: BackofficeStore) -> list[list[tuple[str, str]]]:
    rows = store.db.execute("SELECT body FROM alert_outbox ORDER BY created_at, id").rows
    return [sorted((a["fingerprint"], a["state"]) for a in json.loads(r[0])["alerts"])
            for r in rows]  # fmt: skip


def test_an_unplugged_reader_alerts_at_once_and_mutes_lane_not_selling(
    store: BackofficeStore, clock: Clock
) -> None:
    Receivers(store).add("hook", "webhook", HOOK)
    sim = sim_terminal("S1-lane02")
    clock.now = normal_day(sim, sales=10)
    beat(store, sim, clock.now)
    unplugged = clock.now + 5
    sim.reader.unplug(unplugged)
    clock.now = unplugged + 20  # the terminal's alert is still pending (alert_for 30 s)
    beat(store, sim, clock.now)
    first = evaluate(store, signals=not_selling("S1-lane02"))
    assert not any(t.key.startswith("device_fault") for t in first.transitions)
    clock.now = unplugged + 60
    doc = beat(store, sim, clock.now)
    assert doc["health"]["alerts"][0]["state"] == "firing"
    done = evaluate(store, signals=not_selling("S1-lane02"))
    assert [(t.key, t.kind.value) for t in done.transitions if t.key.startswith("device")] == [
        ("device_fault/S1-lane02", "pending"), ("device_fault/S1-lane02", "firing")]  # fmt: skip
    alerts = {a["fingerprint"]: a for a in list_alerts(store)}
    device = alerts["device_fault/S1-lane02"]
    assert device["summary"] == "S1-lane02: the card reader is disconnected"
    assert device["details"]["fix"] == ["replug the card reader's cable; check reader.url"]
    assert device["details"]["devices"]["reader"]["state"] == "unavailable"
    assert alerts["lane_not_selling/S1-lane02"]["inhibited"] is True
    assert device["inhibited"] is False
    # Notified: the device fault, never the muted lane alert.
    assert notified(store)[-1] == [("device_fault/S1-lane02", "firing")]
    # Replugged: the terminal resolves its alert after keep_firing_for (60 s); the back
    # office keeps the device alert 300 s more, then resolves it and the lane alert (if
    # the lane is still quiet) is no longer muted.
    sim.reader.replug(clock.now + 10)
    for _ in range(8):
        clock.now += 60
        beat(store, sim, clock.now)
        evaluate(store, signals=not_selling("S1-lane02"))
    alerts = {a["fingerprint"]: a for a in list_alerts(store)}
    assert alerts["device_fault/S1-lane02"]["state"] == "resolved"
    assert alerts["lane_not_selling/S1-lane02"]["inhibited"] is False
    assert notified(store)[-1] == [("device_fault/S1-lane02", "resolved"),
                                   ("lane_not_selling/S1-lane02", "firing")]  # fmt: skip


def test_a_worn_head_raises_device_fault_and_a_failed_reads_flag(
    store: BackofficeStore, clock: Clock
) -> None:
    sim = sim_terminal("S1-lane03")
    end = normal_day(sim, sales=30)
    for i in range(6):  # six customers, every swipe unreadable
        sim.sell_unreadable(end + 60 + 240 * i)
    sim.commit_all()
    Till(sim).upload(store)
    clock.now = end + 60 + 240 * 6
    beat(store, sim, clock.now)
    evaluate(store, signals=lambda s, n: [])
    alerts = {a["fingerprint"]: a for a in list_alerts(store, state="firing")}
    device = alerts["device_fault/S1-lane03"]
    assert "swipes could not be read" in device["summary"]
    assert "cleaning card" in device["details"]["fix"][0]
    flag = alerts["card_read_failed/S1-lane03"]
    first = flag["details"]["flags"][0]
    assert "unreadable swipe" in first["detail"] and len(first["txns"]) == 2
    # The flag points at the sales' ends, never at card data.
    assert "pan" not in json.dumps(flag).replace("pan_token", "")


def test_one_unreadable_card_is_not_a_flag(store: BackofficeStore, clock: Clock) -> None:
    sim = sim_terminal("S1-lane04")
    end = normal_day(sim, sales=10)
    sim.sell_unreadable(end + 60)  # one customer's card: demagnetised, paid cash
    for i in range(5):
        sim.sell(end + 3000 + 180 * i)  # 40 min later: normal sales again
    sim.sell_unreadable(end + 5000)
    sim.commit_all()
    Till(sim).upload(store)
    clock.now = end + 6000
    beat(store, sim, clock.now)
    evaluate(store, signals=lambda s, n: [])
    assert list_alerts(store) == []  # 2 in 30 min would flag; 2 in 80 min do not


def test_an_older_agent_is_judged_by_its_device_states_and_warnings_do_not_count(
    store: BackofficeStore, clock: Clock
) -> None:
    old = {"terminal": "S1-lane05", "sent_at": "x",
           "devices": {"printer": {"state": "fault", "faults": ["cover_open"]},
                       "reader": {"state": "ok", "faults": []}}}  # fmt: skip
    store.record_heartbeat("S1-lane05", old, 60, now=clock.now)
    warning = {"terminal": "S1-lane06", "sent_at": "x", "devices": {},
               "health": {"enabled": True, "checks": [], "alerts": [
                   {"name": "printer.paper", "state": "firing", "since": "x",
                    "summary": "the paper roll is nearly used up",
                    "labels": {"check": "printer.paper", "severity": "warning"}},
                   {"name": "sync.failures", "state": "firing", "since": "x",
                    "summary": "20 uploads failed",
                    "labels": {"check": "sync.failures", "severity": "critical"}}]}}  # fmt: skip
    store.record_heartbeat("S1-lane06", warning, 60, now=clock.now)
    evaluate(store, signals=lambda s, n: [])
    (alert,) = list_alerts(store)
    assert alert["fingerprint"] == "device_fault/S1-lane05"
    assert alert["summary"] == "S1-lane05: the printer is fault (cover_open)"


def test_malformed_health_blocks_are_no_fault_and_no_crash() -> None:
    for doc in (None, {}, {"health": "yes"}, {"health": {"alerts": "x"}},
                {"health": {"alerts": [1, None, {"name": 5}]}}, {"devices": []},
                {"devices": {"reader": "gone"}},
                {"health": {"enabled": False},
                 "devices": {"reader": {"state": "ok"}}}):  # fmt: skip
        assert device_faults(doc) == []  # type: ignore[arg-type]
    disabled = {"health": {"enabled": False}, "devices": {"reader": {"state": "unavailable"}}}
    assert [f["name"] for f in device_faults(disabled)] == ["devices.reader"]
    # Stored heartbeat texts: none, not JSON, a warning only, a fault.
    rows = [("T1", None), ("T2", '{"critical": '), ("T3", json.dumps({"devices": {}})),
            ("T4", json.dumps(disabled))]  # fmt: skip
    (found,) = device_observations(rows, lambda terminal: "S1")
    assert found[:3] == ("T4", "S1", True) and found[3] == "T4: the card reader is unavailable"


def test_the_stored_lifecycle_state_is_the_lifecycles_export(
    store: BackofficeStore, clock: Clock
) -> None:
    """The engine stores export_state() and restores it: a fired alert survives rounds."""
    sim = sim_terminal("S1-lane07")
    clock.now = normal_day(sim, sales=3, start=T0)
    sim.reader.unplug(clock.now)
    clock.now += 60
    beat(store, sim, clock.now)
    evaluate(store, signals=lambda s, n: [])
    (row,) = store.db.execute("SELECT lifecycle FROM alerts").rows
    saved = json.loads(row[0])
    assert saved["state"] == "firing" and saved["bad"] is True
    clock.now += 30
    beat(store, sim, clock.now)
    again = evaluate(store, signals=lambda s, n: [])
    assert again.transitions == []  # still firing: restored, not fired twice
