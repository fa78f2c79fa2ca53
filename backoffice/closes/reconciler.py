"""Reconcile every received ``day.closed`` with what the back office holds; store the
result per terminal × close (table close_reconciliations) and raise anomaly flags.

For one close (docs/reconciliation.md):

1. its payload must be a version-1 close (else state ``invalid``, flag ``close_invalid``);
2. every seq of its range must be held (else state ``missing_seqs``, flag
   ``close_missing_seqs`` naming the seqs; ``missing_from`` is where the terminal is asked
   to resend from, in the heartbeat reply — :func:`resend_from`; nothing else is judged
   on a partial range);
3. the close is recomputed from the held events (:mod:`.recompute`) and compared: totals
   per currency × outcome × brand × entry mode, line count and digest, pending sales
   (flag ``close_totals_mismatch`` per difference, with the sales of the group);
4. each line's captured money (:meth:`BackofficeStore.captured`) must match its outcome,
   judged by the sale's latest held outcome when it changed after the close (flag
   ``close_capture_mismatch`` per sale);
5. state ``reconciled`` when nothing differs, else ``mismatch``.

Flags go to the table the anomaly scan writes (``anomaly_flags``), with ids derived
from (terminal, kind, close and subject), so reconciling again never flags twice and the
alert engine (backoffice/alerting) turns them into alerts like every anomaly.

A close is reconciled when it arrives, again when seqs it lacked arrive (the events
upload calls :func:`reconcile_terminal`), and by ``posedge backoffice closes reconcile``.
Reads run outside any write transaction; each close's result is written in one short
transaction under the terminal's close lock. This module must never store or print card
data: events hold none (the ingest refuses it) and flags name sales by txn.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..anomalies import flag_id, registry_stores, store_of
from ..store import BackofficeStore
from .recompute import (
    RECEIPT_FIELDS,
    RECEIPT_TYPES,
    EventRow,
    capture_differences,
    compare,
    later_outcomes,
    payload_problem,
    recompute,
    settlement_groups,
)

log = logging.getLogger("posedge.backoffice.closes")

DAY_CLOSED = "day.closed"
STATES = ("reconciled", "missing_seqs", "mismatch", "invalid")
FLAG_KINDS = (
    "close_missing_seqs",
    "close_totals_mismatch",
    "close_capture_mismatch",
    "close_invalid",
)
IN_CHUNK = 500
FLAG_TXNS_MAX = 500
# The events a close reads: no time (nothing reads it), and no payload for a receipt event
# that names no field a close reads (most of a day's events; recompute.py skips them).
_EVENT_COLUMNS = (
    "seq, '' AS ts, type, txn, CASE WHEN type IN ("
    + ", ".join(f"'{t}'" for t in sorted(RECEIPT_TYPES))
    + ") AND "
    + " AND ".join(f"payload NOT LIKE '%\"{name}\"%'" for name in RECEIPT_FIELDS)
    + " THEN NULL ELSE payload END AS payload"
)


#: (id, kind, seqs, txns, at, detail) of one anomaly flag.
Flag = tuple[str, str, list[int], list[str], str, str]
CHUNK_CLOSES = 50


def close_lock(terminal: str) -> str:
    return f"closes\x1f{terminal}"


@dataclass
class CloseResult:
    """The latest reconciliation of one close."""

    terminal: str
    close_seq: int
    store: str
    business_day: str
    seq_from: int
    seq_to: int
    state: str
    missing: list[list[int]] = field(default_factory=list)
    """Missing seqs as [first, last] ranges."""
    missing_count: int = 0
    missing_from: int | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    reported: list[dict[str, Any]] = field(default_factory=list)
    recomputed: list[dict[str, Any]] = field(default_factory=list)
    pending_txns: list[str] = field(default_factory=list)
    settlement: list[dict[str, Any]] = field(default_factory=list)
    lines_count: int = 0
    runs: int = 1
    first_reconciled_at: float = 0.0
    reconciled_at: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "store": self.store,
            "business_day": self.business_day,
            "close_seq": self.close_seq,
            "seq_from": self.seq_from,
            "seq_to": self.seq_to,
            "state": self.state,
            "missing_count": self.missing_count,
            "missing": self.missing,
            "missing_from": self.missing_from,
            "differences": self.differences,
            "reported_totals": self.reported,
            "recomputed_totals": self.recomputed,
            "lines_count": self.lines_count,
            "pending_count": len(self.pending_txns),
            "runs": self.runs,
            "first_reconciled_at": self.first_reconciled_at,
            "reconciled_at": self.reconciled_at,
        }


def _held(rows: Iterable[Sequence[Any]]) -> list[EventRow]:
    """Rows ``seq, ts, type, txn, payload`` as held events (payloads parsed when needed)."""
    return [tuple(r) if type(r) is not tuple else r for r in rows]


def missing_ranges(held: Iterable[int], first: int, last: int) -> list[list[int]]:
    """The seqs of ``first..last`` not in ``held``, as [first, last] ranges."""
    ranges: list[list[int]] = []
    expected = first
    for seq in sorted(held):
        if seq < first or seq > last:
            continue
        if seq > expected:
            ranges.append([expected, seq - 1])
        expected = seq + 1
    if expected <= last:
        ranges.append([expected, last])
    return ranges


# -- which closes ---------------------------------------------------------------------------------


def open_closes(
    store: BackofficeStore, terminal: str | None = None, all_states: bool = False
) -> list[tuple[str, int, str, str]]:
    """Received closes not reconciled yet (or all, with ``all_states``), in seq order per
    terminal: (terminal, close seq, ts, payload text)."""
    sql = (
        "SELECT e.terminal, e.seq, e.ts, e.payload FROM events e"
        " LEFT JOIN close_reconciliations c ON c.terminal = e.terminal AND c.close_seq = e.seq"
        " WHERE e.type = 'day.closed'"
    )
    params: list[Any] = []
    if terminal is not None:
        sql += " AND e.terminal = ?"
        params.append(terminal)
    if not all_states:
        sql += " AND (c.state IS NULL OR c.state != 'reconciled')"
    sql += " ORDER BY e.terminal, e.seq"
    return [(str(t), int(s), str(ts), str(p)) for t, s, ts, p in store.db.execute(sql, params).rows]


def reconcile_terminal(
    store: BackofficeStore, terminal: str, now: float | None = None
) -> list[CloseResult]:
    """Reconcile the terminal's closes that are not reconciled yet, oldest first."""
    return reconcile_closes(store, open_closes(store, terminal), now)


