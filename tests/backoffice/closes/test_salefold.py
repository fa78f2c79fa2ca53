"""SaleFold (the close's fast fold) gives what the journal's projection gives: after every
event of simulated and hand-made sales, the same outcome, sale test, amount, currency,
brand and entry mode as ``fold_row`` with the agent's ``sale_outcome``/``is_sale``."""

from __future__ import annotations

from typing import Any

import pytest

from posedge.agent.close.compute import is_sale, sale_outcome
from posedge.agent.journal.projection import fold_row
from posedge.backoffice.closes.recompute import HeldEvent, payload_of
from posedge.backoffice.closes.salefold import SaleFold
from posedge.simulator.fleet.model import Lane, OpeningHours, Store
from posedge.simulator.fleet.terminal import SaleMix, SimTerminal

T0 = 1_796_104_800.0


def simulated() -> list[dict[str, Any]]:
    store = Store("S9", "Europe/Paris", OpeningHours.parse("mon-sun 00:00-24:00"))
    mix = SaleMix(declined=0.2, cancelled=0.1, abandoned=0.1)
    sim = SimTerminal(Lane("S9-lane01", "S9", 1), store, seed=3, mix=mix)
    for n in range(60):
        sim.online = not 20 <= n < 40  # an outage: offline approvals and declines
        sim.sell(T0 + n * 60)
        if n == 45:
            sim.forward_pending(T0 + n * 60 + 30)
    sim.commit_all()
    return sim.events()


def by_hand() -> list[tuple[str, str, dict[str, Any]]]:
    """(txn, type, payload): voids, in-doubt, forwards declined/expired, nulls, v1 events."""
    created = {"amount": 500, "currency": "EUR", "request_hash": "ab" * 32}
    card = {"masked_pan": "411111******1111", "brand": "visa", "entry_mode": "swipe"}
    steps: list[tuple[str, str, dict[str, Any]]] = []
    sales: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
        ("void", [("auth.requested", {"attempt": "void:online", "request": {"x": 1}}),
                  ("auth.approved", {"attempt": "void:online"}), ("sale.voided", {}),
                  ("reversal.requested", {"attempt": "void:online", "key": "k"}),
                  ("reversal.acked", {"attempt": "void:online", "had_authorization": True})]),
        ("doubt", [("auth.requested", {"attempt": "doubt:online"}),
                   ("auth.unknown", {"attempt": "doubt:online"}),
                   ("reversal.requested", {"attempt": "doubt:online"}),
                   ("reversal.acked", {"attempt": "doubt:online"}), ("sale.reversed", {})]),
        ("fwd-declined", [("auth.unavailable", {"attempt": "fwd-declined:online"}),
                          ("offline.approved", {"offline": True}),
                          ("forward.requested", {"attempt": "fwd-declined:forward"}),
                          ("forward.declined", {"attempt": "fwd-declined:forward"})]),
        ("fwd-expired", [("offline.approved", {}),
                         ("forward.requested", {"attempt": "fwd-expired:forward"}),
                         ("forward.expired", {}),
                         ("reversal.requested", {"attempt": "fwd-expired:forward"}),
                         ("reversal.acked", {"attempt": "fwd-expired:forward"})]),
        ("nulls", [("card.read", {"brand": None, "entry_mode": "manual"}),
                   ("auth.approved", {"brand": "amex", "amount": 9, "currency": "USD"})]),
        ("v1", [("auth.requested", {}), ("auth.approved", {}), ("sale.voided", {}),
                ("reversal.requested", {}), ("reversal.acked", {})]),
        ("no-hash", [("auth.approved", {"attempt": "no-hash:online"})]),
    ]  # fmt: skip
    for txn, tail in sales:
        first = {k: v for k, v in created.items() if not (txn == "no-hash" and k == "request_hash")}
        steps.append((txn, "sale.created", first))
        steps.append((txn, "card.read", card))
        steps += [(txn, type_, payload) for type_, payload in tail]
    return steps


def fold_both(steps: list[tuple[str, str, dict[str, Any]]]) -> int:
    rows: dict[str, dict[str, Any]] = {}
    fast: dict[str, SaleFold] = {}
    for seq, (txn, type_, payload) in enumerate(steps, start=1):
        event = HeldEvent(seq, "2026-12-01T00:00:00+00:00", type_, txn, payload)
        rows[txn] = fold_row(rows.get(txn), seq, event.ts, type_, txn, payload)
        if txn in fast:
            fast[txn].apply(type_, txn, payload_of(event))
        else:
            fast[txn] = SaleFold(type_, txn, payload_of(event))
        row, mine = rows[txn], fast[txn].row()
        assert sale_outcome(mine) == sale_outcome(row), (txn, type_)
        assert is_sale(mine) == is_sale(row), (txn, type_)
        for key in ("amount", "currency", "state"):
            assert mine[key] == row[key], (txn, type_, key)
        for key in ("brand", "entry_mode", "forward", "reversal"):
            assert mine["summary"].get(key) == row["summary"].get(key), (txn, type_, key)
    return len(rows)


def test_simulated_sales_fold_the_same() -> None:
    events = simulated()
    steps = [(e["txn"], e["type"], e["payload"]) for e in events if e["txn"]]
    assert fold_both(steps) == 60
    assert {e["type"] for e in events} >= {"offline.approved", "forward.approved",
                                            "auth.declined", "sale.cancelled"}  # fmt: skip


@pytest.mark.parametrize("txn", ["void", "doubt", "fwd-declined", "fwd-expired", "nulls", "v1",
                                 "no-hash"])  # fmt: skip
def test_hand_made_sales_fold_the_same(txn: str) -> None:
    assert fold_both([step for step in by_hand() if step[0] == txn]) == 1
