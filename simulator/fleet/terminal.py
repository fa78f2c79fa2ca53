"""A simulated terminal: the events a real agent journals for its sales, its hash chain, its
backlog, upload batches and heartbeat documents — without a journal file or a daemon.

The chain is the agent's own: every hash is computed by
:class:`posedge.agent.journal.chain.ChainSigner` over the canonical JSON of
:func:`posedge.agent.journal.canonical.canonical_json`, under a chain key
derived (like the agent's) from a 32-byte device key, here derived from the
fleet seed and the terminal id. So ``posedge journal verify``'s verifier
accepts a simulated terminal's events given :meth:`SimTerminal.device_key`.

A sale's events follow the agent's sales engine (docs/sales.md): an online
sale is ``sale.created``, ``card.read``, ``auth.requested``,
``auth.approved|declined``, ``receipt.printing``, ``receipt.printed``; a sale
the customer walks away from ends ``sale.cancelled`` or ``sale.abandoned``.
While the terminal cannot reach the back office (``online=False``) a sale is
``auth.unavailable`` then ``offline.approved`` (amounts within the offline
limit) or ``sale.declined``; once back online it forwards those sales
(``forward.requested``, ``forward.approved``). Card data never appears: only
masked PANs of public test cards, brands and PAN-token-like digests.
Authorization outcomes are drawn here; nothing calls ``/v1/authorizations``.

Events are kept in time order and committed to the chain only when the
simulated clock reaches them (:meth:`SimTerminal.commit_until`), so an upload
never carries an event from the future.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posedge.agent.journal.canonical import canonical_json
from posedge.agent.journal.chain import GENESIS_HASH, ChainSigner, DeviceKey
from posedge.protocol.idempotency import forward_attempt, online_attempt
from posedge.protocol.signing import public_key_text, sign_batch

from .model import Lane, Store, derive_seed, rng_for
from .reader import UNREADABLE_REASON, ReaderHealth

AGENT_VERSION = "0.1.0+fleetsim"
# Public test cards (never real ones), masked as the agent journals them: first 6, last 4.
TEST_CARDS: tuple[tuple[str, str], ...] = (
    ("411111******1111", "visa"),
    ("400000******0002", "visa"),
    ("555555******4444", "mastercard"),
    ("222300******0010", "mastercard"),
    ("378282*****0005", "amex"),
    ("601111******1117", "discover"),
)
CARD_WEIGHTS = (0.35, 0.15, 0.25, 0.1, 0.1, 0.05)
CUSTOMERS_PER_STORE = 5000
OFFLINE_LIMIT = 15_000  # minor units: larger sales are declined while the host is unreachable
FORWARD_BY_S = 72 * 3600.0

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class SaleMix:
    """How sales end, and their amounts (lognormal, integer minor units)."""

    declined: float = 0.03
    cancelled: float = 0.006
    abandoned: float = 0.004
    median_amount: int = 2400
    amount_sigma: float = 0.9
    max_amount: int = 250_000


@dataclass(frozen=True)
class Row:
    """One committed event: its seq, time, hash and its JSON text in a batch."""

    seq: int
    ts: float
    hash: str
    text: str


@dataclass
class Batch:
    terminal: str
    first_seq: int
    last_seq: int
    count: int
    body: bytes
    last_hash: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.terminal}:{self.first_seq}-{self.last_seq}"


@dataclass
class _Pending:
    ts: float
    type: str
    txn: str | None
    payload: dict[str, Any]


class _TsText:
    """``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (the agent's form), the date formatted once a day."""

    def __init__(self) -> None:
        self._day = -1
        self._date = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        day, in_day = divmod(second, 86400)
        if day != self._day:
            self._day = day
            self._date = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
        hours, rest = divmod(in_day, 3600)
        minutes, seconds = divmod(rest, 60)
        micros = min(999_999, round((when - second) * 1_000_000))
        return f"{self._date}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}+00:00"


def device_key_for(seed: int, terminal: str) -> DeviceKey:
    """The simulated terminal's journal device key (deterministic: a simulator, not a secret)."""
    raw = hashlib.blake2b(f"{seed}\x1f{terminal}\x1fdevice.key".encode(), digest_size=32).digest()
    return DeviceKey(raw)


def signing_key_for(seed: int, terminal: str) -> Ed25519PrivateKey:
    """The simulated terminal's Ed25519 key for signed batches (deterministic)."""
    raw = hashlib.blake2b(f"{seed}\x1f{terminal}\x1fed25519".encode(), digest_size=32).digest()
    return Ed25519PrivateKey.from_private_bytes(raw)


@dataclass
class UploadStats:
    batches: int = 0
    events: int = 0


@dataclass
class SimTerminal:
    """One simulated terminal. Not thread-safe: one runner drives it."""

    lane: Lane
    store: Store
    seed: int = 0
    sign: bool = False
    token: str | None = None
    mix: SaleMix = field(default_factory=SaleMix)
    boot_at: float = 0.0

    def __post_init__(self) -> None:
        self.terminal = self.lane.terminal
        self.device_key = device_key_for(self.seed, self.terminal)
        self._signer = ChainSigner(self.device_key)
        self.signing_key: Ed25519PrivateKey | None = (
            signing_key_for(self.seed, self.terminal) if self.sign else None
        )
        self._rng = rng_for(self.seed, "sales", self.terminal)
        self._ts_text = _TsText()
        self.head_seq = 0
        self.head_hash = GENESIS_HASH
        self.head_ts = -1.0
        self.acked_seq = 0
        self.backlog: deque[Row] = deque()
        self._pending: deque[_Pending] = deque()
        self._busy_until = -1.0
        self.forwards: dict[str, dict[str, Any]] = {}
        self.online = True
        self.sales = 0
        self.committed = 0
        self.outcomes: dict[str, int] = {}
        # The agent's reader checks and alerts (docs/health.md), polled at a per-terminal phase.
        self.reader = ReaderHealth(phase_s=derive_seed(self.terminal, "health") % 10_000 / 1000)

    # -- identity ----------------------------------------------------------------------------

    @property
    def public_key(self) -> str | None:
        return None if self.signing_key is None else public_key_text(self.signing_key)

    def enable_signing(self, key: Ed25519PrivateKey | None = None) -> None:
        self.signing_key = key or signing_key_for(self.seed, self.terminal)
        self.sign = True

    def rename(self, terminal: str) -> None:
        """Take the id the back office assigned at enrolment (before any event exists)."""
        if self.head_seq:
            raise RuntimeError("a terminal with events cannot change its id")
        self.terminal = terminal

    def resume(self, acked_seq: int, head_hash: str | None) -> None:
        """Continue the chain the back office already holds (``events/head``)."""
        if self.head_seq or self._pending:
            raise RuntimeError("resume only before the first event")
        if acked_seq > 0:
            if head_hash is None:
                raise ValueError("the back office holds events but named no head hash")
            self.head_seq = self.acked_seq = acked_seq
            self.head_hash = head_hash

    # -- producing events --------------------------------------------------------------------

    def boot(self, when: float) -> None:
        """The agent starts: ``agent.started`` (marked simulated)."""
        when = max(when, self._busy_until, self._pending[-1].ts if self._pending else when)
        self.boot_at = when
        self._schedule(
            when,
            "agent.started",
            None,
            {
                "version": AGENT_VERSION,
                "pid": 1000 + derive_seed(self.terminal) % 60000,
                "simulate": False,
                "fleet_simulator": True,
            },
        )

    def sell(self, when: float) -> str:
        """Schedule the events of one sale starting at ``when`` (or when the last one
        ends); returns its txn id."""
        rng = self._rng
        start = max(when, self._busy_until)
        txn = f"s-{int(start * 1000):x}-{rng.getrandbits(32):08x}"
        mix = self.mix
        amount = int(min(mix.max_amount, max(50, rng.lognormvariate(0.0, mix.amount_sigma)
                                             * mix.median_amount)))  # fmt: skip
        currency = self.store.currency
        reference = f"r{rng.getrandbits(40):010x}"
        # The till's key; a UUID, as tills send (never a digit run the card guard would flag).
        idem = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        request_hash = hashlib.sha256(
            json.dumps(
                {"amount": amount, "currency": currency, "reference": reference,
                 "online": "prefer"},
                sort_keys=True,
            ).encode()
        ).hexdigest()  # fmt: skip
        t = start
        self._schedule(
            t, "sale.created", txn,
            {"amount": amount, "currency": currency, "reference": reference, "online": "prefer",
             "idempotency_key": idem, "request_hash": request_hash},
        )  # fmt: skip
        self.sales += 1
        roll = rng.random()
        if roll < mix.cancelled:
            t += rng.uniform(3.0, 15.0)
            self._schedule(t, "sale.cancelled", txn,
                           {"reason": "cancelled by the till",
                            "receipt": "not_required"})  # fmt: skip
            return self._done(txn, t, "cancelled")
        if roll < mix.cancelled + mix.abandoned:
            t += 30.0
            self._schedule(t, "sale.abandoned", txn,
                           {"reason": "no card was presented in time",
                            "receipt": "not_required"})  # fmt: skip
            return self._done(txn, t, "abandoned")
        masked, brand = rng.choices(TEST_CARDS, weights=CARD_WEIGHTS)[0]
        customer = rng.randrange(CUSTOMERS_PER_STORE)
        pan_token = hashlib.blake2b(
            f"{self.store.id}:{customer}:{masked}".encode(), digest_size=32
        ).hexdigest()
        t += rng.uniform(3.0, 12.0)
        self.reader.swipe(t, True)
        self._schedule(t, "card.read", txn,
                       {"masked_pan": masked, "brand": brand, "entry_mode": "swipe",
                        "pan_token": pan_token, "expired": False})  # fmt: skip
        attempt = online_attempt(txn)
        request = {
            "terminal": self.terminal, "txn": txn, "attempt": attempt, "amount": amount,
            "currency": currency, "entry_mode": "swipe", "masked_pan": masked, "brand": brand,
            "pan_token": pan_token, "forwarded": False,
        }  # fmt: skip
        t += 0.004
        self._schedule(t, "auth.requested", txn,
                       {"attempt": attempt, "amount": amount, "currency": currency,
                        "entry_mode": "swipe", "request": request})  # fmt: skip
        copies: list[str]
        if not self.online:
            t += rng.uniform(0.05, 0.3)
            self._schedule(t, "auth.unavailable", txn,
                           {"attempt": attempt, "reason": "host unreachable"})  # fmt: skip
            t += 0.01
            if amount <= OFFLINE_LIMIT:
                self._schedule(t, "offline.approved", txn,
                               {"offline": True, "forward_by": _iso(t + FORWARD_BY_S),
                                "approved_at": _iso_ms(t), "receipt": "pending"})  # fmt: skip
                self.forwards[txn] = dict(request, attempt=forward_attempt(txn), forwarded=True)
                outcome, copies = "approved_offline", ["customer", "merchant"]
            else:
                self._schedule(t, "sale.declined", txn,
                               {"reason": "host unreachable; not approved offline: offline "
                                f"limit for {currency} is {OFFLINE_LIMIT / 100:.2f} per sale",
                                "receipt": "pending"})  # fmt: skip
                outcome, copies = "declined", ["customer"]
        else:
            t += rng.uniform(0.25, 1.8)
            if rng.random() < mix.declined:
                self._schedule(t, "auth.declined", txn,
                               {"attempt": attempt, "reason": "do not honour",
                                "receipt": "pending"})  # fmt: skip
                outcome, copies = "declined", ["customer"]
            else:
                code = f"{rng.getrandbits(24):06X}"
                self._schedule(t, "auth.approved", txn,
                               {"attempt": attempt, "auth_code": code, "approved_at": _iso_ms(t),
                                "receipt": "pending"})  # fmt: skip
                outcome, copies = "approved", ["customer", "merchant"]
        t += 0.01
        self._schedule(t, "receipt.printing", txn, {"copies": copies})
        t += rng.uniform(1.5, 3.5)
        self._schedule(t, "receipt.printed", txn, {"copies": copies})
        return self._done(txn, t, outcome)

    def sell_unreadable(self, when: float, swipe_timeout_s: float = 30.0) -> str:
        """A customer at a lane whose reader head is worn: the sale is created, every swipe
        is unreadable (``card.read_failed``, as the agent's sale engine journals it), and
        the clerk cancels the sale or it times out (``sale.abandoned``). Returns the txn."""
        rng = self._rng
        start = max(when, self._busy_until)
        txn = f"s-{int(start * 1000):x}-{rng.getrandbits(32):08x}"
        amount = int(min(self.mix.max_amount, max(50, rng.lognormvariate(0.0, self.mix.amount_sigma)
                                                  * self.mix.median_amount)))  # fmt: skip
        idem = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        reference = f"r{rng.getrandbits(40):010x}"
        request_hash = hashlib.sha256(
            json.dumps({"amount": amount, "currency": self.store.currency,
                        "reference": reference, "online": "prefer"}, sort_keys=True).encode()
        ).hexdigest()  # fmt: skip
        self._schedule(start, "sale.created", txn,
                       {"amount": amount, "currency": self.store.currency,
                        "reference": reference, "online": "prefer", "idempotency_key": idem,
                        "request_hash": request_hash})  # fmt: skip
        self.sales += 1
        t = start
        for _ in range(rng.randint(2, 4)):
            t += rng.uniform(3.0, 8.0)
            if t - start >= swipe_timeout_s:
                break
            self.reader.swipe(t, False)
            self._schedule(t, "card.read_failed", txn, {"reason": UNREADABLE_REASON})
        if rng.random() < 0.7:
            t += rng.uniform(2.0, 6.0)
            self._schedule(
                t,
                "sale.cancelled",
                txn,
                {"reason": "cancelled by the till", "receipt": "not_required"},
            )
            return self._done(txn, t, "cancelled")
        t = start + swipe_timeout_s
        self._schedule(
            t,
            "sale.abandoned",
            txn,
            {"reason": "no card was presented in time", "receipt": "not_required"},
        )
        return self._done(txn, t, "abandoned")

    def _done(self, txn: str, end: float, outcome: str) -> str:
        self._busy_until = end + 0.5
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return txn

    def forward_pending(self, when: float) -> int:
        """Back online: forward the sales approved offline (``forward.requested`` then
        ``forward.approved``); returns how many."""
        count = 0
        t = max(when, self.head_ts, self._pending[-1].ts if self._pending else when)
        for txn, request in list(self.forwards.items()):
            attempt = request["attempt"]
            t += 0.05
            self._schedule(t, "forward.requested", txn,
                           {"attempt": attempt, "key": attempt, "request": request})  # fmt: skip
            t += self._rng.uniform(0.2, 1.0)
            self._schedule(t, "forward.approved", txn,
                           {"attempt": attempt,
                            "auth_code": f"{self._rng.getrandbits(24):06X}"})  # fmt: skip
            del self.forwards[txn]
            count += 1
        self._busy_until = max(self._busy_until, t)
        return count

    def _schedule(self, when: float, type_: str, txn: str | None, payload: dict[str, Any]) -> None:
        self._pending.append(_Pending(when, type_, txn, payload))

    @property
    def next_event_at(self) -> float | None:
        return self._pending[0].ts if self._pending else None

    def commit_until(self, now: float) -> int:
        """Append every scheduled event with a time at or before ``now`` to the chain."""
        count = 0
        pending = self._pending
        while pending and pending[0].ts <= now:
            item = pending.popleft()
            self._append(item.ts, item.type, item.txn, item.payload)
            count += 1
        return count

    def commit_all(self) -> int:
        return self.commit_until(float("inf"))

    def _append(self, when: float, type_: str, txn: str | None, payload: dict[str, Any]) -> Row:
        when = max(when, self.head_ts)  # like the journal: time never runs backwards
        seq = self.head_seq + 1
        ts = self._ts_text(when)
        payload_text = canonical_json(payload)
        prev = self.head_hash
        digest = self._signer.event_hash(prev, seq, ts, type_, txn, payload_text)
        text = (
            f'{{"seq":{seq},"ts":"{ts}","type":{_dumps(type_)},"txn":{_dumps(txn)},'
            f'"payload":{payload_text},"prev_hash":"{prev}","hash":"{digest}"}}'
        )
        row = Row(seq, when, digest, text)
        self.backlog.append(row)
        self.head_seq, self.head_hash, self.head_ts = seq, digest, when
        self.committed += 1
        return row

    def events(self) -> list[dict[str, Any]]:
        """The unacknowledged events as protocol event documents (seq order)."""
        return [json.loads(row.text) for row in self.backlog]

    # -- uploads -----------------------------------------------------------------------------

    @property
    def unsynced(self) -> int:
        return self.head_seq - self.acked_seq

    def next_batch(self, max_events: int) -> Batch | None:
        """The oldest unacknowledged events (at most ``max_events``) as a request body."""
        if not self.backlog:
            return None
        rows = [self.backlog[i] for i in range(min(max_events, len(self.backlog)))]
        first, last = rows[0], rows[-1]
        body = (
            f'{{"terminal":{_dumps(self.terminal)},"first_seq":{first.seq},'
            f'"last_seq":{last.seq},"events":[{",".join(r.text for r in rows)}]'
        )
        if self.signing_key is not None:
            signature = sign_batch(self.signing_key, self.terminal, first.seq, last.seq, last.hash)
            body += f',"signature":"{signature}"'
        body += "}"
        return Batch(self.terminal, first.seq, last.seq, len(rows), body.encode(), last.hash)

    def acknowledge(self, acked_seq: int) -> int:
        """The back office holds everything through ``acked_seq``; drop it from the backlog.
        Returns how many events were dropped."""
        acked = min(acked_seq, self.head_seq)
        dropped = 0
        while self.backlog and self.backlog[0].seq <= acked:
            self.backlog.popleft()
            dropped += 1
        self.acked_seq = max(self.acked_seq, acked)
        return dropped

    def rewind(self, expected_seq: int) -> bool:
        """409 sequence-gap / chain-mismatch: the back office needs ``expected_seq`` next.
        False when that event is no longer held here (the back office lost history)."""
        if expected_seq > self.head_seq + 1:
            return False
        first_held = self.backlog[0].seq if self.backlog else self.head_seq + 1
        if expected_seq < first_held:
            return False
        self.acknowledge(expected_seq - 1)
        return True

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(self, now: float) -> dict[str, Any]:
        """The heartbeat document at simulated time ``now`` (docs/sync-protocol.md)."""
        oldest = self.backlog[0].ts if self.backlog else None
        self.reader.advance(now)
        exposure: dict[str, dict[str, int]] = {}
        for request in self.forwards.values():
            slot = exposure.setdefault(request["currency"], {"count": 0, "amount": 0})
            slot["count"] += 1
            slot["amount"] += request["amount"]
        doc: dict[str, Any] = {
            "terminal": self.terminal,
            "sent_at": _iso_us(now),
            "agent_version": AGENT_VERSION,
            "uptime_s": round(max(0.0, now - self.boot_at), 3),
            "devices": self.reader.devices(),
            "journal_head": {"seq": self.head_seq, "hash": self.head_hash},
            "unsynced_count": self.unsynced,
            "oldest_unsynced_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
            "offline_exposure": exposure,
            "in_doubt_count": 0,
            "disk_free_bytes": 8 * 1024**3,
            "active_alerts": [],
            "clock_skew_s": 0.0,
        }
        health = self.reader.health()
        if health is not None:
            doc["health"] = health
        return doc


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(when))


def _iso_ms(when: float) -> str:
    second = int(when)
    millis = min(999, round((when - second) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}+00:00"


def _iso_us(when: float) -> str:
    second = int(when)
    micros = min(999_999, round((when - second) * 1_000_000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{micros:06d}+00:00"