def reconcile_open(
    store: BackofficeStore,
    now: float | None = None,
    business_day: str | None = None,
    store_id: str | None = None,
    everything: bool = False,
    workers: int = 1,
    target: Path | str | None = None,
) -> list[CloseResult]:
    """Reconcile every received close not reconciled yet (``everything``: again, all),
    optionally only those of a business day and/or a store.

    ``workers`` > 1 (with ``target``, the database's path or URL): the terminals are
    shared out to that many processes, each with its own connection (the recomputation
    is CPU work in Python); a terminal's closes stay in one process, in seq order."""
    found = open_closes(store, all_states=everything)
    if business_day is not None or store_id is not None:
        registry = registry_stores(store)
        kept = []
        for item in found:
            if store_id is not None and store_of(item[0], registry) != store_id:
                continue
            if business_day is not None and f'"business_day":"{business_day}"' not in item[3]:
                try:
                    day = json.loads(item[3]).get("business_day")
                except (ValueError, AttributeError):
                    day = None
                if day != business_day:
                    continue
            kept.append(item)
        found = kept
    if workers > 1 and target is not None and len({f[0] for f in found}) > 1:
        return _in_processes(target, found, store.clock() if now is None else now, workers)
    return reconcile_closes(store, found, now)


def _in_processes(
    target: Path | str, found: list[tuple[str, int, str, str]], now: float, workers: int
) -> list[CloseResult]:
    terminals = sorted({f[0] for f in found})
    share = {t: i % workers for i, t in enumerate(terminals)}
    groups: list[list[tuple[str, int, str, str]]] = [[] for _ in range(workers)]
    for item in found:
        groups[share[item[0]]].append(item)
    context = multiprocessing.get_context("spawn")  # no forked pool threads or connections
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        parts = pool.map(_reconcile_in_process, [target] * workers, groups, [now] * workers)
        return [result for part in parts for result in part]


def _reconcile_in_process(
    target: Path | str, closes: list[tuple[str, int, str, str]], now: float
) -> list[CloseResult]:
    if not closes:
        return []
    with BackofficeStore(target, pool_size=1) as store:
        return reconcile_closes(store, closes, now)


