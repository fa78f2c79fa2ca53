"""Reads of the transactions projection, always as of the newest event.

The table lags the log by the events after its watermark (appends do not fold;
see :mod:`.projection`). Reads make up the difference without writing:

- one transaction (by id or idempotency key): its stored row, with the
  pending events of that transaction folded in memory by the same
  :func:`~.projection.fold_row` — read in one snapshot, no write transaction;
- scans (work left at start, unfinished card reads): the writer folds the
  table first (one write transaction, no fsync); so it does when more than
  ``OVERLAY_MAX_PENDING`` events wait, which bounds the in-memory work.

A read-only opener must not write the file: it folds into a TEMP copy of the
table (private to its connection, shadowing the file's), made from one
snapshot, and answers every read from that copy.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .projection import (
    COLUMNS,
    PROJECTED_SEQ_KEY,
    SELECT_ROWS,
    UNFINISHED_READ_STATES,
    fold_events,
    fold_pending,
    fold_row,
    read_row,
    row_dict,
    watermark,
)
from .sqlite_errors import map_write_error, rollback_quietly

OVERLAY_MAX_PENDING = 32
"""More events than this after the watermark: a read folds the table first."""

_WATERMARK = f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{PROJECTED_SEQ_KEY}')"
_PENDING = f"SELECT (SELECT max(seq) FROM events), {_WATERMARK}"
# One statement, so one snapshot: the stored row (first, tagged NULL) and the
# transaction's pending events after the watermark, in seq order.
_OVERLAY = (
    f"SELECT NULL, {', '.join(COLUMNS)} FROM transactions WHERE txn = ?1 UNION ALL "
    f"SELECT seq, ts, type, payload{', NULL' * (len(COLUMNS) - 3)} FROM events "
    f"WHERE seq > {_WATERMARK} AND txn = ?1 ORDER BY 1"
)
_PENDING_FOR_KEY = (
    f"SELECT txn FROM events WHERE seq > {_WATERMARK} AND type = 'sale.created' "
    "AND txn IS NOT NULL AND json_extract(payload, '$.idempotency_key') = ? ORDER BY seq LIMIT 1"
)


class TransactionIndex:
    """One transaction, by idempotency key, work left at start, unfinished card reads.

    Shares the journal's connection and lock (``Journal.transactions``).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: AbstractContextManager[Any],
        *,
        path: Path,
        readonly: bool,
        head_seq: Callable[[], int | None],
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._path = path
        self._readonly = readonly
        self._head_seq = head_seq
        """The journal's head as this process last appended it (None: unknown)."""
        self._projected: int | None = None
        """The watermark as this process last folded it (a hint for when to fold)."""
        self._shadow_seq: int | None = None
        """Read-only openers: the last seq folded into the TEMP copy, once it exists."""

    # ---------------------------------------------------------------- reads
    def get(self, txn: str) -> dict[str, Any] | None:
        with self._lock:
            if self._readonly:
                self._fold_into_shadow_if_behind()
                return read_row(self._conn, txn)
            self._fold_if_far_behind()
            return self._overlaid(txn)

    def by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if self._readonly:
                self._fold_into_shadow_if_behind()
                return self._stored_by_key(key)
            self._fold_if_far_behind()
            owner = self._key_owner(key)
            return self._overlaid(owner, owns_its_key=True) if owner is not None else None

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
            rows = self._conn.execute(
                f"""
                {SELECT_ROWS}
                WHERE state NOT IN ({marks})
                   OR json_extract(summary, '$.receipt') IN ('pending', 'printing')
                   OR json_extract(summary, '$.reversal') = 'pending'
                   OR json_extract(summary, '$.forward') IN ('pending', 'requested')
                ORDER BY first_seq
                """,
                tuple(sorted(final_states)),
            ).fetchall()
        return [row_dict(row) for row in rows]

    # ------------------------------------------------------------- overlay
    def _overlaid(self, txn: str, *, owns_its_key: bool = False) -> dict[str, Any] | None:
        try:
            rows = self._conn.execute(_OVERLAY, (txn,)).fetchall()
        except sqlite3.Error as exc:
            raise map_write_error(exc, self._path) from None
        stored: dict[str, Any] | None = None
        row = None
        for tag, *values in rows:
            if tag is None:
                stored = row = row_dict(values)
            else:
                ts, type_, payload = values[0], values[1], values[2]
                row = fold_row(row, tag, ts, type_, txn, json.loads(payload))
        if row is None or row["idem_key"] is None or owns_its_key:
            return row
        if (stored is None or stored["idem_key"] is None) and self._key_owner(
            row["idem_key"]
        ) != txn:
            # The key came from a pending event, and the fold gives a key to the
            # first sale that carries it (write_row): so must this view.
            row["idem_key"] = None
        return row

    def _key_owner(self, key: str) -> str | None:
        """The sale a fold gives ``key`` to: the one already holding it, else the
        first pending ``sale.created`` that carries it."""
        stored = self._conn.execute(
            "SELECT txn FROM transactions WHERE idem_key = ?", (key,)
        ).fetchone()
        if stored is not None:
            return str(stored[0])
        pending = self._conn.execute(_PENDING_FOR_KEY, (key,)).fetchone()
        return str(pending[0]) if pending else None

    def _stored_by_key(self, key: str) -> dict[str, Any] | None:
        values = self._conn.execute(f"{SELECT_ROWS} WHERE idem_key = ?", (key,)).fetchone()
        return row_dict(values) if values is not None else None

    # ---------------------------------------------------------------- folds
    def catch_up(self) -> None:
        """Bring the table up to the newest event (the caller holds the journal lock)."""
        if self._readonly:
            self._fold_into_shadow_if_behind()
            return
        newest, projected = self._conn.execute(_PENDING).fetchone()
        if newest is not None and newest > (projected or 0):
            self._fold()

    def _fold_if_far_behind(self) -> None:
        """Bound the overlay's work: fold when many events wait (by this process's count;
        a stale count only costs a fold that finds little to do)."""
        head = self._head_seq()
        if self._projected is None or head is None:
            newest, projected = self._conn.execute(_PENDING).fetchone()
            head, self._projected = newest or 0, projected or 0
        if head - self._projected > OVERLAY_MAX_PENDING:
            self._fold()

    def _fold(self) -> None:
        try:
            self._conn.execute("PRAGMA synchronous = NORMAL")  # derived data: see .projection
            self._conn.execute("BEGIN IMMEDIATE")
            projected = fold_pending(self._conn)
            self._conn.execute("COMMIT")
            self._projected = projected
        except sqlite3.Error as exc:
            rollback_quietly(self._conn)
            raise map_write_error(exc, self._path) from None
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def _fold_into_shadow_if_behind(self) -> None:
        newest, projected = self._conn.execute(_PENDING).fetchone()
        after = self._shadow_seq if self._shadow_seq is not None else (projected or 0)
        if newest is None or newest <= after:
            return
        try:
            self._conn.execute("BEGIN")  # one snapshot: watermark, copy and events agree
            try:
                after = self._shadow_seq
                if after is None:
                    after = watermark(self._conn)
                    for statement in _shadow_ddl(self._conn):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO temp.transactions SELECT * FROM main.transactions"
                    )
                folded = fold_events(self._conn, after)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")  # the copy goes too: the next read starts over
                raise
            self._shadow_seq = folded
        except sqlite3.Error as exc:
            raise map_write_error(exc, self._path) from None


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
