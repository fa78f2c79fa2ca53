"""Anomaly flags computed from the stored event stream of each terminal, incrementally.

:func:`scan` reads, per terminal, the events after the last seq it processed (table
``anomaly_cursors``), with up to ``lookback_events`` earlier events as context (the
approval a void refers to, the card read of a declined sale), and stores one
:class:`AnomalyFlag` per finding (table ``anomaly_flags``). A flag's id is derived from
(terminal, kind, what it is about), so scanning the same events again — a retry, two
replicas — stores nothing twice. Each terminal is scanned in its own transaction under
its own lock: a long scan never holds the whole fleet, and two replicas never scan one
terminal at once.

Kinds (docs/alerts.md has the rules and their defaults):

- ``void_after_approval``: ``sale.voided`` within ``void_window_s`` of the sale's approval;
- ``card_read_no_sale``: a card was read, then the sale was cancelled or abandoned;
- ``card_read_failed``: ``read_fail_threshold`` sales within ``read_fail_window_s`` ended
  cancelled or abandoned after unreadable swipes (``card.read_failed``) and no card read —
  the customers tried, the reader could not read them (a worn or dirty head);
- ``repeated_declines``: ``decline_threshold`` declines of one card (by PAN token) within
  ``decline_window_s``;
- ``offline_burst``: ``offline_threshold`` offline approvals within ``offline_window_s``;
- ``fallback_rate``: ``entry_threshold`` fallback/manual card reads among the last
  ``entry_window`` reads;
- ``outside_hours``: a sale created while the store is closed (needs a store calendar:
  :data:`CALENDAR_NOTE` when none is available);
- ``chain_integrity``: the store rejected uploads for a gap, a chain mismatch or a
  conflict (records deleted or edited on the terminal) since the last scan;
- ``journal_rewritten``: the terminal's heartbeat reports a journal head below the held
  one, or the held seq with another hash;
- ``clock_backwards``: an event's time is before the previous event's;
- ``clock_ahead``: an event's time is ahead of the back office's clock;
- ``clock_skew``: a heartbeat's ``sent_at`` (or its reported ``clock_skew_s``) differs from
  the time it was received by more than ``clock_skew_s`` (flagged when it starts);
- ``config_changed``: every ``config.changed`` event.

This module must never read, store or print a PAN: cards are matched by the PAN token the
terminal computed, and a flag shows only its first 12 hex digits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .db import Database, Transaction
from .store import BackofficeStore

KINDS = (
    "void_after_approval",
    "card_read_no_sale",
    "card_read_failed",
    "repeated_declines",
    "offline_burst",
    "fallback_rate",
    "outside_hours",
    "chain_integrity",
    "journal_rewritten",
    "clock_backwards",
    "clock_ahead",
    "clock_skew",
    "config_changed",
    # Raised by end-of-day reconciliation (backoffice/closes/reconciler.py FLAG_KINDS) into the
    # same table, so the alerting turns them into alerts like the rest.
    "close_missing_seqs",
    "close_totals_mismatch",
    "close_capture_mismatch",
    "close_invalid",
)
APPROVALS = ("auth.approved", "offline.approved", "forward.approved")
DECLINES = ("auth.declined", "forward.declined")
SALE_ABANDONED = ("sale.cancelled", "sale.abandoned")
FALLBACK_MODES = ("fallback", "manual")
CALENDAR_NOTE = "outside_hours is not evaluated: no store calendar is available to the back office"

#: A store calendar: whether ``store`` is open at a UTC epoch instant; None when unknown.
StoreCalendar = Callable[[str, float], bool | None]


class AnomalyConfigError(ValueError):
    """A setting of :class:`AnomalyConfig` is out of range; the message names it."""


@dataclass(frozen=True)
class AnomalyConfig:
    """Windows and thresholds of the rules (seconds, counts)."""

    void_window_s: float = 120.0
    decline_window_s: float = 600.0
    decline_threshold: int = 3
    offline_window_s: float = 900.0
    offline_threshold: int = 5
    entry_window: int = 20
    entry_threshold: int = 5
    read_fail_window_s: float = 1800.0
    read_fail_threshold: int = 2
    clock_backwards_s: float = 1.0
    clock_ahead_s: float = 300.0
    clock_skew_s: float = 120.0
    lookback_events: int = 2000
    chunk_events: int = 5000

    def __post_init__(self) -> None:
        for name in ("void_window_s", "decline_window_s", "offline_window_s",
                     "read_fail_window_s", "clock_backwards_s", "clock_ahead_s",
                     "clock_skew_s"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise AnomalyConfigError(f"anomalies.{name} is {value!r}; give seconds >= 0")
        for name in ("decline_threshold", "offline_threshold", "entry_window",
                     "entry_threshold", "read_fail_threshold", "lookback_events",
                     "chunk_events"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AnomalyConfigError(f"anomalies.{name} is {value!r}; give a count >= 1")
        if self.entry_threshold > self.entry_window:
            raise AnomalyConfigError(
                f"anomalies.entry_threshold ({self.entry_threshold}) is more than "
                f"entry_window ({self.entry_window}): it could never be reached"
            )


@dataclass(frozen=True)
class AnomalyFlag:
    """One finding: which terminal and store, what, the exact seqs and sales, when."""

    id: str
    terminal: str
    store: str
    kind: str
    seqs: tuple[int, ...]
    txns: tuple[str, ...]
    at: str
    """The time of the event that raised it (ISO 8601), or of the heartbeat / scan."""
    detected_at: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "terminal": self.terminal,
            "store": self.store,
            "kind": self.kind,
            "seqs": list(self.seqs),
            "txns": list(self.txns),
            "at": self.at,
            "detected_at": self.detected_at,
            "detail": self.detail,
        }


@dataclass
class ScanResult:
    terminals: int = 0
    events: int = 0
    flags: list[AnomalyFlag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Ev:
    seq: int
    ts: float
    ts_text: str
    type: str
    txn: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Found:
    kind: str
    key: str
    seqs: tuple[int, ...]
    txns: tuple[str, ...]
    at: str
    detail: str


def flag_id(terminal: str, kind: str, key: str) -> str:
    return hashlib.sha256(f"{terminal}\x1f{kind}\x1f{key}".encode()).hexdigest()[:32]


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time with offset; None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def iso(epoch: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def store_of(terminal: str, registry: dict[str, str]) -> str:
    """The terminal's store: the registry's, else the id's part before its last ``-``
    (``STORE-LANE``, the registry's default ids), else the terminal id itself."""
    if terminal in registry:
        return registry[terminal]
    head, sep, _ = terminal.rpartition("-")
    return head if sep and head else terminal


def registry_stores(store: BackofficeStore) -> dict[str, str]:
    rows = store.db.execute("SELECT terminal, store FROM terminal_registry").fetchall()
    return {str(t): str(s) for t, s in rows}


def scan_lock(terminal: str) -> str:
    return f"anomalies\x1f{terminal}"


# -- the rules over a window of events ------------------------------------------------------


def _detect(
    events: list[_Ev],
    first_new: int,
    now: float,
    config: AnomalyConfig,
    store_id: str,
    calendar: StoreCalendar | None,
) -> list[_Found]:
    """Findings raised by ``events[first_new:]`` (the earlier ones are context only)."""
    found: list[_Found] = []
    approval: dict[str, _Ev] = {}
    card_read: dict[str, _Ev] = {}
    declines: dict[str, deque[_Ev]] = defaultdict(deque)
    offline: deque[_Ev] = deque()
    reads: deque[bool] = deque(maxlen=config.entry_window)
    unreadable: dict[str, int] = defaultdict(int)  # txn -> unreadable swipes
    unread_ends: deque[_Ev] = deque()  # sales ended after unreadable swipes only
    prev: _Ev | None = None
    for index, ev in enumerate(events):
        new = index >= first_new
        txn = ev.txn or ""
        if ev.type in APPROVALS and ev.txn:
            approval[txn] = ev
        elif ev.type == "card.read" and ev.txn:
            card_read[txn] = ev
            fallback = ev.payload.get("entry_mode") in FALLBACK_MODES
            reads.append(fallback)
            if new and fallback and sum(reads) == config.entry_threshold:
                found.append(_Found(
                    "fallback_rate", str(ev.seq), (ev.seq,), (txn,), ev.ts_text,
                    f"{config.entry_threshold} of the last {len(reads)} card reads were "
                    f"fallback or manual entry (this one: {ev.payload.get('entry_mode')})",
                ))  # fmt: skip
        if new and ev.type == "sale.voided" and ev.txn:
            approved = approval.get(txn)
            after = ev.ts - approved.ts if approved is not None else None
            if after is None and isinstance(ev.payload.get("after_s"), int | float):
                after = float(ev.payload["after_s"])
            if after is not None and 0 <= after <= config.void_window_s:
                seqs = (approved.seq, ev.seq) if approved is not None else (ev.seq,)
                found.append(_Found(
                    "void_after_approval", str(ev.seq), seqs, (txn,), ev.ts_text,
                    f"sale {txn} voided {after:.1f}s after its approval "
                    f"(window {config.void_window_s:g}s)",
                ))  # fmt: skip
        if new and ev.type in SALE_ABANDONED and txn in card_read:
            read = card_read[txn]
            found.append(_Found(
                "card_read_no_sale", str(ev.seq), (read.seq, ev.seq), (txn,), ev.ts_text,
                f"sale {txn}: a {read.payload.get('brand') or 'card'} card was read "
                f"({read.payload.get('entry_mode') or 'unknown entry'}) at seq {read.seq}, "
                f"then the sale ended {ev.type.split('.')[1]}: "
                f"{str(ev.payload.get('reason', ''))[:120]}",
            ))  # fmt: skip
        if ev.type == "card.read_failed" and ev.txn:
            unreadable[txn] += 1
        if ev.type in SALE_ABANDONED and unreadable.get(txn) and txn not in card_read:
            unread_ends.append(ev)
            while unread_ends and ev.ts - unread_ends[0].ts > config.read_fail_window_s:
                unread_ends.popleft()
            if new and len(unread_ends) == config.read_fail_threshold:
                found.append(_Found(
                    "card_read_failed", str(unread_ends[0].seq),
                    tuple(e.seq for e in unread_ends), tuple(e.txn or "" for e in unread_ends),
                    ev.ts_text,
                    f"{len(unread_ends)} sales within {ev.ts - unread_ends[0].ts:.0f}s ended "
                    f"{ev.type.split('.')[1]} after {unreadable[txn]} unreadable swipe(s) and no "
                    "card read: the card reader cannot read cards (clean its head with a "
                    "cleaning card; replace it if that does not help)",
                ))  # fmt: skip
        if ev.type in DECLINES and txn in card_read:
            token = card_read[txn].payload.get("pan_token")
            if isinstance(token, str) and token:
                window = declines[token]
                window.append(ev)
                while window and ev.ts - window[0].ts > config.decline_window_s:
                    window.popleft()
                if new and len(window) == config.decline_threshold:
                    found.append(_Found(
                        "repeated_declines", f"{token}\x1f{window[0].seq}",
                        tuple(e.seq for e in window), tuple(e.txn or "" for e in window),
                        ev.ts_text,
                        f"{len(window)} declines of one card (PAN token {token[:12]}…) within "
                        f"{ev.ts - window[0].ts:.0f}s (threshold {config.decline_threshold} in "
                        f"{config.decline_window_s:g}s)",
                    ))  # fmt: skip
        if ev.type == "offline.approved":
            offline.append(ev)
            while offline and ev.ts - offline[0].ts > config.offline_window_s:
                offline.popleft()
            if new and len(offline) == config.offline_threshold:
                found.append(_Found(
                    "offline_burst", str(offline[0].seq), tuple(e.seq for e in offline),
                    tuple(e.txn or "" for e in offline), ev.ts_text,
                    f"{len(offline)} offline approvals within {ev.ts - offline[0].ts:.0f}s "
                    f"(threshold {config.offline_threshold} in {config.offline_window_s:g}s)",
                ))  # fmt: skip
        if new and ev.type == "sale.created" and calendar is not None:
            is_open = calendar(store_id, ev.ts)
            if is_open is False:
                found.append(_Found(
                    "outside_hours", str(ev.seq), (ev.seq,), (txn,), ev.ts_text,
                    f"sale {txn} created at {ev.ts_text} while store {store_id} is closed",
                ))  # fmt: skip
        if new and ev.type == "config.changed":
            changed = ev.payload.get("changed")
            names = ", ".join(str(c) for c in changed)[:300] if isinstance(changed, list) else "?"
            restart = " (restart required)" if ev.payload.get("restart_required") else ""
            found.append(_Found(
                "config_changed", str(ev.seq), (ev.seq,), (), ev.ts_text,
                f"configuration changed: {names}{restart}",
            ))  # fmt: skip
        if new and prev is not None and ev.ts < prev.ts - config.clock_backwards_s:
            found.append(_Found(
                "clock_backwards", str(ev.seq), (prev.seq, ev.seq), (), ev.ts_text,
                f"event {ev.seq} is {prev.ts - ev.ts:.1f}s before event {prev.seq} "
                f"({ev.ts_text} after {prev.ts_text}): the terminal's clock went back",
            ))  # fmt: skip
        ahead = ev.ts - now
        first_ahead = prev is None or prev.ts - now <= config.clock_ahead_s
        if new and ahead > config.clock_ahead_s and first_ahead:
            found.append(_Found(
                "clock_ahead", str(ev.seq), (ev.seq,), (), ev.ts_text,
                f"event {ev.seq} is dated {ahead:.0f}s ahead of the back office's clock",
            ))  # fmt: skip
        prev = ev
    return found


# -- scanning the store -----------------------------------------------------------------------


def scan(
    store: BackofficeStore,
    now: float | None = None,
    config: AnomalyConfig | None = None,
    calendar: StoreCalendar | None = None,
    terminals: Iterable[str] | None = None,
) -> ScanResult:
    """Process every terminal's new events and heartbeat; returns the new flags."""
    config = config or AnomalyConfig()
    now = store.clock() if now is None else now
    result = ScanResult()
    if calendar is None:
        result.notes.append(CALENDAR_NOTE)
    stores = registry_stores(store)
    if terminals is None:
        terminals = changed_terminals(store)
    for terminal in terminals:
        result.terminals += 1
        store_id = store_of(terminal, stores)
        while True:
            chunk: _Chunk | None = None
            if store.db.dialect == "sqlite":
                # One writer: uploads and heartbeats wait while a write transaction is open,
                # so a chunk is read and judged first and the transaction only writes it
                # (judged again inside should another scan have moved the cursor meanwhile).
                chunk = _read_chunk(store.db, terminal, store_id, now, config, calendar)
            with store.transaction() as tx:
                tx.lock(scan_lock(terminal))
                if chunk is None or _cursor(tx, terminal) != chunk.cursor_before:
                    chunk = _read_chunk(tx, terminal, store_id, now, config, calendar)
                flags = _write_chunk(tx, terminal, store_id, now, chunk)
            result.events += chunk.count
            result.flags.extend(flags)
            if chunk.count < config.chunk_events:
                break
    return result


def changed_terminals(store: BackofficeStore) -> list[str]:
    """Terminals with anything new since their cursor: events, a heartbeat, a refusal."""
    rows = store.db.execute(
        "SELECT t.terminal FROM terminals t"
        " LEFT JOIN anomaly_cursors c ON c.terminal = t.terminal"
        " LEFT JOIN counters k ON k.terminal = t.terminal"
        " WHERE c.terminal IS NULL OR t.held_seq > c.last_seq"
        " OR coalesce(t.last_heartbeat_at, 0) > coalesce(c.heartbeat_at, 0)"
        " OR coalesce(k.chain_breaks, 0) != c.chain_breaks OR coalesce(k.gaps, 0) != c.gaps"
        " OR coalesce(k.conflicts, 0) != c.conflicts ORDER BY t.terminal"
    ).rows
    return [str(r[0]) for r in rows]


def _cursor(tx: Transaction | Database, terminal: str) -> dict[str, Any]:
    found = tx.execute(
        "SELECT last_seq, chain_breaks, gaps, conflicts, heartbeat_at, skewed, rewound"
        " FROM anomaly_cursors WHERE terminal = ?",
        (terminal,),
    )
    row = found.fetchone()
    names = ("last_seq", "chain_breaks", "gaps", "conflicts", "heartbeat_at", "skewed",
             "rewound")  # fmt: skip
    if row is None:
        return dict.fromkeys(names, 0) | {"heartbeat_at": None}
    return dict(zip(names, row, strict=True))


@dataclass
class _Chunk:
    """A chunk of a terminal's events judged: what to write, and the cursor it was read at."""

    cursor_before: dict[str, Any]
    cursor: dict[str, Any]
    new_last: int
    found: list[_Found]
    count: int


def _read_chunk(
    tx: Transaction | Database,
    terminal: str,
    store_id: str,
    now: float,
    config: AnomalyConfig,
    calendar: StoreCalendar | None,
) -> _Chunk:
    """Read the terminal's next events, heartbeat and counters and judge them (no writes)."""
    cursor = _cursor(tx, terminal)
    before = dict(cursor)
    last = int(cursor["last_seq"])
    rows = tx.execute(
        "SELECT seq, ts, type, txn, payload FROM events WHERE terminal = ? AND seq > ?"
        " AND seq <= ? ORDER BY seq",
        (terminal, max(0, last - config.lookback_events), last + config.chunk_events),
    ).rows
    events: list[_Ev] = []
    for seq, ts, type_, txn, payload in rows:
        when = parse_time(ts)
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = {}
        if when is None:  # not an ISO 8601 time with offset: take the previous event's
            when = events[-1].ts if events else now
        events.append(_Ev(int(seq), when, str(ts), str(type_), txn,
                          doc if isinstance(doc, dict) else {}))  # fmt: skip
    first_new = next((i for i, ev in enumerate(events) if ev.seq > last), len(events))
    found = _detect(events, first_new, now, config, store_id, calendar)
    found += _integrity(tx, terminal, cursor, now)
    found += _heartbeat(tx, terminal, cursor, config)
    new_last = events[-1].seq if len(events) > first_new else last
    return _Chunk(before, cursor, new_last, found, len(events) - first_new)


def _write_chunk(
    tx: Transaction, terminal: str, store_id: str, now: float, chunk: _Chunk
) -> list[AnomalyFlag]:
    """Store a judged chunk: its new flags (returned) and the terminal's cursor."""
    cursor = chunk.cursor
    flags = [
        AnomalyFlag(flag_id(terminal, f.kind, f.key), terminal, store_id, f.kind, f.seqs,
                    f.txns, f.at, now, f.detail)
        for f in chunk.found
    ]  # fmt: skip
    stored: list[AnomalyFlag] = []
    for flag in flags:
        written = tx.execute(
            "INSERT INTO anomaly_flags (id, terminal, store, kind, seqs, txns, at, detected_at,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (flag.id, terminal, store_id, flag.kind, json.dumps(list(flag.seqs)),
             json.dumps(list(flag.txns)), flag.at, now, flag.detail),
        ).rowcount  # fmt: skip
        if written:
            stored.append(flag)
    tx.execute(
        "INSERT INTO anomaly_cursors (terminal, last_seq, chain_breaks, gaps, conflicts,"
        " heartbeat_at, skewed, rewound) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (terminal) DO UPDATE SET last_seq = excluded.last_seq,"
        " chain_breaks = excluded.chain_breaks, gaps = excluded.gaps,"
        " conflicts = excluded.conflicts, heartbeat_at = excluded.heartbeat_at,"
        " skewed = excluded.skewed, rewound = excluded.rewound",
        (terminal, chunk.new_last, cursor["chain_breaks"], cursor["gaps"], cursor["conflicts"],
         cursor["heartbeat_at"], cursor["skewed"], cursor["rewound"]),
    )  # fmt: skip
    return stored


