"""Transactions as a projection of the events.

Each event that names a transaction (``txn``) moves that transaction's row in
``transactions``; the row is written in the same SQLite transaction as the
event, so the projection never disagrees with the log. It can always be
rebuilt from the events (:func:`rebuild_projection`), which the v2 migration
does for an existing backlog. The events are the truth; this table is an
index for the till API and the reports.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

# Event type → transaction state it leads to. Types not listed (receipts,
# device status, ...) leave the state as it is.
STATE_AFTER: dict[str, str] = {
    "sale.created": "created",
    "card.read": "card_read",
    "auth.requested": "authorizing",
    "auth.approved": "approved",
    "auth.declined": "declined",
    "auth.unknown": "in_doubt",
    "reversal.requested": "reversing",
    "reversal.acked": "reversed",
    "offline.approved": "approved_offline",
    "offline.declined": "declined",
    "forward.approved": "approved_offline",
    "forward.declined": "declined_after_forward",
    "sale.cancelled": "cancelled",
    "sale.abandoned": "abandoned",
    "sale.declined": "declined",
    "sale.voided": "voided",
}


def apply_event(
    conn: sqlite3.Connection,
    seq: int,
    ts: str,
    type_: str,
    txn: str | None,
    payload: dict[str, Any],
) -> None:
    """Fold one event into the projection (call inside the append transaction)."""
    if txn is None:
        return
    state = STATE_AFTER.get(type_)
    amount = payload.get("amount") if isinstance(payload.get("amount"), int) else None
    currency = payload.get("currency") if isinstance(payload.get("currency"), str) else None
    conn.execute(
        """
        INSERT INTO transactions
            (txn, state, first_seq, last_seq, created_ts, updated_ts, last_type, amount, currency)
        VALUES (:txn, :state, :seq, :seq, :ts, :ts, :type, :amount, :currency)
        ON CONFLICT (txn) DO UPDATE SET
            state      = COALESCE(:new_state, state),
            last_seq   = :seq,
            updated_ts = :ts,
            last_type  = :type,
            amount     = COALESCE(amount, :amount),
            currency   = COALESCE(currency, :currency)
        """,
        {
            "txn": txn,
            "state": state or "open",
            "new_state": state,
            "seq": seq,
            "ts": ts,
            "type": type_,
            "amount": amount,
            "currency": currency,
        },
    )


def rebuild_projection(conn: sqlite3.Connection) -> int:
    """Recompute ``transactions`` from the events; returns the rows folded."""
    conn.execute("DELETE FROM transactions")
    count = 0
    cursor = conn.execute(
        "SELECT seq, ts, type, txn, payload FROM events WHERE txn IS NOT NULL ORDER BY seq"
    )
    for seq, ts, type_, txn, payload in cursor:
        apply_event(conn, seq, ts, type_, txn, json.loads(payload))
        count += 1
    return count
