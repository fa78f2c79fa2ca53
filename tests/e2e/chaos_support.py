"""The pieces of the whole-system chaos test (``test_chaos_money.py``).

- :class:`SaleBook` — what the till knows: per Idempotency-Key the request body
  and, once a POST was answered, the sale id (thread-safe);
- :class:`Driver` — the till, in a thread: re-posts unanswered sales with the
  same key, then sells, cancels and voids at random until the daemon dies;
- :func:`round_faults` / :class:`TrackingFaultPlan` — the faults in front of the
  back office, and the instant by which every delayed request has gone in;
- :func:`analyse_journal` and :func:`money_check` — what the journal export says
  happened, and the money invariant computed independently of
  ``posedge backoffice reconcile`` (a cross-check of the checker).

Nothing here sleeps to synchronise: the driver long-polls the till API; the
only timed things are the fault windows and the SIGKILL instant, which are
the experiment itself.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from posedge.simulator.faults import FaultDecision, FaultPlan

from .daemon_support import Daemon

SEED_ENV = "POSEDGE_CHAOS_SEED"
ROUNDS_ENV = "POSEDGE_CHAOS_ROUNDS"
DEFAULT_SEED = 1206
DEFAULT_ROUNDS = 50
MIN_ROUNDS_FOR_COVERAGE = 20
"""Fewer rounds may legitimately miss a case; the coverage assertion needs this many."""

TERMINAL = "chaos-lane-1"
CURRENCY = "EUR"
AUTH_TIMEOUT_S = 0.5
CARD_DELAY_S = 0.05
KILL_WINDOW_S = 1.5
"""The SIGKILL lands uniformly in [0, KILL_WINDOW_S] seconds after READY."""
ROUND_HARD_LIMIT_S = 15.0
"""A round's driver gives up after this long even if the kill never came (harness guard)."""
OFFLINE_MAX_PER_SALE = 15_000
AMOUNT_MAX = 20_000
"""Amounts above OFFLINE_MAX_PER_SALE are declined (or reversed) when offline."""
DECLINE_ENDING = "13"
"""The back office declines amounts ending in these digits."""

P_CANCEL = 0.12
P_VOID_NOW = 0.2
P_VOID_LATER = 0.12
P_DECLINED_AMOUNT = 0.12

FINAL = frozenset({"approved", "approved_offline", "declined", "reversed", "voided",
                   "cancelled", "abandoned"})  # fmt: skip
CAPTURING = frozenset({"approved", "approved_offline"})
LOST_FORWARDS = frozenset({"declined", "expired"})
# The event after which a sale is in each state (docs/sales.md); the last one wins.
STATE_EVENTS = {
    "auth.approved": "approved", "offline.approved": "approved_offline",
    "auth.declined": "declined", "sale.declined": "declined", "sale.reversed": "reversed",
    "sale.voided": "voided", "sale.cancelled": "cancelled", "sale.abandoned": "abandoned",
}  # fmt: skip
OUTCOME_EVENTS = frozenset(STATE_EVENTS) - {"sale.voided"}
FORWARD_EVENTS = {
    "forward.approved": "approved", "forward.declined": "declined",
    "forward.expired": "expired", "forward.cancelled": "cancelled",
}  # fmt: skip


def chaos_seed() -> int:
    return int(os.environ.get(SEED_ENV, DEFAULT_SEED))


def chaos_rounds() -> int:
    return int(os.environ.get(ROUNDS_ENV, DEFAULT_ROUNDS))


def write_config(path: Path) -> Path:
    """The daemon's configuration: short timeouts, roomy offline limits, quick retries."""
    path.write_text(
        f"""\
[terminal]
id = "{TERMINAL}"

[sales]
currencies = ["{CURRENCY}"]
authorization_timeout = "{int(AUTH_TIMEOUT_S * 1000)}ms"

[offline]
enabled = true
max_per_sale = {{ {CURRENCY} = {OFFLINE_MAX_PER_SALE} }}
max_total = {{ {CURRENCY} = 100000000 }}
max_count = 10000
forward_by = "72h"

[sync]
connect_timeout = "1s"
read_timeout = "2s"
write_timeout = "2s"
pool_timeout = "1s"
backoff_initial = "20ms"
backoff_cap = "250ms"
retry_after_cap = "500ms"
permanent_retry = "1s"
heartbeat_interval = "5s"

[log]
level = "warning"
"""
    )
    return path


