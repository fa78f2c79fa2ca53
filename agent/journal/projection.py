"""Transactions as a projection of the events: how one event changes its row.

Each event that names a transaction (``txn``) updates that transaction's row
in ``transactions``. The events are the truth; the table is an index for the
till API, crash recovery and reports, and can always be rebuilt from them
(:func:`rebuild_projection`). :func:`fold_row` is the one definition of what an
event does to a row; everything else applies it.

The table is folded lazily (an append writes only its event): the events after
the watermark ``meta.projected_seq`` are folded in one write transaction that
also moves the watermark (:func:`fold_pending`). Reads see pending events
through :mod:`.txindex`, so nobody sees the projection disagree with the log;
a crash between append and fold loses nothing; retention folds before it
removes events. Folds commit without an fsync of their own: derived data, made
durable by the next event's fsync (WAL order).

``summary`` is a JSON object of the sale's visible facts, merged event by
event (JSON merge patch, RFC 7396): the whitelisted payload fields below, plus
the receipt, reversal and forward sub-states derived from event types. Card
data never reaches it (the journal refuses it before this runs).

Money at the back office is tracked per authorization *attempt*
(docs/sync-protocol.md): ``summary.attempts`` maps each attempt id to its kind
(``online``/``forward``), outcome and journaled request; ``summary.reversals``
maps each reversed attempt to its state (``pending``/``acked``) and the
journaled reversal request. :func:`owed_reversals` says which attempts still
need a reversal that was never requested (a crash between two events), and
``summary.reversal`` is ``pending`` while any reversal is owed or unacknowledged
— the flag crash recovery looks for.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

PROJECTED_SEQ_KEY = "projected_seq"
FOLD_BATCH_ROWS = 1000
COLUMNS = (
    "txn", "state", "first_seq", "last_seq", "created_ts", "updated_ts",
    "last_type", "amount", "currency", "idem_key", "summary",
)  # fmt: skip
SELECT_ROWS = f"SELECT {', '.join(COLUMNS)} FROM transactions"
META_UPSERT = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

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


# Event type → (attempt kind, outcome it records for the attempt it names).
ATTEMPT_AFTER: dict[str, tuple[str, str]] = {
    "auth.requested": ("online", "requested"),
    "auth.approved": ("online", "approved"),
    "auth.declined": ("online", "declined"),
    "auth.unknown": ("online", "unknown"),
    "auth.unavailable": ("online", "unavailable"),
    "forward.requested": ("forward", "requested"),
    "forward.approved": ("forward", "approved"),
    "forward.declined": ("forward", "declined"),
}
# Outcomes after which the attempt may hold money at the back office.
MAY_HOLD_MONEY = frozenset({"requested", "approved", "unknown"})


def attempt_of(type_: str, txn: str, payload: dict[str, Any]) -> str:
    """The attempt an event names; events before protocol v2 name none (their keys were
    ``{txn}`` online and ``{txn}:forward``)."""
    named = payload.get("attempt")
    if isinstance(named, str) and named:
        return named
    return f"{txn}:forward" if type_.startswith("forward.") else txn


def summary_patch(type_: str, payload: dict[str, Any], txn: str = "") -> dict[str, Any]:
    patch = {key: value for key, value in payload.items() if key in SUMMARY_FIELDS}
    sub = SUBSTATE_AFTER.get(type_)
    if sub is not None:
        patch[sub[0]] = sub[1]
    attempt = ATTEMPT_AFTER.get(type_)
    if attempt is not None:
        entry: dict[str, Any] = {"kind": attempt[0], "outcome": attempt[1]}
        if isinstance(payload.get("request"), dict):
            entry["request"] = payload["request"]
        patch["attempts"] = {attempt_of(type_, txn, payload): entry}
    elif type_ == "reversal.requested":
        reversal: dict[str, Any] = {"state": "pending"}
        for key in ("key", "request"):
            if key in payload:
                reversal[key] = payload[key]
        patch["reversals"] = {attempt_of(type_, txn, payload): reversal}
    elif type_ == "reversal.acked":
        acked = {"state": "acked", "had_authorization": payload.get("had_authorization")}
        patch["reversals"] = {attempt_of(type_, txn, payload): acked}
    return patch


def owed_reversals(state: str, summary: dict[str, Any]) -> list[str]:
    """Attempts that must be reversed but whose reversal was never requested.

    An attempt whose outcome is unknown is always reversed; so is every attempt
    that may hold money once the sale is voided, or a forward in flight whose
    forward was cancelled or expired (it will never be resent to learn its answer).
    """
    attempts = summary.get("attempts")
    if not isinstance(attempts, dict):
        return []
    reversals = summary.get("reversals")
    reversed_ = reversals if isinstance(reversals, dict) else {}
    forward_dropped = summary.get("forward") in ("cancelled", "expired")
    owed = []
    for attempt, entry in attempts.items():
        if attempt in reversed_ or not isinstance(entry, dict):
            continue
        outcome = entry.get("outcome")
        if (
            outcome == "unknown"
            or (state == "voided" and outcome in MAY_HOLD_MONEY)
            or (entry.get("kind") == "forward" and outcome == "requested" and forward_dropped)
        ):
            owed.append(attempt)
    return owed


def pending_reversals(txn: str, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Reversals requested and not yet acknowledged, by attempt (with key and request)."""
    reversals = summary.get("reversals")
    if not isinstance(reversals, dict):
        # A row folded before protocol v2 (no attempts either) knows only that its one
        # reversal — of the attempt keyed by the txn — was pending, not what was sent.
        legacy = "attempts" not in summary and summary.get("reversal") == "pending"
        return {txn: {}} if legacy else {}
    return {
        attempt: entry
        for attempt, entry in reversals.items()
        if isinstance(entry, dict) and entry.get("state") == "pending"
    }


