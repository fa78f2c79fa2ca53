"""Transactions as a projection of the events.

Each event that names a transaction (``txn``) updates that transaction's row
in ``transactions``. The events are the truth; this table is an index for the
till API, crash recovery and reports, and can always be rebuilt from them
(:func:`rebuild_projection`).

The projection is folded lazily: an append writes only its event (one
statement, one page), and :class:`TransactionIndex` folds every event after
the watermark ``meta.projected_seq`` — in one write transaction that also
moves the watermark — before it answers a read. A reader therefore never sees
the projection disagree with the log, a crash between the two loses nothing
(the fold runs again from the watermark), and retention folds before it
removes events. Folds commit without their own fsync: they are derived data,
and the next event append's fsync covers them (WAL order).

``summary`` is a JSON object of the sale's visible facts, merged event by
event: the whitelisted payload fields below, plus the receipt, reversal and
forward sub-states derived from event types. Card data never reaches it (the
journal refuses it before this runs).
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .sqlite_errors import map_write_error

PROJECTED_SEQ_KEY = "projected_seq"
FOLD_BATCH_ROWS = 1000

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

# Sales whose card was read but that never completed: the one lookup by state.
# Schema v4's partial index uses this very WHERE (SQLite uses a partial index
# only for queries whose WHERE implies the index's).
UNFINISHED_READ_STATES = "state IN ('abandoned', 'cancelled')"

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
    amount = payload.get("amount")
    currency = payload.get("currency")
    idem = payload.get("idempotency_key") if type_ == "sale.created" else None
    patch = summary_patch(type_, payload)
    conn.execute(
        _UPSERT,
        (
            txn,
            state or "open",
            seq,
            ts,
            type_,
            amount if type(amount) is int else None,  # bool is not an amount
            currency if isinstance(currency, str) else None,
            idem if isinstance(idem, str) else None,
            json.dumps(patch, sort_keys=True, separators=(",", ":")) if patch else "{}",
            state,
        ),
    )


# Positional parameters: ?1 txn, ?2 state for a new row, ?3 seq, ?4 ts, ?5 type,
# ?6 amount, ?7 currency, ?8 idempotency key, ?9 summary patch, ?10 new state or NULL.
_UPSERT = """
INSERT INTO transactions (txn, state, first_seq, last_seq, created_ts, updated_ts,
                          last_type, amount, currency, idem_key, summary)
VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (txn) DO UPDATE SET
    state      = COALESCE(?10, state),
    last_seq   = ?3,
    updated_ts = ?4,
    last_type  = ?5,
    amount     = COALESCE(amount, ?6),
    currency   = COALESCE(currency, ?7),
    idem_key   = COALESCE(idem_key, ?8),
    summary    = CASE WHEN ?9 = '{}' THEN summary ELSE json_patch(summary, ?9) END
"""


def rebuild_projection(conn: sqlite3.Connection) -> int:
    """Recompute ``transactions`` from the events; returns the rows folded."""
    conn.execute("DELETE FROM transactions")
    count = 0
    cursor = conn.execute(
        "SELECT seq, ts, type, txn, payload FROM events WHERE txn IS NOT NULL ORDER BY seq"
    )
    for seq, ts, type_, txn, payload in cursor:
        _fold_one(conn, seq, ts, type_, txn, payload)
        count += 1
    return count


def fold_pending(conn: sqlite3.Connection) -> int:
    """Fold the events after the stored watermark; return the new watermark.

    Call inside a write transaction: the watermark is read and moved in it,
    so two folding connections never fold an event twice.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (PROJECTED_SEQ_KEY,)).fetchone()
    done = int(row[0]) if row else 0
    last = fold_events(conn, done)
    if last != done:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (PROJECTED_SEQ_KEY, str(last)),
        )
    return last


def fold_events(conn: sqlite3.Connection, after: int) -> int:
    """Fold the events after seq ``after`` into ``transactions``; return the last seq read."""
    last = after
    while True:
        rows = conn.execute(
            "SELECT seq, ts, type, txn, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, FOLD_BATCH_ROWS),
        ).fetchall()
        if not rows:
            return last
        for seq, ts, type_, txn, payload in rows:
            if txn is not None:
                _fold_one(conn, seq, ts, type_, txn, payload)
        last = rows[-1][0]


def _fold_one(
    conn: sqlite3.Connection, seq: int, ts: str, type_: str, txn: str, payload_text: str
) -> None:
    payload = json.loads(payload_text)
    try:
        apply_event(conn, seq, ts, type_, txn, payload)
    except sqlite3.IntegrityError:
        # A second sale journaled with an Idempotency-Key already taken (possible
        # only from a second writing process): the first sale keeps the key.
        apply_event(conn, seq, ts, type_, txn, {**payload, "idempotency_key": None})