# ------------------------------------------------------------------ the back office's faults
class TrackingFaultPlan(FaultPlan):
    """A :class:`FaultPlan` that remembers when the last delayed request will go in.

    A request held back by a ``latency`` rule reaches the back office's handler
    up to ``latency_s`` later — possibly after the agent gave up on it, which is
    exactly the case under test. :attr:`quiet_at` is the monotonic instant after
    which no such request is still on its way, so the final checks cannot race one.
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.quiet_at = 0.0
        self._quiet_lock = threading.Lock()

    def decide(self, endpoint: str) -> FaultDecision:
        decision = super().decide(endpoint)
        if decision.latency_s:
            with self._quiet_lock:
                self.quiet_at = max(self.quiet_at, time.monotonic() + decision.latency_s)
        return decision


def round_faults(rng: random.Random) -> list[dict[str, Any]]:
    """A random mix of faults for one round (a calm round now and then)."""
    if rng.random() < 0.12:
        return []
    rules: list[dict[str, Any]] = []

    def maybe(p: float, rule: dict[str, Any]) -> None:
        if rng.random() < p:
            rules.append(rule)

    late = round(rng.uniform(AUTH_TIMEOUT_S + 0.1, AUTH_TIMEOUT_S + 0.7), 3)
    maybe(0.6, {"kind": "drop_reply", "endpoint": "authorizations",
                "rate": round(rng.uniform(0.05, 0.25), 3)})  # fmt: skip
    # Longer than the agent's authorization timeout: it gives up, journals an unknown
    # outcome and reverses, while the authorization lands later.
    maybe(0.6, {"kind": "latency", "endpoint": "authorizations", "latency_s": late,
                "rate": round(rng.uniform(0.1, 0.35), 3)})  # fmt: skip
    maybe(0.35, {"kind": "status_503", "endpoint": "authorizations", "rate": 0.1,
                 "retry_after_s": 1})  # fmt: skip
    maybe(0.25, {"kind": "reset", "endpoint": "authorizations", "rate": 0.1})
    maybe(0.5, {"kind": "drop_reply", "endpoint": "reversals",
                "rate": round(rng.uniform(0.1, 0.4), 3)})  # fmt: skip
    maybe(0.3, {"kind": "latency", "endpoint": "reversals", "latency_s": late, "rate": 0.3})
    maybe(0.2, {"kind": "status_503", "endpoint": "reversals", "rate": 0.2, "retry_after_s": 1})
    maybe(0.5, {"kind": "drop_reply", "endpoint": "events",
                "rate": round(rng.uniform(0.1, 0.4), 3)})  # fmt: skip
    maybe(0.25, {"kind": "status_503", "endpoint": "events", "rate": 0.3, "retry_after_s": 1})
    maybe(0.2, {"kind": "latency", "endpoint": "events", "latency_s": 0.3, "rate": 0.3})
    return rules


def down_window(rng: random.Random) -> tuple[float, dict[str, Any]] | None:
    """Maybe an outage during the round: (seconds after READY, the ``down`` rule)."""
    if rng.random() >= 0.35:
        return None
    rule = {"kind": "down", "endpoint": "*", "duration_s": round(rng.uniform(0.3, 1.5), 3),
            "down_mode": rng.choice(["reset", "503"]), "retry_after_s": 1}  # fmt: skip
    return round(rng.uniform(0.0, 1.0), 3), rule


# ------------------------------------------------------------------ what the till knows
@dataclass
class TillSale:
    key: str
    body: dict[str, Any]
    round: int
    sale_id: str | None = None
    answered: bool = False
    """A POST with this key got an HTTP answer."""
    refused: str | None = None
    """Answered without a sale (reader busy, not accepting): the till drops the key."""
    state: str | None = None
    """The last state the till saw."""


class SaleBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sales: dict[str, TillSale] = {}
        self._counter = 0

    def new(self, body: dict[str, Any], round_no: int) -> TillSale:
        with self._lock:
            self._counter += 1
            key = f"chaos-r{round_no:04d}-{self._counter:05d}"
            sale = TillSale(key=key, body=body, round=round_no)
            self._sales[key] = sale
            return sale

    def answered(self, key: str, sale_id: str, state: str) -> None:
        with self._lock:
            sale = self._sales[key]
            if sale.sale_id not in (None, sale_id):
                raise AssertionError(
                    f"Idempotency-Key {key} answered with two sales: {sale.sale_id}, {sale_id}"
                )
            sale.sale_id, sale.answered, sale.state = sale_id, True, state

    def refused(self, key: str, why: str) -> None:
        with self._lock:
            self._sales[key].answered = True
            self._sales[key].refused = why

    def seen(self, sale_id: str, state: str) -> None:
        with self._lock:
            for sale in self._sales.values():
                if sale.sale_id == sale_id:
                    sale.state = state

    def unanswered(self) -> list[TillSale]:
        with self._lock:
            return [s for s in self._sales.values() if not s.answered]

    def voidable(self) -> list[str]:
        with self._lock:
            return [s.sale_id for s in self._sales.values()
                    if s.sale_id is not None and s.state in CAPTURING]  # fmt: skip

    def known(self) -> dict[str, TillSale]:
        """Sale id → the till's record, for every key that was answered with a sale."""
        with self._lock:
            return {s.sale_id: s for s in self._sales.values() if s.sale_id is not None}

    def all(self) -> list[TillSale]:
        with self._lock:
            return list(self._sales.values())