def reconcile_closes(
    store: BackofficeStore, closes: Iterable[tuple[str, int, str, str]], now: float | None = None
) -> list[CloseResult]:
    """Reconcile these closes (terminal, seq, ts, payload text), ``CHUNK_CLOSES`` at a time:
    their events read in one statement (PostgreSQL), their captured money in one, their
    results and flags written in one transaction."""
    now = store.clock() if now is None else now
    registry = registry_stores(store)
    todo = list(closes)
    done: list[CloseResult] = []
    memo: dict[tuple[str, int], list[str]] = {}
    for start in range(0, len(todo), CHUNK_CLOSES):
        chunk = todo[start : start + CHUNK_CLOSES]
        payloads: list[Any] = []
        for _, _, _, text in chunk:
            try:
                payloads.append(json.loads(text))
            except ValueError:
                payloads.append(None)
        ranges = [
            (terminal, int(p["seq_from"]), int(p["seq_to"]))
            if payload_problem(p) is None
            else (terminal, 1, 0)
            for (terminal, _, _, _), p in zip(chunk, payloads, strict=True)
        ]
        held = _range_events(store, ranges)
        captured = store.captured_by_terminal(sorted({c[0] for c in chunk}))
        written = []
        for (terminal, seq, ts, _), payload, events in zip(chunk, payloads, held, strict=True):
            home = store_of(terminal, registry)
            result, flags = _reconcile_one(
                store, terminal, seq, ts, payload, home, events, captured.get(terminal, {}), memo
            )
            if result.state in ("reconciled", "mismatch"):  # its pending sales are known
                memo[(terminal, seq)] = result.pending_txns
            written.append((result, flags))
        done += _write(store, written, now)
    return done


def _range_events(
    store: BackofficeStore, ranges: list[tuple[str, int, int]]
) -> list[list[EventRow]]:
    """The held events of each (terminal, first seq, last seq), in seq order."""
    if store.db.dialect != "postgresql":
        return [
            _held(
                store.db.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE terminal = ?"
                    " AND seq BETWEEN ? AND ? ORDER BY seq",
                    (terminal, low, high),
                ).rows
            )
            for terminal, low, high in ranges
        ]
    out: list[list[EventRow]] = [[] for _ in ranges]
    rows = store.db.execute(
        f"SELECT r.i, {_EVENT_COLUMNS} FROM unnest(?::bigint[], ?::text[],"
        " ?::bigint[], ?::bigint[]) AS r(i, terminal, lo, hi) JOIN events e"
        " ON e.terminal = r.terminal AND e.seq BETWEEN r.lo AND r.hi ORDER BY r.i, e.seq",
        (
            list(range(len(ranges))),
            [r[0] for r in ranges],
            [r[1] for r in ranges],
            [r[2] for r in ranges],
        ),
    ).rows
    for row in rows:
        out[row[0]].append(row[1:])
    return out


# -- one close ----------------------------------------------------------------------------------


def _reconcile_one(
    store: BackofficeStore,
    terminal: str,
    close_seq: int,
    ts: str,
    payload: Any,
    store_id: str,
    in_range: list[EventRow],
    captured: dict[str, int],
    memo: dict[tuple[str, int], list[str]],
) -> tuple[CloseResult, list[Flag]]:
    problem = payload_problem(payload)
    if problem is not None:
        day = payload.get("business_day") if isinstance(payload, dict) else None
        result = CloseResult(terminal, close_seq, store_id, str(day or "?")[:32], 0, -1,
                             "invalid", detail=problem)  # fmt: skip
        flags = [_flag(result, "close_invalid", "invalid", [close_seq], [], ts,
                       f"close at seq {close_seq} cannot be reconciled: {problem}")]  # fmt: skip
        return result, flags
    seq_from, seq_to = int(payload["seq_from"]), int(payload["seq_to"])
    result = CloseResult(terminal, close_seq, store_id, payload["business_day"], seq_from,
                         seq_to, "reconciled", reported=list(payload["totals"]))  # fmt: skip
    at = str(payload.get("closed_at") or ts)
    result.missing = missing_ranges((ev[0] for ev in in_range), seq_from, seq_to)
    result.missing_count = sum(b - a + 1 for a, b in result.missing)
    if result.missing:
        return _missing(store, result, at)
    before = _in_flight_before(store, terminal, payload, memo)
    candidates = {ev[3] for ev in in_range if ev[3] is not None} | before
    started = {ev[3] for ev in in_range if ev[2] == "sale.created" and ev[3] is not None}
    earlier = _events_of(store, terminal, sorted(candidates - started), "seq < ?", seq_from)
    events = earlier + in_range
    computed = recompute(seq_from, seq_to, events, candidates)
    result.recomputed = computed.totals()
    result.lines_count = len(computed.lines)
    result.pending_txns = [p.txn for p in computed.pending]
    result.settlement = settlement_groups(computed.lines)
    differences = compare(payload, computed)
    wrong = capture_differences(computed.lines, captured)
    if wrong:
        # Judge by the latest outcome when the sale changed after the close.
        txns = {d["txn"] for d in wrong}
        after = _events_of(store, terminal, sorted(txns), "seq > ?", seq_to)
        if after:
            changed = {ev[3] for ev in after if ev[3] is not None}
            later = later_outcomes([ev for ev in events if ev[3] in changed] + after, changed)
            wrong = capture_differences(
                [line for line in computed.lines if line.txn in txns], captured, later
            )
    differences += wrong
    result.differences = differences
    result.state = "mismatch" if differences else "reconciled"
    return result, [_difference_flag(result, d, at) for d in differences]


