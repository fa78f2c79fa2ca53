"""The alert lifecycle over the database: pending → firing → resolved, grouping by store,
inhibition by a store offline, repeat interval, state across restarts and replicas —
on both backends. Silence signals come from the silence detector over real heartbeats,
or (to place them exactly) as SilenceSignal values through the engine's signal source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posedge.backoffice.alerting.config import AlertConfig
from posedge.backoffice.alerting.engine import EVALUATION_LOCK, evaluate, list_alerts
from posedge.backoffice.alerting.receivers import Receivers
from posedge.backoffice.db import lock_key
from posedge.backoffice.silence import SilenceConfig, SilenceSignal, StoreCalendar
from posedge.backoffice.store import BackofficeStore

from .conftest import Clock
from .support import T0, Till, normal_day, sim_terminal

HOOK = "http://127.0.0.1:9/hook"  # never contacted here: only the outbox is looked at


class Signals:
    """A signal source the test sets: terminal -> kinds active now."""

    def __init__(self, lanes: dict[str, str]) -> None:
        self.lanes = lanes  # terminal -> store
        self.active: dict[str, set[str]] = {t: set() for t in lanes}

    def __call__(self, store: BackofficeStore, now: float) -> list[SilenceSignal]:
        out = []
        for terminal, home in sorted(self.lanes.items()):
            for kind in ("terminal_not_alive", "sales_not_arriving", "lane_not_selling"):
                on = kind in self.active[terminal]
                summary = f"{terminal}: {kind} {'yes' if on else 'no'}"
                out.append(SilenceSignal(kind, terminal, home, on, 1.0, 0.5, summary))
        return out


def outbox(store: BackofficeStore) -> list[dict[str, Any]]:
    rows = store.db.execute("SELECT receiver, body FROM alert_outbox ORDER BY created_at, id").rows
    return [{"receiver": r[0], "body": json.loads(r[1])} for r in rows]


def names(body: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["fingerprint"], a["state"]) for a in body["alerts"])


@pytest.fixture
def hooked(store: BackofficeStore) -> BackofficeStore:
    Receivers(store).add("hook", "webhook", HOOK)
    return store


def test_silence_pending_then_firing_then_resolved(hooked: BackofficeStore, clock: Clock) -> None:
    signals = Signals({"S1-lane01": "S1", "S1-lane02": "S1"})
    signals.active["S1-lane01"].add("lane_not_selling")
    first = evaluate(hooked, signals=signals)
    assert [(t.key, t.kind.value) for t in first.transitions] == [
        ("lane_not_selling/S1-lane01", "pending")
    ]
    assert list_alerts(hooked, state="pending")[0]["terminal"] == "S1-lane01"
    assert outbox(hooked) == []  # pending notifies nobody
    clock.now += 60
    second = evaluate(hooked, signals=signals)
    assert [t.kind.value for t in second.transitions] == ["firing"]
    (note,) = outbox(hooked)
    assert note["body"]["group"] == {"store": "S1"} and note["body"]["reason"] == "change"
    assert names(note["body"]) == [("lane_not_selling/S1-lane01", "firing")]
    signals.active["S1-lane01"].clear()
    clock.now += 60
    assert evaluate(hooked, signals=signals).transitions == []  # keeps firing 300 s
    clock.now += 300
    assert [t.kind.value for t in evaluate(hooked, signals=signals).transitions] == ["resolved"]
    last = outbox(hooked)[-1]["body"]
    assert last["status"] == "resolved"
    assert names(last) == [("lane_not_selling/S1-lane01", "resolved")]
    assert last["alerts"][0]["ends_at"] is not None
    assert [a["state"] for a in list_alerts(hooked)] == ["resolved"]


def test_a_condition_that_keeps_changing_is_one_flapping_alert(
    hooked: BackofficeStore, clock: Clock
) -> None:
    signals = Signals({"S1-lane01": "S1"})
    kinds = []
    for step in range(6):  # bad, good, bad, ... : six changes within the flap window
        signals.active["S1-lane01"] = {"sales_not_arriving"} if step % 2 == 0 else set()
        kinds += [t.kind.value for t in evaluate(hooked, signals=signals).transitions]
        clock.now += 30
    assert kinds == ["pending", "cancelled", "pending", "cancelled", "pending", "flapping"]
    (note,) = outbox(hooked)
    assert names(note["body"]) == [("sales_not_arriving/S1-lane01", "flapping")]
    assert [a["state"] for a in list_alerts(hooked)] == ["flapping"]


def test_one_notification_per_store_group_and_a_repeat_interval(
    hooked: BackofficeStore, clock: Clock
) -> None:
    config = AlertConfig(repeat_interval_s=3600)
    lanes = {"S1-lane01": "S1", "S1-lane02": "S1", "S1-lane03": "S1", "S2-lane01": "S2"}
    signals = Signals(lanes)
    for terminal in ("S1-lane01", "S1-lane02", "S2-lane01"):
        signals.active[terminal].add("lane_not_selling")
    evaluate(hooked, config=config, signals=signals)
    clock.now += 60
    evaluate(hooked, config=config, signals=signals)
    bodies = {n["body"]["group"]["store"]: n["body"] for n in outbox(hooked)}
    assert names(bodies["S1"]) == [("lane_not_selling/S1-lane01", "firing"),
                                   ("lane_not_selling/S1-lane02", "firing")]  # fmt: skip
    assert names(bodies["S2"]) == [("lane_not_selling/S2-lane01", "firing")]
    clock.now += 1800
    evaluate(hooked, config=config, signals=signals)
    assert len(outbox(hooked)) == 2  # nothing changed, not due yet
    clock.now += 1800
    evaluate(hooked, config=config, signals=signals)
    repeats = outbox(hooked)[2:]
    assert sorted(n["body"]["reason"] for n in repeats) == ["repeat", "repeat"]
    assert len({n["body"]["id"] for n in outbox(hooked)}) == 4


def test_a_store_offline_inhibits_its_lanes_silence_alerts(
    hooked: BackofficeStore, clock: Clock
) -> None:
    lanes = {"S1-lane01": "S1", "S1-lane02": "S1", "S1-lane03": "S1", "S2-lane01": "S2"}
    signals = Signals(lanes)
    for terminal in ("S1-lane01", "S1-lane02", "S2-lane01"):
        signals.active[terminal] |= {"terminal_not_alive", "lane_not_selling"}
    evaluate(hooked, signals=signals)
    clock.now += 60
    evaluate(hooked, signals=signals)
    bodies = {n["body"]["group"]["store"]: n["body"] for n in outbox(hooked)}
    assert names(bodies["S1"]) == [("store_offline/S1", "firing")]  # the lanes are muted
    assert len(names(bodies["S2"])) == 2  # one lane of four is down: not a store outage
    muted = list_alerts(hooked, state="firing", store_id="S1")
    assert {a["fingerprint"]: a["inhibited"] for a in muted} == {
        "lane_not_selling/S1-lane01": True, "lane_not_selling/S1-lane02": True,
        "store_offline/S1": False, "terminal_not_alive/S1-lane01": True,
        "terminal_not_alive/S1-lane02": True,
    }  # fmt: skip
    # The store comes back but lane02 stays dead: muted while store_offline keeps firing
    # (300 s), then its alerts are notified, the store's resolved; lane01's, never
    # notified as firing, resolve silently.
    signals.active["S1-lane01"].clear()
    clock.now += 60
    evaluate(hooked, signals=signals)
    assert len(outbox(hooked)) == 2
    clock.now += 300
    evaluate(hooked, signals=signals)
    last = [n["body"] for n in outbox(hooked) if n["body"]["group"]["store"] == "S1"][-1]
    assert names(last) == [("lane_not_selling/S1-lane02", "firing"),
                           ("store_offline/S1", "resolved"),
                           ("terminal_not_alive/S1-lane02", "firing")]  # fmt: skip


def test_anomaly_flags_become_alerts_that_resolve_after_the_hold(
    hooked: BackofficeStore, clock: Clock
) -> None:
    sim = sim_terminal("S1-lane01")
    end = normal_day(sim, sales=5)
    clock.now = end + 60
    till = Till(sim)
    seq = till.add(end, "config.changed", None, {"changed": ["sync.url"], "restart_required": True})
    till.upload(hooked)
    config = AlertConfig(anomaly_hold_s=600)
    done = evaluate(hooked, config=config, signals=lambda s, n: [])
    assert done.new_flags == 1 and [t.kind.value for t in done.transitions] == ["pending", "firing"]
    (note,) = outbox(hooked)
    (alert,) = note["body"]["alerts"]
    assert alert["fingerprint"] == "config_changed/S1-lane01" and alert["store"] == "S1"
    assert alert["details"]["flags"][0]["seqs"] == [seq]
    assert "sync.url" in alert["summary"]
    clock.now += 601
    later = evaluate(hooked, config=config, signals=lambda s, n: [])
    assert [t.kind.value for t in later.transitions] == ["resolved"]


def test_sales_outside_the_store_calendar_alert(hooked: BackofficeStore, clock: Clock) -> None:
    calendar = StoreCalendar.from_mapping(
        "S1", {"timezone": "Europe/Paris", "hours": "mon-sun 08:00-20:00"}
    )
    config = AlertConfig(silence=SilenceConfig(calendars={"S1": calendar}))
    till = Till(sim_terminal("S1-lane01"))
    night = T0 + 86_400 - 2 * 3600  # 23:53 in Paris
    txn, seqs = till.sale(night)
    till.upload(hooked)
    clock.now = night + 60
    done = evaluate(hooked, config=config, signals=lambda s, n: [])
    assert not any("outside_hours" in note for note in done.notes)
    (alert,) = list_alerts(hooked, state="firing")
    assert alert["fingerprint"] == "outside_hours/S1-lane01"
    assert alert["details"]["flags"][0]["seqs"] == [seqs["sale.created"]]
    assert alert["details"]["flags"][0]["txns"] == [txn]


def test_state_survives_a_restart_and_the_lock_admits_one_evaluator(
    databases: Any, db_target: Path | str, clock: Clock
) -> None:
    signals = Signals({"S1-lane01": "S1"})
    signals.active["S1-lane01"].add("sales_not_arriving")
    with BackofficeStore(db_target, clock=clock) as first:
        Receivers(first).add("hook", "webhook", HOOK)
        assert [t.kind.value for t in evaluate(first, signals=signals).transitions] == ["pending"]
    clock.now += 60
    with BackofficeStore(db_target, clock=clock) as again:  # a restart, or another replica
        assert [t.kind.value for t in evaluate(again, signals=signals).transitions] == ["firing"]
        if databases.backend != "postgresql":
            return
        with BackofficeStore(db_target, clock=clock) as other, other.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(EVALUATION_LOCK),))
            clock.now += 600
            signals.active["S1-lane01"].clear()
            busy = evaluate(again, signals=signals)
            assert not busy.evaluated and busy.transitions == []
        assert evaluate(again, signals=signals).evaluated  # the lock is free again
        clock.now += 300  # good for keep_firing_for since that round
        assert [t.kind.value for t in evaluate(again, signals=signals).transitions] == ["resolved"]


def test_an_evaluation_overtaken_while_it_observed_observes_again(
    databases: Any, db_target: Path | str, clock: Clock
) -> None:
    """Two evaluators (the CLI and serve's alert process; or two replicas): the slower
    one observed a lane as quiet, the faster one then found it silent and committed the
    pending alert. The slower one must not apply its stale observation (that cancelled
    the pending alert and deleted it) but observe again."""
    lanes = {"S1-lane01": "S1"}
    fresh = Signals(lanes)
    fresh.active["S1-lane01"].add("lane_not_selling")
    calls: list[float] = []

    def stale_then_fresh(store: BackofficeStore, now: float) -> list[SilenceSignal]:
        calls.append(now)
        if len(calls) == 1:  # the other evaluator runs and commits while this one observes
            clock.now += 30  # ... a little later
            with BackofficeStore(db_target, clock=clock) as other:
                moves = evaluate(other, signals=fresh).transitions
                assert [(t.key, t.kind.value) for t in moves] == [
                    ("lane_not_selling/S1-lane01", "pending")
                ]
            return Signals(lanes)(store, now)  # observed before: the lane still quiet
        return fresh(store, now)

    with BackofficeStore(db_target, clock=clock) as slow:
        started = clock.now
        done = evaluate(slow, signals=stale_then_fresh)
        assert done.evaluated and calls == [started, started + 30]  # observed again, at now
        assert done.transitions == []  # nothing moved: the lane is pending, as stored
        (alert,) = list_alerts(slow)
        assert (alert["fingerprint"], alert["state"]) == ("lane_not_selling/S1-lane01", "pending")
        clock.now += 600  # past the rule's for: the pending alert fires as it should
        moves = evaluate(slow, signals=fresh).transitions
        assert [(t.key, t.kind.value) for t in moves] == [("lane_not_selling/S1-lane01", "firing")]


def test_an_evaluation_overtaken_every_time_gives_up_and_says_so(
    store: BackofficeStore, db_target: Path | str, clock: Clock
) -> None:
    quiet = Signals({"S1-lane01": "S1"})

    def always_overtaken(observing: BackofficeStore, now: float) -> list[SilenceSignal]:
        with BackofficeStore(db_target, clock=clock) as other:
            assert evaluate(other, signals=quiet).evaluated
        return quiet(observing, now)

    done = evaluate(store, signals=always_overtaken)
    assert not done.evaluated and done.transitions == []
    assert "committed while this one observed, 3 times" in done.notes[-1]


def test_real_silence_signals_from_heartbeats(hooked: BackofficeStore, clock: Clock) -> None:
    for lane in ("S1-lane01", "S1-lane02", "S1-lane03"):
        hooked.record_heartbeat(lane, {"terminal": lane, "sent_at": "x"}, 60, now=clock.now)
    clock.now += 30
    hooked.record_heartbeat("S1-lane01", {"terminal": "S1-lane01"}, 60, now=clock.now)
    clock.now += 170  # lanes 02 and 03: 200 s without a heartbeat (limit 3 x 60 s)
    first = evaluate(hooked)
    clock.now += 60
    second = evaluate(hooked)
    fired = {t.key for t in first.transitions + second.transitions if t.kind.value == "firing"}
    assert {"store_offline/S1", "terminal_not_alive/S1-lane02",
            "terminal_not_alive/S1-lane03"} <= fired  # fmt: skip
    assert "terminal_not_alive/S1-lane01" not in fired
    (note,) = outbox(hooked)  # the lanes' alerts are muted by the store's
    assert names(note["body"]) == [("store_offline/S1", "firing")]


def test_bad_settings_name_the_setting() -> None:
    from posedge.backoffice.alerting.config import AlertConfigError

    with pytest.raises(AlertConfigError, match=r"alerts\.repeat_interval_s is -5"):
        AlertConfig(repeat_interval_s=-5)
    with pytest.raises(AlertConfigError, match=r"store_offline_fraction is 1\.5"):
        AlertConfig(store_offline_fraction=1.5)
    with pytest.raises(AlertConfigError, match=r"interval_s is nan"):
        AlertConfig(interval_s=float("nan"))
    assert T0 > 0