# (newest seq, watermark): is there anything to fold? Read from the file each
# time, so other writers, rollbacks and retention can never make it drift.
_PENDING = (
    "SELECT (SELECT max(seq) FROM events), "
    f"(SELECT value FROM meta WHERE key = '{PROJECTED_SEQ_KEY}')"
)


class TransactionIndex:
    """Reads of the projection: one transaction, by idempotency key, work left at start.

    Shares the journal's connection and lock (``Journal.transactions``). Every
    read first folds the events appended since the last fold. A read-only
    opener must not write the file: it folds into a TEMP copy of the table
    (private to its connection, shadowing the file's), made from one snapshot.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: AbstractContextManager[Any],
        *,
        path: Path,
        readonly: bool,
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._path = path
        self._readonly = readonly
        self._shadow_seq: int | None = None
        """Read-only openers: the last seq folded into the TEMP copy, once it exists."""

    def catch_up(self) -> None:
        """Fold pending events (the caller holds the journal lock, no transaction open)."""
        newest, projected = self._conn.execute(_PENDING).fetchone()
        if self._readonly:
            after = self._shadow_seq if self._shadow_seq is not None else int(projected or 0)
            if newest is not None and newest > after:
                self._fold_into_shadow()
            return
        if newest is None or newest <= int(projected or 0):
            return
        try:
            self._conn.execute("PRAGMA synchronous = NORMAL")  # derived data: see module doc
            self._conn.execute("BEGIN IMMEDIATE")
            fold_pending(self._conn)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is what the caller needs to see
            raise map_write_error(exc, self._path) from None
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def _fold_into_shadow(self) -> None:
        try:
            self._conn.execute("BEGIN")  # one snapshot: watermark, copy and events agree
            try:
                after = self._shadow_seq
                if after is None:
                    row = self._conn.execute(
                        "SELECT value FROM main.meta WHERE key = ?", (PROJECTED_SEQ_KEY,)
                    ).fetchone()
                    for statement in _shadow_ddl(self._conn):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO temp.transactions SELECT * FROM main.transactions"
                    )
                    after = int(row[0]) if row else 0
                folded = fold_events(self._conn, after)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")  # the copy goes too: the next read starts over
                raise
            self._shadow_seq = folded
        except sqlite3.Error as exc:
            raise map_write_error(exc, self._path) from None

    def get(self, txn: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM transactions WHERE txn = ?", txn)

    def by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM transactions WHERE idem_key = ?", key)

    def _one(self, sql: str, value: str) -> dict[str, Any] | None:
        with self._lock:
            self.catch_up()
            cursor = self._conn.cursor()
            cursor.row_factory = sqlite3.Row
            row = cursor.execute(sql, (value,)).fetchone()
        return _as_dict(row) if row else None

    def incomplete_card_reads(self) -> int:
        """Sales whose card was read but that never completed (abandoned or cancelled)."""
        with self._lock:
            self.catch_up()
            row = self._conn.execute(
                f"SELECT count(*) FROM transactions WHERE {UNFINISHED_READ_STATES} "
                "AND json_extract(summary, '$.masked_pan') IS NOT NULL"
            ).fetchone()
        return int(row[0])

    def needing_work(self, final_states: frozenset[str]) -> list[dict[str, Any]]:
        """Transactions not final, or with a receipt, reversal or forward still open.

        A full scan of the projection: for crash recovery at start, not the hot path.
        """
        marks = ",".join("?" for _ in final_states)
        with self._lock:
            self.catch_up()
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


def _shadow_ddl(conn: sqlite3.Connection) -> list[str]:
    """The file's own DDL for ``transactions`` and its indexes, retargeted to TEMP."""
    statements = []
    rows = conn.execute(
        "SELECT type, sql FROM main.sqlite_master WHERE tbl_name = 'transactions' "
        "AND sql IS NOT NULL ORDER BY type DESC"  # the table before its indexes
    ).fetchall()
    for kind, sql in rows:
        if kind == "table":
            statements.append(re.sub(r"^CREATE TABLE ", "CREATE TEMP TABLE ", sql))
        else:
            statements.append(
                re.sub(r"^CREATE (UNIQUE )?INDEX (\w+)", r"CREATE \1INDEX temp.\2", sql)
            )
    return statements


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    doc = dict(row)
    doc["summary"] = json.loads(doc.get("summary") or "{}")
    return doc