def _missing(
    store: BackofficeStore, result: CloseResult, at: str
) -> tuple[CloseResult, list[Flag]]:
    result.state = "missing_seqs"
    first = result.missing[0][0]
    row = store.db.execute(
        "SELECT first_seq FROM terminals WHERE terminal = ?", (result.terminal,)
    ).fetchone()
    first_held = int(row[0]) if row is not None and row[0] is not None else 1
    # Seqs below the first this back office ever held cannot be sent again (the ingest
    # refuses them): not asked for, reported all the same.
    result.missing_from = first if first >= first_held else None
    shown = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in result.missing[:20])
    more = f" and {len(result.missing) - 20} more ranges" if len(result.missing) > 20 else ""
    everything = result.missing_count == result.seq_to - result.seq_from + 1
    what = (
        f"none of seqs {result.seq_from}..{result.seq_to} is held"
        if everything
        else f"{result.missing_count} of seqs {result.seq_from}..{result.seq_to} are not held: "
        f"{shown}{more}"
    )
    asked = (
        f"; the terminal is asked to resend from seq {result.missing_from}"
        if result.missing_from is not None
        else "; they are below the first seq this back office holds and cannot be resent"
    )
    seqs = [s for a, b in result.missing[:20] for s in range(a, min(b, a + 200) + 1)][
        :FLAG_TXNS_MAX
    ]
    key = json.dumps(result.missing[:50])
    where = f"close of {result.business_day} (seq {result.close_seq})"
    return result, [
        _flag(result, "close_missing_seqs", key, seqs, [], at, f"{where}: {what}{asked}")
    ]


def _in_flight_before(
    store: BackofficeStore,
    terminal: str,
    payload: dict[str, Any],
    memo: dict[tuple[str, int], list[str]],
) -> set[str]:
    """The sales the previous close left in flight: its reconciled pending sales, else its
    payload's list when complete, else recomputed from every held event before it."""
    previous = payload.get("previous_close_seq")
    if previous is None:
        return set()
    if (terminal, previous) in memo:
        return set(memo[(terminal, previous)])
    row = store.db.execute(
        "SELECT state, pending_txns FROM close_reconciliations"
        " WHERE terminal = ? AND close_seq = ?",
        (terminal, previous),
    ).fetchone()
    if row is not None and row[0] in ("reconciled", "mismatch"):
        return set(json.loads(row[1]))
    found = store.db.execute(
        "SELECT payload FROM events WHERE terminal = ? AND seq = ? AND type = 'day.closed'",
        (terminal, previous),
    ).fetchone()
    if found is not None:
        try:
            doc = json.loads(found[0])
        except ValueError:
            doc = None
        if isinstance(doc, dict) and payload_problem(doc) is None:
            listed = {str(p.get("txn")) for p in doc["pending"] if isinstance(p, dict)}
            if len(listed) == doc["pending_count"]:
                return listed
    upto = int(payload["seq_from"]) - 1
    every = _held(
        store.db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE terminal = ? AND seq <= ?"
            " AND txn IS NOT NULL ORDER BY seq",
            (terminal, upto),
        ).rows
    )
    txns = {ev[3] for ev in every if ev[3] is not None}
    computed = recompute(1, upto, every, txns)
    return {p.txn for p in computed.pending}