# ------------------------------------------------------------------ the till
class HarnessError(AssertionError):
    """The till got an answer the API does not allow: a harness bug or an API bug."""


class Driver(threading.Thread):
    """The till for one round: re-post the unanswered, then a random mix until the daemon dies.

    Stops on the first transport error (the daemon was killed), at :attr:`halt`,
    or after :data:`ROUND_HARD_LIMIT_S`. ``error`` holds anything else that went wrong.
    """

    def __init__(
        self, daemon: Daemon, book: SaleBook, rng: random.Random, round_no: int, *, final: bool
    ) -> None:
        super().__init__(name=f"chaos-till-{round_no}", daemon=True)
        self.agent = daemon
        """The daemon under test (not ``Thread.daemon``)."""
        self.book = book
        self.rng = rng
        self.round_no = round_no
        self.final = final
        """The final, fault-free round: only re-post, no new sales."""
        self.halt = threading.Event()
        self.deadline = time.monotonic() + (120.0 if final else ROUND_HARD_LIMIT_S)
        self.error: BaseException | None = None
        self.lost_daemon = False
        self.stats: Counter[str] = Counter()

    def run(self) -> None:
        try:
            with self.agent.client(timeout_s=30.0) as http:
                self._repost(http)
                while not self.final and not self._stopping():
                    self._step(http)
        except httpx.TransportError:
            self.lost_daemon = True
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _stopping(self) -> bool:
        return self.halt.is_set() or time.monotonic() > self.deadline

    # -------------------------------------------------------------- re-posts
    def _repost(self, http: httpx.Client) -> None:
        for sale in self.book.unanswered():
            if self._stopping():
                return
            self.stats["reposted"] += 1
            sale_id = self._post(http, sale)
            if sale_id is not None:
                self._wait_final(http, sale_id)

    # -------------------------------------------------------------- the mix
    def _step(self, http: httpx.Client) -> None:
        candidates = self.book.voidable()
        if candidates and self.rng.random() < P_VOID_LATER:
            self._void(http, self.rng.choice(candidates))
            return
        amount = self.rng.randint(100, AMOUNT_MAX)
        if self.rng.random() < P_DECLINED_AMOUNT:
            amount = amount // 100 * 100 + int(DECLINE_ENDING)
        online = self.rng.choice(["prefer", "offline-ok"])
        body = {"amount": amount, "currency": CURRENCY, "online": online,
                "reference": f"chaos-{self.round_no}"}  # fmt: skip
        sale = self.book.new(body, self.round_no)
        self.stats["created"] += 1
        sale_id = self._post(http, sale)
        if sale_id is None:
            return
        if self.rng.random() < P_CANCEL:
            self._cancel(http, sale_id)
        view = self._wait_final(http, sale_id)
        if view is not None and view["state"] in CAPTURING and self.rng.random() < P_VOID_NOW:
            self._void(http, sale_id)

    # -------------------------------------------------------------- API calls
    def _post(self, http: httpx.Client, sale: TillSale) -> str | None:
        """POST /v1/sales with the sale's key and body; its id, or None when refused."""
        while True:
            response = http.post("/v1/sales", json=sale.body,
                                 headers={"Idempotency-Key": sale.key})  # fmt: skip
            if response.status_code == 202:
                doc = response.json()
                self.book.answered(sale.key, doc["id"], doc["state"])
                return str(doc["id"])
            kind = _problem_kind(response)
            if response.status_code == 409 and kind == "reader-busy":
                # No sale for this key yet: wait until the reader is free, then the same key.
                self.stats["reader_busy"] += 1
                if not self._wait_reader_free(http):
                    return None
                continue
            if response.status_code == 503 and kind == "not-accepting":
                self.book.refused(sale.key, "not-accepting")
                return None
            raise HarnessError(f"POST /v1/sales {sale.key}: {response.status_code} {response.text}")

    def _wait_reader_free(self, http: httpx.Client) -> bool:
        while not self._stopping():
            status = http.get("/v1/status").json()
            active = status.get("active_sale")
            if active is None:
                return True
            http.get(f"/v1/sales/{active}", params={"wait": 2})
        return False

    def _wait_final(self, http: httpx.Client, sale_id: str) -> dict[str, Any] | None:
        while not self._stopping():
            response = http.get(f"/v1/sales/{sale_id}", params={"wait": 2})
            if response.status_code != 200:
                raise HarnessError(f"GET sale {sale_id}: {response.status_code} {response.text}")
            view: dict[str, Any] = response.json()
            self.book.seen(sale_id, view["state"])
            if view["final"]:
                self.stats[f"final_{view['state']}"] += 1
                return view
        return None

    def _cancel(self, http: httpx.Client, sale_id: str) -> None:
        response = http.post(f"/v1/sales/{sale_id}/cancel")
        if response.status_code == 200:
            self.stats["cancel_ok"] += 1
            self.book.seen(sale_id, response.json()["state"])
        elif response.status_code == 409 and _problem_kind(response) == "state-conflict":
            self.stats["cancel_too_late"] += 1  # the card was read first
        else:
            raise HarnessError(f"cancel {sale_id}: {response.status_code} {response.text}")

    def _void(self, http: httpx.Client, sale_id: str) -> None:
        response = http.post(f"/v1/sales/{sale_id}/void")
        if response.status_code == 200:
            self.stats["void_ok"] += 1
            self.book.seen(sale_id, response.json()["state"])
        else:
            raise HarnessError(f"void {sale_id}: {response.status_code} {response.text}")


