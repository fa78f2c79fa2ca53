"""Transactions as a projection of the events.

Each event that names a transaction (``txn``) updates that transaction's row
in ``transactions``, in the same SQLite transaction as the event, so the
projection never disagrees with the log. It can always be rebuilt from the
events (:func:`rebuild_projection`). The events are the truth; this table is
an index for the till API, crash recovery and reports.

``summary`` is a JSON object of the sale's visible facts, merged event by
event: the whitelisted payload fields below, plus the receipt, reversal and
forward sub-states derived from event types. Card data never reaches it (the
journal refuses it before this runs).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import Any

# Event type → transaction state it leads to. Types not listed leave it.
STATE_AFTER: dict[str, str] = {
    "sale.created": "created",
    "card.read": "card_read",
    "auth.requested": "authorizing",
    "auth.approved": "approved",
    "auth.declined": "declined",
    "auth.unknown": "in_doubt",
    "offline.approved": "approved_offline",
    "sale.declined": "declined",
    "sale.reversed": "reversed",
    "sale.cancelled": "cancelled",
    "sale.abandoned": "abandoned",
    "sale.voided": "voided",
}

# Event type → (summary key, value) it sets.
SUBSTATE_AFTER: dict[str, tuple[str, str]] = {
    "receipt.printing": ("receipt", "printing"),
    "receipt.printed": ("receipt", "printed"),
    "receipt.failed": ("receipt", "failed"),
    "receipt.skipped": ("receipt", "not_required"),
    "reversal.requested": ("reversal", "pending"),
    "reversal.acked": ("reversal", "acked"),
    "offline.approved": ("forward", "pending"),
    "forward.requested": ("forward", "requested"),
    "forward.approved": ("forward", "approved"),
    "forward.declined": ("forward", "declined"),
    "forward.expired": ("forward", "expired"),
    "forward.cancelled": ("forward", "cancelled"),
}

# Payload fields copied into the summary when an event carries them.
SUMMARY_FIELDS = frozenset(
    {
        "reference", "online", "request_hash", "masked_pan", "brand", "entry_mode",
        "pan_token", "auth_code", "reason", "offline", "forward_by", "copies",
        "receipt_error", "approved_at", "lane", "receipt",
    }
)  # fmt: skip


def summary_patch(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    patch = {key: value for key, value in payload.items() if key in SUMMARY_FIELDS}
    sub = SUBSTATE_AFTER.get(type_)
    if sub is not None:
        patch[sub[0]] = sub[1]
    return patch


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
    idem = payload.get("idempotency_key") if type_ == "sale.created" else None
    patch = summary_patch(type_, payload)
    conn.execute(
        """
        INSERT INTO transactions (txn, state, first_seq, last_seq, created_ts, updated_ts,
                                  last_type, amount, currency, idem_key, summary)
        VALUES (:txn, :state, :seq, :seq, :ts, :ts, :type, :amount, :currency, :idem, :patch)
        ON CONFLICT (txn) DO UPDATE SET
            state      = COALESCE(:new_state, state),
            last_seq   = :seq,
            updated_ts = :ts,
            last_type  = :type,
            amount     = COALESCE(amount, :amount),
            currency   = COALESCE(currency, :currency),
            idem_key   = COALESCE(idem_key, :idem),
            summary    = CASE WHEN :patch = '{}' THEN summary ELSE json_patch(summary, :patch) END
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
            "idem": idem if isinstance(idem, str) else None,
            "patch": json.dumps(patch, sort_keys=True, separators=(",", ":")) if patch else "{}",
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


class TransactionIndex:
    """Reads of the projection: one transaction, by idempotency key, work left at start.

    Shares the journal's connection and lock (``Journal.transactions``).
    """

    def __init__(self, conn: sqlite3.Connection, lock: AbstractContextManager[Any]) -> None:
        self._conn = conn
        self._lock = lock

    def get(self, txn: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM transactions WHERE txn = ?", txn)

    def by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM transactions WHERE idem_key = ?", key)

    def _one(self, sql: str, value: str) -> dict[str, Any] | None:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = sqlite3.Row
            row = cursor.execute(sql, (value,)).fetchone()
        return _as_dict(row) if row else None

    def incomplete_card_reads(self) -> int:
        """Sales whose card was read but that never completed (abandoned or cancelled)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM transactions WHERE state IN ('abandoned', 'cancelled') "
                "AND json_extract(summary, '$.masked_pan') IS NOT NULL"
            ).fetchone()
        return int(row[0])

    def needing_work(self, final_states: frozenset[str]) -> list[dict[str, Any]]:
        """Transactions not final, or with a receipt, reversal or forward still open.

        A full scan of the projection: for crash recovery at start, not the hot path.
        """
        marks = ",".join("?" for _ in final_states)
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = sqlite3.Row
            rows = cursor.execute(
                f"""
                SELECT * FROM transactions
                WHERE state NOT IN ({marks})
                   OR json_extract(summary, '$.receipt') IN ('pending', 'printing')
                   OR json_extract(summary, '$.reversal') = 'pending'
                   OR json_extract(summary, '$.forward') IN ('pending', 'requested')
                ORDER BY first_seq
                """,
                tuple(sorted(final_states)),
            ).fetchall()
        return [_as_dict(row) for row in rows]


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    doc = dict(row)
    doc["summary"] = json.loads(doc.get("summary") or "{}")
    return doc