def _integrity(
    tx: Transaction | Database, terminal: str, cursor: dict[str, Any], now: float
) -> list[_Found]:
    """Uploads the store refused since the last scan (gaps, chain mismatches, conflicts)."""
    row = tx.execute(
        "SELECT chain_breaks, gaps, conflicts FROM counters WHERE terminal = ?", (terminal,)
    ).fetchone()
    if row is None:
        return []
    counts = {"chain_breaks": int(row[0]), "gaps": int(row[1]), "conflicts": int(row[2])}
    grown = {k: v - int(cursor[k]) for k, v in counts.items() if v > int(cursor[k])}
    cursor.update(counts)
    if not grown:
        return []
    what = {"chain_breaks": "chain mismatches (a prev_hash that is not the held head's hash)",
            "gaps": "sequence gaps (seqs missing before the batch)",
            "conflicts": "conflicts (a held seq sent again with another hash)"}  # fmt: skip
    detail = "; ".join(f"{n} upload(s) refused for {what[k]}" for k, n in grown.items())
    key = "/".join(str(counts[k]) for k in ("chain_breaks", "gaps", "conflicts"))
    return [_Found("chain_integrity", key, (), (), iso(now),
                   f"{detail}: records deleted or edited on the terminal, or a restored "
                   "journal; compare `posedge journal verify` on the till")]  # fmt: skip