def _events_of(
    store: BackofficeStore, terminal: str, txns: list[str], where: str, seq: int
) -> list[EventRow]:
    out: list[EventRow] = []
    for start in range(0, len(txns), IN_CHUNK):
        chunk = txns[start : start + IN_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        out += _held(
            store.db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE terminal = ? AND {where}"
                f" AND txn IN ({marks}) ORDER BY seq",
                (terminal, seq, *chunk),
            ).rows
        )
    return out


# -- flags and the stored result -----------------------------------------------------------------


def _flag(
    result: CloseResult,
    kind: str,
    key: str,
    seqs: list[int],
    txns: list[str],
    at: str,
    detail: str,
) -> Flag:
    ident = flag_id(result.terminal, kind, f"{result.close_seq}\x1f{key}")
    return ident, kind, seqs[:FLAG_TXNS_MAX], txns[:FLAG_TXNS_MAX], at, detail[:2000]


def _difference_flag(result: CloseResult, diff: dict[str, Any], at: str) -> Flag:
    where = f"close of {result.business_day} (seq {result.close_seq})"
    kind = diff["kind"]
    if kind == "capture":
        return _flag(
            result, "close_capture_mismatch", diff["txn"], [diff["seq"]], [diff["txn"]], at,
            f"{where}: sale {diff['txn']} is {diff['outcome']} at the till "
            f"({diff['amount']} {diff['currency']}) but the back office captured "
            f"{diff['captured']} (expected {diff['expected_captured']})",
        )  # fmt: skip
    if kind == "totals":
        group = "/".join(str(diff[k]) for k in ("currency", "outcome", "brand", "entry_mode"))
        rep, rec = diff["reported"], diff["recomputed"]
        return _flag(
            result, "close_totals_mismatch", group, diff["seqs"], diff["txns"], at,
            f"{where}: {group} reported {rep['count']} sales / {rep['amount']}, the back office "
            f"recomputes {rec['count']} / {rec['amount']} from the events it holds "
            f"(sales of the group: {', '.join(diff['txns'][:20]) or 'none'}"
            f"{' …' if len(diff['txns']) > 20 else ''})",
        )  # fmt: skip
    if kind == "lines":
        rep, rec = diff["reported"], diff["recomputed"]
        return _flag(
            result, "close_totals_mismatch", "lines", [], [], at,
            f"{where}: the totals agree but the lines do not: reported {rep['count']} lines "
            f"{rep['digest']}, recomputed {rec['count']} {rec['digest']}",
        )  # fmt: skip
    if kind == "pending":
        return _flag(
            result, "close_totals_mismatch", "pending", [], diff["txns"], at,
            f"{where}: {diff['reported']['count']} sales reported in flight, "
            f"{diff['recomputed']['count']} recomputed (differing: "
            f"{', '.join(diff['txns'][:20]) or 'beyond the listed 500'})",
        )  # fmt: skip
    return _flag(
        result, "close_totals_mismatch", "unreadable", [], diff["txns"], at,
        f"{where}: sales whose first event the back office does not hold: "
        f"{', '.join(diff['txns'][:20])}",
    )  # fmt: skip


