"""A terminal's realistic event stream for the anomaly and alert tests.

Normal traffic comes from the fleet simulator's terminal (the agent's event types and
payloads, the agent's hash chain under a device key); :class:`Till` continues the same
chain with hand-placed events shaped like the agent's sales engine writes them
(``agent/sales/engine.py``), at chosen times, for the situations a test needs.
"""

from __future__ import annotations

import time
from typing import Any

from posedge.agent.journal.canonical import canonical_json
from posedge.agent.journal.chain import ChainSigner
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import EventBatch
from posedge.simulator.fleet.model import Lane, OpeningHours, Store
from posedge.simulator.fleet.terminal import SaleMix, SimTerminal

T0 = 1_796_000_000.0  # 2026-11-30T00:53:20Z, a Monday
TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32


def iso_us(when: float) -> str:
    second = int(when)
    micros = min(999_999, round((when - second) * 1_000_000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{micros:06d}+00:00"


def sim_store(store_id: str = "S1", hours: str = "mon-sun 00:00-24:00") -> Store:
    return Store(store_id, "Europe/Paris", OpeningHours.parse(hours))


def sim_terminal(terminal: str = "S1-lane01", store: Store | None = None) -> SimTerminal:
    store = store or sim_store()
    mix = SaleMix(declined=0.0, cancelled=0.0, abandoned=0.0)
    return SimTerminal(Lane(terminal, store.id, 1), store, seed=11, mix=mix)


class Till:
    """Continues ``sim``'s chain with events at chosen times; ``upload`` stores them."""

    def __init__(self, sim: SimTerminal) -> None:
        self.terminal = sim.terminal
        self.signer = ChainSigner(sim.device_key)
        self.seq = sim.head_seq
        self.prev = sim.head_hash
        self.pending: list[dict[str, Any]] = sim.events()
        sim.acknowledge(sim.head_seq)
        self.count = 0

    def add(self, when: float, type_: str, txn: str | None, payload: dict[str, Any]) -> int:
        self.seq += 1
        ts = iso_us(when)
        digest = self.signer.event_hash(self.prev, self.seq, ts, type_, txn,
                                        canonical_json(payload))  # fmt: skip
        event = {"seq": self.seq, "ts": ts, "type": type_, "txn": txn, "payload": payload,
                 "prev_hash": self.prev, "hash": digest}  # fmt: skip
        self.pending.append(event)
        self.prev = digest
        return self.seq

    def sale(
        self,
        when: float,
        *,
        outcome: str = "approved",
        token: str = TOKEN_A,
        entry: str = "swipe",
        void_after: float | None = None,
    ) -> tuple[str, dict[str, int]]:
        """One sale as the engine journals it; returns its txn and the seq of each event
        type. ``outcome``: approved, declined, offline, cancelled_after_read."""
        self.count += 1
        txn = f"s-{int(when * 1000):x}-{self.count:04d}"
        seqs: dict[str, int] = {}
        seqs["sale.created"] = self.add(when, "sale.created", txn, {
            "amount": 1250, "currency": "EUR", "reference": f"r{self.count}", "online": "prefer",
            "idempotency_key": f"k-{txn}", "request_hash": "0" * 64})  # fmt: skip
        seqs["card.read"] = self.add(when + 4, "card.read", txn, {
            "masked_pan": "411111******1111", "brand": "visa", "entry_mode": entry,
            "pan_token": token, "expired": False})  # fmt: skip
        if outcome == "cancelled_after_read":
            seqs["sale.cancelled"] = self.add(when + 9, "sale.cancelled", txn,
                                              {"reason": "cancelled by the till",
                                               "receipt": "not_required"})  # fmt: skip
            return txn, seqs
        attempt = f"{txn}:online"
        self.add(when + 4.01, "auth.requested", txn, {"attempt": attempt, "amount": 1250,
                 "currency": "EUR", "entry_mode": entry, "request": {}})  # fmt: skip
        if outcome == "approved":
            seqs["approval"] = self.add(when + 5, "auth.approved", txn, {
                "attempt": attempt, "auth_code": "A1B2C3", "approved_at": iso_us(when + 5),
                "receipt": "pending"})  # fmt: skip
        elif outcome == "declined":
            seqs["decline"] = self.add(when + 5, "auth.declined", txn, {
                "attempt": attempt, "reason": "do not honour", "receipt": "pending"})  # fmt: skip
        elif outcome == "offline":
            self.add(when + 5, "auth.unavailable", txn, {"attempt": attempt,
                                                         "reason": "host unreachable"})  # fmt: skip
            seqs["approval"] = self.add(when + 5.01, "offline.approved", txn, {
                "offline": True, "forward_by": iso_us(when + 72 * 3600),
                "approved_at": iso_us(when + 5), "receipt": "pending"})  # fmt: skip
        self.add(when + 5.5, "receipt.printing", txn, {"copies": ["customer"]})
        self.add(when + 7, "receipt.printed", txn, {"copies": ["customer"]})
        if void_after is not None:
            seqs["sale.voided"] = self.add(when + 5 + void_after, "sale.voided", txn, {
                "reason": "voided by the till", "receipt": "pending",
                "after_s": void_after})  # fmt: skip
        return txn, seqs

    def upload(self, store: BackofficeStore) -> None:
        """Everything pending, in batches of at most 500, through the store's ingest."""
        while self.pending:
            part, self.pending = self.pending[:500], self.pending[500:]
            result = store.ingest(EventBatch.model_validate({
                "terminal": self.terminal, "first_seq": part[0]["seq"],
                "last_seq": part[-1]["seq"], "events": part}))  # fmt: skip
            assert result.status == "ok", result.detail


def normal_day(sim: SimTerminal, sales: int = 60, start: float = T0) -> float:
    """Boot and ``sales`` sales one every 3 minutes, committed; returns the end time."""
    sim.boot(start)
    for i in range(sales):
        sim.sell(start + 30 + 180 * i)
    sim.commit_all()
    return start + 30 + 180 * sales
