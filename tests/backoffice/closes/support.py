"""A real till for the close reconciliation tests: the agent's journal in a state dir, its
sales shaped as the agent's sales engine journals them, the money decided by the real back
office over HTTP (authorizations, reversals), the agent's own :class:`Closer` for
``day.closed``, and the agent's :class:`SyncService` for uploads and heartbeats."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from posedge.agent.close.closer import Closer
from posedge.agent.close.records import CloseRecord
from posedge.agent.config import Config, SyncConfig
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService
from posedge.backoffice.server import BackofficeServer
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.idempotency import online_attempt, reversal_id

from ..helpers import authorization

FAST: dict[str, Any] = {
    "backoff_initial": "20ms",
    "backoff_cap": "200ms",
    "retry_after_cap": "2s",
    "permanent_retry": "200ms",
    "read_timeout": "5s",
}
BRANDS = {"visa": "411111******1111", "mastercard": "555555******4444"}


class Till:
    """One terminal: journal, closer, sync service, and a client for the money calls."""

    def __init__(self, state_dir: Path, backoffice: BackofficeServer, terminal: str) -> None:
        self.terminal = terminal
        self.backoffice = backoffice
        self.journal = Journal.open(state_dir)
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self.closer = Closer(self.journal, Config, terminal=terminal, clock=lambda: self.now)
        config = SyncConfig.model_validate(FAST)
        self.client = BackofficeClient(backoffice.url, terminal, config)
        self.sync = SyncService(self.journal, self.client, config, state_dir=state_dir)
        self.http = httpx.Client(base_url=backoffice.url, timeout=10.0)
        self.count = 0

    def close_all(self) -> None:
        self.http.close()
        self.client.close()
        self.journal.close()

    @property
    def store(self) -> BackofficeStore:
        assert self.backoffice.store is not None
        return self.backoffice.store

    # -- sales ----------------------------------------------------------------------------------

    def sale(
        self,
        amount: int,
        outcome: str = "approved",
        brand: str = "visa",
        entry_mode: str = "swipe",
        currency: str = "EUR",
    ) -> str:
        """A sale ending ``approved`` (authorized at the back office), ``declined`` (the
        back office declines it: amount ending 51), ``cancelled`` or ``in_doubt``."""
        self.count += 1
        txn = f"{self.terminal}-s{self.count:03d}"
        request_hash = hashlib.sha256(f"{txn}|{amount}|{currency}".encode()).hexdigest()
        self.journal.append(
            "sale.created",
            {
                "amount": amount,
                "currency": currency,
                "reference": txn,
                "online": "prefer",
                "request_hash": request_hash,
            },
            txn=txn,
        )
        if outcome == "cancelled":
            self.journal.append(
                "sale.cancelled",
                {"reason": "cancelled by the till", "receipt": "not_required"},
                txn=txn,
            )
            return txn
        self.journal.append(
            "card.read",
            {
                "masked_pan": BRANDS[brand],
                "brand": brand,
                "entry_mode": entry_mode,
                "pan_token": "cd" * 32,
            },
            txn=txn,
        )
        attempt = online_attempt(txn)
        self.journal.append(
            "auth.requested",
            {"attempt": attempt, "amount": amount, "currency": currency, "entry_mode": entry_mode},
            txn=txn,
        )
        if outcome == "in_doubt":
            self.journal.append("auth.unknown", {"attempt": attempt, "reason": "timeout"}, txn=txn)
            return txn
        body = authorization(txn, amount, terminal=self.terminal)
        body["currency"] = currency
        body["brand"] = brand
        body["entry_mode"] = entry_mode
        reply = self.http.post(
            "/v1/authorizations", json=body, headers={"Idempotency-Key": attempt}
        )
        assert reply.status_code == 200, reply.text
        decided = reply.json()["outcome"]
        assert decided == outcome, (decided, outcome)
        if decided == "approved":
            self.journal.append(
                "auth.approved", {"attempt": attempt, "auth_code": "A1B2C3"}, txn=txn
            )
        else:
            self.journal.append(
                "auth.declined", {"attempt": attempt, "reason": "declined"}, txn=txn
            )
        self.journal.append("receipt.printed", {"copies": ["customer"]}, txn=txn)
        return txn

    def void(self, txn: str, amount: int, tell_backoffice: bool = True) -> None:
        """Void an approved sale: journaled, and its reversal sent to the back office (or,
        ``tell_backoffice=False``, journaled as acknowledged without ever reaching it: the
        back office keeps the money the till gave back)."""
        attempt = online_attempt(txn)
        key = reversal_id(attempt)
        self.journal.append("sale.voided", {"reason": "voided by the till"}, txn=txn)
        self.journal.append("reversal.requested", {"attempt": attempt, "key": key}, txn=txn)
        had = False
        if tell_backoffice:
            body = {
                "terminal": self.terminal,
                "txn": txn,
                "attempt": attempt,
                "reversal": key,
                "amount": amount,
                "currency": "EUR",
                "reason": "voided by the till",
            }
            reply = self.http.post("/v1/reversals", json=body, headers={"Idempotency-Key": key})
            assert reply.status_code == 200, reply.text
            had = bool(reply.json()["had_authorization"])
        self.journal.append(
            "reversal.acked", {"attempt": attempt, "had_authorization": had}, txn=txn
        )

    def resolve_in_doubt(self, txn: str) -> None:
        """An in-doubt sale's reversal sent and acknowledged: it ends ``reversed``."""
        attempt = online_attempt(txn)
        key = reversal_id(attempt)
        self.journal.append("reversal.requested", {"attempt": attempt, "key": key}, txn=txn)
        body = {
            "terminal": self.terminal,
            "txn": txn,
            "attempt": attempt,
            "reversal": key,
            "amount": 1,
            "currency": "EUR",
            "reason": "timeout waiting for response",
        }
        assert (
            self.http.post("/v1/reversals", json=body, headers={"Idempotency-Key": key}).status_code
            == 200
        )
        self.journal.append(
            "reversal.acked", {"attempt": attempt, "had_authorization": False}, txn=txn
        )
        self.journal.append("sale.reversed", {"reason": "in doubt, reversed"}, txn=txn)

    # -- close and sync ---------------------------------------------------------------------------

    def close(self, day: str | None = None, force: bool = False) -> CloseRecord:
        return self.closer.close(day, force=force)

    def upload(self) -> None:
        report = self.sync.drain(stop=threading.Event(), max_attempts=5, max_wait_s=1.0)
        assert report.complete, report

    def heartbeat(self) -> dict[str, Any]:
        return self.sync.send_heartbeat()


def delete_held(store: BackofficeStore, terminal: str, *seqs: int) -> None:
    """Rows lost at the back office (deleted from its table behind its back)."""
    with store.transaction() as tx:
        for seq in seqs:
            tx.execute("DELETE FROM events WHERE terminal = ? AND seq = ?", (terminal, seq))


def flags(store: BackofficeStore, kind: str | None = None) -> list[dict[str, Any]]:
    from posedge.backoffice.anomalies import recent_flags

    return [f.as_dict() for f in recent_flags(store, 0.0, kind=kind)]