def _write(
    store: BackofficeStore, written: list[tuple[CloseResult, list[Flag]]], now: float
) -> list[CloseResult]:
    """Store the results and their flags in one transaction (under the terminals' locks)."""
    if not written:
        return []
    terminals = sorted({result.terminal for result, _ in written})
    with store.transaction() as tx:
        tx.lock(*(close_lock(t) for t in terminals))
        old: dict[tuple[str, int], tuple[int, float]] = {}
        for start in range(0, len(terminals), IN_CHUNK):
            part = terminals[start : start + IN_CHUNK]
            for terminal, seq, runs, first in tx.execute(
                "SELECT terminal, close_seq, runs, first_reconciled_at FROM close_reconciliations"
                f" WHERE terminal IN ({', '.join('?' for _ in part)})",
                part,
            ).rows:
                old[(str(terminal), int(seq))] = (int(runs), float(first))
        rows = []
        for result, _ in written:
            runs, first = old.get((result.terminal, result.close_seq), (0, now))
            result.runs, result.first_reconciled_at, result.reconciled_at = runs + 1, first, now
            rows.append(
                (result.terminal, result.close_seq, result.store, result.business_day,
                 result.seq_from, result.seq_to, result.state, result.missing_count,
                 result.missing_from, json.dumps(result.missing), json.dumps(result.differences),
                 json.dumps(result.reported), json.dumps(result.recomputed),
                 json.dumps(result.pending_txns), json.dumps(result.settlement),
                 result.lines_count, result.runs, result.first_reconciled_at, now)
            )  # fmt: skip
        tx.executemany(
            "INSERT INTO close_reconciliations (terminal, close_seq, store, business_day,"
            " seq_from, seq_to, state, missing_count, missing_from, missing_seqs, differences,"
            " reported, recomputed, pending_txns, settlement, lines_count, runs,"
            " first_reconciled_at, reconciled_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (terminal, close_seq) DO UPDATE SET store = excluded.store,"
            " business_day = excluded.business_day, seq_from = excluded.seq_from,"
            " seq_to = excluded.seq_to, state = excluded.state,"
            " missing_count = excluded.missing_count, missing_from = excluded.missing_from,"
            " missing_seqs = excluded.missing_seqs, differences = excluded.differences,"
            " reported = excluded.reported, recomputed = excluded.recomputed,"
            " pending_txns = excluded.pending_txns, settlement = excluded.settlement,"
            " lines_count = excluded.lines_count, runs = excluded.runs,"
            " reconciled_at = excluded.reconciled_at",
            rows,
        )
        flags = [
            (ident, result.terminal, result.store, kind, json.dumps(seqs), json.dumps(txns), at,
             now, detail)
            for result, found in written
            for ident, kind, seqs, txns, at, detail in found
        ]  # fmt: skip
        if flags:
            tx.executemany(
                "INSERT INTO anomaly_flags (id, terminal, store, kind, seqs, txns, at,"
                " detected_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                flags,
            )
    for result, _ in written:
        if result.state != "reconciled":
            log.warning(
                "close not reconciled",
                extra={"terminal": result.terminal, "close_seq": result.close_seq,
                       "state": result.state, "missing": result.missing_count,
                       "differences": len(result.differences)},
            )  # fmt: skip
    return [result for result, _ in written]


# -- reading results ------------------------------------------------------------------------------


def resend_from(store: BackofficeStore, terminal: str) -> int | None:
    """The lowest seq a close of the terminal lacks and the terminal can send again (None:
    nothing to ask). One indexed lookup: the heartbeat reply asks it every minute."""
    row = store.db.execute(
        "SELECT min(missing_from) FROM close_reconciliations"
        " WHERE terminal = ? AND missing_from IS NOT NULL AND state = 'missing_seqs'",
        (terminal,),
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


_RESULT_COLUMNS = (
    "terminal, close_seq, store, business_day, seq_from, seq_to, state, missing_count,"
    " missing_from, missing_seqs, differences, reported, recomputed, pending_txns,"
    " settlement, lines_count, runs, first_reconciled_at, reconciled_at"
)


def results(
    store: BackofficeStore, business_day: str | None = None, store_id: str | None = None
) -> list[CloseResult]:
    """Stored reconciliations, by store, business day, terminal and close."""
    sql = f"SELECT {_RESULT_COLUMNS} FROM close_reconciliations WHERE 1 = 1"
    params: list[Any] = []
    if business_day is not None:
        sql += " AND business_day = ?"
        params.append(business_day)
    if store_id is not None:
        sql += " AND store = ?"
        params.append(store_id)
    sql += " ORDER BY store, business_day, terminal, close_seq"
    out = []
    for r in store.db.execute(sql, params).rows:
        out.append(
            CloseResult(
                terminal=str(r[0]), close_seq=int(r[1]), store=str(r[2]), business_day=str(r[3]),
                seq_from=int(r[4]), seq_to=int(r[5]), state=str(r[6]), missing_count=int(r[7]),
                missing_from=None if r[8] is None else int(r[8]), missing=json.loads(r[9]),
                differences=json.loads(r[10]), reported=json.loads(r[11]),
                recomputed=json.loads(r[12]), pending_txns=json.loads(r[13]),
                settlement=json.loads(r[14]), lines_count=int(r[15]), runs=int(r[16]),
                first_reconciled_at=float(r[17]), reconciled_at=float(r[18]),
            )
        )  # fmt: skip
    return out