def reversal_flag(state: str, summary: dict[str, Any]) -> str | None:
    """``pending`` while a reversal is owed or unacknowledged, ``acked`` when all are done."""
    reversals = summary.get("reversals")
    if owed_reversals(state, summary) or (
        isinstance(reversals, dict)
        and any(isinstance(e, dict) and e.get("state") == "pending" for e in reversals.values())
    ):
        return "pending"
    if isinstance(reversals, dict) and reversals:
        return "acked"
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: null removes a key, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def fold_row(
    row: dict[str, Any] | None,
    seq: int,
    ts: str,
    type_: str,
    txn: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The transaction's row after one event (``row`` is None before its first event).

    The state follows :data:`STATE_AFTER`; amount, currency and idempotency key
    are kept from the first event that carries them; the summary takes the
    event's patch (the first event's patch as it is, later ones merged).
    """
    state = STATE_AFTER.get(type_)
    amount = payload.get("amount")
    amount = amount if type(amount) is int else None  # bool is not an amount
    currency = payload.get("currency")
    currency = currency if isinstance(currency, str) else None
    idem = payload.get("idempotency_key") if type_ == "sale.created" else None
    idem = idem if isinstance(idem, str) else None
    patch = summary_patch(type_, payload, txn)
    if row is None:
        new_row = {
            "txn": txn, "state": state or "open", "first_seq": seq, "last_seq": seq,
            "created_ts": ts, "updated_ts": ts, "last_type": type_, "amount": amount,
            "currency": currency, "idem_key": idem, "summary": patch,
        }  # fmt: skip
        _set_reversal_flag(new_row)
        return new_row
    new = dict(row)
    if state is not None:
        new["state"] = state
    new["last_seq"], new["updated_ts"], new["last_type"] = seq, ts, type_
    for column, value in (("amount", amount), ("currency", currency), ("idem_key", idem)):
        if new[column] is None:
            new[column] = value
    if patch:
        new["summary"] = merge_patch(row["summary"], patch)
    if patch or state is not None:
        _set_reversal_flag(new)
    return new


def _set_reversal_flag(row: dict[str, Any]) -> None:
    summary = row["summary"]
    if "attempts" not in summary and "reversals" not in summary:
        return  # nothing authorized yet (or a row from before protocol v2): leave it
    flag = reversal_flag(row["state"], summary)
    if flag != summary.get("reversal"):
        summary = dict(summary)
        if flag is None:
            summary.pop("reversal", None)
        else:
            summary["reversal"] = flag
        row["summary"] = summary


def read_row(conn: sqlite3.Connection, txn: str) -> dict[str, Any] | None:
    values = conn.execute(f"{SELECT_ROWS} WHERE txn = ?", (txn,)).fetchone()
    return row_dict(values) if values is not None else None


def row_dict(values: Any) -> dict[str, Any]:
    doc = dict(zip(COLUMNS, values, strict=True))
    doc["summary"] = json.loads(doc["summary"] or "{}")
    return doc


def fold_events(conn: sqlite3.Connection, after: int) -> int:
    """Fold the events after seq ``after`` into ``transactions``; return the last seq read.

    Call inside a write transaction. Rows are read once, folded in memory and
    written once per batch of events.
    """
    last = after
    while True:
        rows = conn.execute(
            "SELECT seq, ts, type, txn, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, FOLD_BATCH_ROWS),
        ).fetchall()
        if not rows:
            return last
        changed: dict[str, dict[str, Any]] = {}
        for seq, ts, type_, txn, payload in rows:
            if txn is not None:
                current = changed[txn] if txn in changed else read_row(conn, txn)
                changed[txn] = fold_row(current, seq, ts, type_, txn, json.loads(payload))
        for row in changed.values():
            write_row(conn, row)
        last = int(rows[-1][0])
        if len(rows) < FOLD_BATCH_ROWS:
            return last


def write_row(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    values = [row[column] for column in COLUMNS]
    values[-1] = json.dumps(row["summary"], sort_keys=True, separators=(",", ":"))
    try:
        conn.execute(_UPSERT, values)
    except sqlite3.IntegrityError:
        # A second sale journaled with an Idempotency-Key already taken (possible
        # only from a second writing process): the first sale keeps the key.
        values[COLUMNS.index("idem_key")] = None
        conn.execute(_UPSERT, values)


_UPSERT = (
    f"INSERT INTO transactions ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (txn) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
)


def fold_pending(conn: sqlite3.Connection) -> int:
    """Fold the events after the stored watermark; return the new watermark.

    Call inside a write transaction: the watermark is read and moved in it,
    so two folding connections never fold an event twice.
    """
    done = watermark(conn)
    last = fold_events(conn, done)
    if last != done:
        conn.execute(META_UPSERT, (PROJECTED_SEQ_KEY, str(last)))
    return last


def watermark(conn: sqlite3.Connection, schema: str = "main") -> int:
    row = conn.execute(
        f"SELECT value FROM {schema}.meta WHERE key = ?", (PROJECTED_SEQ_KEY,)
    ).fetchone()
    return int(row[0]) if row else 0


def rebuild_projection(conn: sqlite3.Connection) -> int:
    """Recompute ``transactions`` from the events (inside a write transaction).

    Returns the last seq folded; the caller sets the watermark.
    """
    conn.execute("DELETE FROM transactions")
    return fold_events(conn, 0)