def _problem_kind(response: httpx.Response) -> str:
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except (ValueError, AttributeError):
        return ""


# ------------------------------------------------------------------ the journal, read back
@dataclass
class SaleHistory:
    txn: str
    amount: int
    currency: str
    idempotency_key: str | None
    created_seq: int
    types: list[str] = field(default_factory=list)
    state: str = "created"
    forward: str | None = None
    outcome_seq: int | None = None
    killed_mid_sale: bool = False
    """An ``agent.started`` lies between its creation and its outcome: recovery decided it."""


def read_export(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seqs = [e["seq"] for e in events]
    if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
        raise AssertionError("the journal export is not in strictly increasing seq order")
    return events


def analyse_journal(events: list[dict[str, Any]]) -> dict[str, SaleHistory]:
    """Each sale's history from the export: state, forward state, killed mid-sale or not."""
    sales: dict[str, SaleHistory] = {}
    starts: list[int] = []
    for event in events:
        type_, txn, seq = event["type"], event["txn"], event["seq"]
        if type_ == "agent.started":
            starts.append(seq)
            continue
        if type_ == "sale.created":
            if txn in sales:
                raise AssertionError(f"two sale.created events for {txn}")
            payload = event["payload"]
            sales[txn] = SaleHistory(txn, int(payload["amount"]), str(payload["currency"]),
                                     payload.get("idempotency_key"), seq)  # fmt: skip
        history = sales.get(txn) if txn else None
        if history is None:
            continue
        history.types.append(type_)
        if type_ in STATE_EVENTS:
            history.state = STATE_EVENTS[type_]
        if type_ in OUTCOME_EVENTS and history.outcome_seq is None:
            history.outcome_seq = seq
        if type_ == "offline.approved":
            history.forward = "pending"
        elif type_ == "forward.requested" and history.forward == "pending":
            history.forward = "requested"
        elif type_ in FORWARD_EVENTS:
            history.forward = FORWARD_EVENTS[type_]
    for history in sales.values():
        end = history.outcome_seq if history.outcome_seq is not None else 1 << 62
        history.killed_mid_sale = any(history.created_seq < s < end for s in starts)
    return sales


def coverage(events: list[dict[str, Any]], sales: dict[str, SaleHistory]) -> dict[str, int]:
    """How often each interesting case happened (the test must not pass vacuously)."""
    types = Counter(e["type"] for e in events)
    states = Counter(h.state for h in sales.values())
    return {
        "sales": len(sales),
        "agent_starts": types["agent.started"],
        "killed_mid_sale": sum(h.killed_mid_sale for h in sales.values()),
        "approved_offline_ever": sum("offline.approved" in h.types for h in sales.values()),
        "voided": states["voided"],
        "voided_after_offline": sum(
            h.state == "voided" and "offline.approved" in h.types for h in sales.values()
        ),
        "reversed": states["reversed"],
        "cancelled": states["cancelled"],
        "abandoned": states["abandoned"],
        "declined": states["declined"],
        "approved": states["approved"],
        "approved_offline": states["approved_offline"],
        "auth_unknown": types["auth.unknown"],
        "reversal_requested": types["reversal.requested"],
        "forward_approved": types["forward.approved"],
        "forward_declined": types["forward.declined"],
    }


# ------------------------------------------------------------------ the money, independently
def captured_per_txn(db_path: Path) -> dict[str, int]:
    """What the back office captured per sale: approved attempts not reversed (read-only)."""
    uri = db_path.resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        rows = db.execute(
            "SELECT txn, sum(amount) FROM authorizations WHERE terminal = ? AND state = 'decided'"
            " AND outcome = 'approved' AND reversed_at IS NULL GROUP BY txn",
            (TERMINAL,),
        ).fetchall()
        pending = db.execute(
            "SELECT count(*) FROM authorizations WHERE terminal = ? AND state = 'pending'",
            (TERMINAL,),
        ).fetchone()[0]
    finally:
        db.close()
    if pending:
        raise AssertionError(f"{pending} authorizations are still being decided at the back office")
    return {str(txn): int(total) for txn, total in rows}


def expected_captured(state: str, forward: str | None, amount: int) -> int | None:
    """The money invariant: what the back office must hold for a final sale (None: not final)."""
    if state not in FINAL:
        return None
    if state == "approved":
        return amount
    if state == "approved_offline":
        if forward == "approved":
            return amount
        return 0 if forward in LOST_FORWARDS else None
    return 0


def money_check(
    views: dict[str, dict[str, Any]], captured: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Mismatches between the till's final views and the back office's captured amounts."""
    out: dict[str, list[dict[str, Any]]] = {"mismatches": [], "not_final": [],
                                            "unknown_at_till": [], "uncollectable": []}  # fmt: skip
    for txn, view in sorted(views.items()):
        want = expected_captured(view["state"], view.get("forward_state"), int(view["amount"]))
        got = captured.get(txn, 0)
        if want is None:
            out["not_final"].append({"txn": txn, "state": view["state"],
                                     "forward": view.get("forward_state")})  # fmt: skip
        elif want != got:
            out["mismatches"].append({"txn": txn, "till_state": view["state"],
                                      "forward": view.get("forward_state"),
                                      "expected_captured": want, "captured": got,
                                      "amount": view["amount"]})  # fmt: skip
        if view["state"] == "approved_offline" and view.get("forward_state") in LOST_FORWARDS:
            out["uncollectable"].append({"txn": txn, "forward": view["forward_state"]})
    for txn, got in sorted(captured.items()):
        if txn not in views and got:
            out["unknown_at_till"].append({"txn": txn, "captured": got})
    return out


def mismatch_kind(m: dict[str, Any]) -> str:
    """A short name for a kind of money mismatch, for the summary."""
    forward = f"/forward {m['forward']}" if m.get("forward") else ""
    if m["captured"] > m["expected_captured"]:
        what = "captured twice" if m["captured"] > m["amount"] else "captured, should not be"
    else:
        what = "not captured"
    return f"{m['till_state']}{forward}: {what}"