def _heartbeat(
    tx: Transaction | Database, terminal: str, cursor: dict[str, Any], config: AnomalyConfig
) -> list[_Found]:
    row = tx.execute(
        "SELECT last_heartbeat_at, heartbeat_json, held_seq, head_hash, reported_head_seq,"
        " reported_head_hash FROM terminals WHERE terminal = ?",
        (terminal,),
    ).fetchone()
    if row is None or row[0] is None:
        return []
    received = float(row[0])
    if cursor["heartbeat_at"] is not None and received <= float(cursor["heartbeat_at"]):
        return []
    cursor["heartbeat_at"] = received
    found: list[_Found] = []
    held, head, reported, reported_hash = int(row[2]), row[3], row[4], row[5]
    rewritten = ""
    if reported is not None and int(reported) < held:
        rewritten = (f"the terminal reports journal head seq {reported}, below seq {held} the "
                     "back office holds: its journal lost records (deleted, or restored from "
                     "an old backup)")  # fmt: skip
    elif (
        reported is not None
        and int(reported) == held
        and reported_hash
        and head
        and (reported_hash != head)
    ):
        rewritten = (f"the terminal reports another hash for seq {held} than the held one: "
                     "its journal was edited")  # fmt: skip
    if rewritten and not cursor["rewound"]:
        found.append(_Found("journal_rewritten", f"{reported}@{received}",
                            (int(reported),), (), iso(received), rewritten))  # fmt: skip
    cursor["rewound"] = 1 if rewritten else 0
    try:
        doc = json.loads(row[1]) if row[1] else {}
    except ValueError:
        doc = {}
    skew: float | None = None
    sent = parse_time(doc.get("sent_at")) if isinstance(doc, dict) else None
    if sent is not None:
        skew = sent - received
    reported_skew = doc.get("clock_skew_s") if isinstance(doc, dict) else None
    if isinstance(reported_skew, int | float) and (skew is None or abs(reported_skew) > abs(skew)):
        skew = float(reported_skew)
    skewed = skew is not None and abs(skew) > config.clock_skew_s
    if skewed and not cursor["skewed"]:
        assert skew is not None
        found.append(_Found("clock_skew", f"hb@{received}", (), (), iso(received),
                            f"the terminal's clock is {skew:+.0f}s off the back office's "
                            f"(limit {config.clock_skew_s:g}s)"))  # fmt: skip
    cursor["skewed"] = 1 if skewed else 0
    return found


def recent_flags(
    store: BackofficeStore,
    since: float,
    kind: str | None = None,
    terminal: str | None = None,
    limit: int = 10_000,
) -> list[AnomalyFlag]:
    """Flags detected at or after ``since``, oldest first."""
    sql = (
        "SELECT id, terminal, store, kind, seqs, txns, at, detected_at, detail FROM anomaly_flags"
        " WHERE detected_at >= ?"
    )
    params: list[Any] = [since]
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    if terminal is not None:
        sql += " AND terminal = ?"
        params.append(terminal)
    sql += " ORDER BY detected_at, terminal, id LIMIT ?"
    params.append(limit)
    return [
        AnomalyFlag(str(r[0]), str(r[1]), str(r[2]), str(r[3]), tuple(json.loads(r[4])),
                    tuple(json.loads(r[5])), str(r[6]), float(r[7]), str(r[8]))
        for r in store.db.execute(sql, params).rows
    ]  # fmt: skip
