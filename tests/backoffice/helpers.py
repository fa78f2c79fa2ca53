"""Chained test events and request bodies (any deterministic hash: the back office checks
continuity only, never the HMAC)."""

from __future__ import annotations

import hashlib
from typing import Any

from posedge.protocol.idempotency import forward_attempt, online_attempt, reversal_id

ZERO = "0" * 64
TEST_PAN = "4111111111111111"
TEST_MASKED = "411111******1111"


def chain(count: int, start: int = 1, prev: str = ZERO, salt: str = "") -> list[dict[str, Any]]:
    events = []
    for seq in range(start, start + count):
        digest = hashlib.sha256(f"{salt}|{prev}|{seq}".encode()).hexdigest()
        events.append(
            {
                "seq": seq,
                "ts": "2026-11-26T10:00:00.000000+00:00",
                "type": "sale.created",
                "txn": f"s-{seq}",
                "payload": {"amount": seq, "currency": "EUR"},
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return events


def batch(events: list[dict[str, Any]], terminal: str = "lane1") -> dict[str, Any]:
    return {
        "terminal": terminal,
        "first_seq": events[0]["seq"],
        "last_seq": events[-1]["seq"],
        "events": events,
    }


def events_url(terminal: str = "lane1") -> str:
    return f"/v1/terminals/{terminal}/events"


def authorization(
    txn: str = "s-1",
    amount: int = 1234,
    terminal: str = "lane1",
    attempt: str | None = None,
    forwarded: bool = False,
) -> dict[str, Any]:
    """An authorization body; the attempt defaults to the sale's online (or forward) attempt."""
    if attempt is None:
        attempt = forward_attempt(txn) if forwarded else online_attempt(txn)
    return {
        "terminal": terminal,
        "txn": txn,
        "attempt": attempt,
        "amount": amount,
        "currency": "EUR",
        "entry_mode": "swipe",
        "card": {"pan": TEST_PAN, "expiry": "2912", "service_code": "101"},
        "masked_pan": TEST_MASKED,
        "brand": "visa",
        "pan_token": "ab" * 32,
        "forwarded": forwarded,
    }


def reversal(
    txn: str = "s-1", terminal: str = "lane1", attempt: str | None = None, amount: int = 1234
) -> dict[str, Any]:
    """A reversal body of ``attempt`` (default: the sale's online attempt)."""
    attempt = online_attempt(txn) if attempt is None else attempt
    return {
        "terminal": terminal,
        "txn": txn,
        "attempt": attempt,
        "reversal": reversal_id(attempt),
        "amount": amount,
        "currency": "EUR",
        "reason": "timeout waiting for response",
    }


def heartbeat(terminal: str = "lane1", head_seq: int = 0, backlog: int = 0) -> dict[str, Any]:
    return {
        "terminal": terminal,
        "sent_at": "2026-11-26T10:00:00.000000+00:00",
        "agent_version": "0.1.0",
        "uptime_s": 10,
        "devices": {"printer": {"state": "ok", "faults": []}},
        "journal_head": {"seq": head_seq, "hash": None},
        "unsynced_count": backlog,
        "oldest_unsynced_age_s": None,
        "offline_exposure": {"EUR": {"count": 0, "amount": 0}},
        "in_doubt_count": 0,
        "disk_free_bytes": 1 << 30,
        "active_alerts": [],
        "clock_skew_s": 0.1,
    }
