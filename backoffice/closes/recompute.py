"""A close recomputed from the events the back office holds, and compared with the close the
terminal reported (docs/reconciliation.md). Pure: no I/O.

The rules are the terminal's (docs/close.md), taken from its own code: each sale is folded
with the journal's projection (:func:`~posedge.agent.journal.projection.fold_row`), its
outcome read by :func:`posedge.agent.close.compute.sale_outcome`, lines, totals and the
digest built by the same classes and functions the terminal uses. Only the candidate set
is the back office's: the sales with an event in the close's range plus those the
previous close left in flight (the terminal asks its transaction index instead).

:func:`compare` lists every difference between the reported and recomputed close, and
:func:`capture_differences` every line whose captured money disagrees with its outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from posedge.agent.close.compute import (
    NONE,
    Computation,
    Line,
    Pending,
    is_sale,
    sale_outcome,
)
from posedge.agent.journal.projection import fold_row

#: Outcomes whose money the back office must hold (the sale's amount); every other
#: outcome holds none.
CAPTURING_OUTCOMES = frozenset({"approved", "forward_approved"})
PAYLOAD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "version": int, "business_day": str, "seq_from": int, "seq_to": int,
    "lines_count": int, "lines_digest": str, "totals": list, "pending_count": int,
    "pending": list, "previous_close_seq": (int, type(None)),
}  # fmt: skip
TOTAL_KEYS = ("currency", "outcome", "brand", "entry_mode")


@dataclass(frozen=True)
class HeldEvent:
    seq: int
    ts: str
    type: str
    txn: str | None
    payload: dict[str, Any]


def payload_problem(payload: Any) -> str | None:
    """Why a ``day.closed`` payload cannot be reconciled (None: it can)."""
    if not isinstance(payload, dict):
        return "the payload is not an object"
    for name, kind in PAYLOAD_FIELDS.items():
        value = payload.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"field {name} is missing or not of type {_kind_name(kind)}"
    if payload["version"] != 1:
        return f"version {payload['version']} is not known here (this back office reads 1)"
    if not 1 <= payload["seq_from"] <= payload["seq_to"] + 1:
        return f"seq range {payload['seq_from']}..{payload['seq_to']} is not a range"
    for index, total in enumerate(payload["totals"]):
        if not (
            isinstance(total, dict)
            and all(isinstance(total.get(k), str) for k in TOTAL_KEYS)
            and all(type(total.get(k)) is int for k in ("count", "amount"))
        ):
            return (
                f"totals[{index}] is not a total (text currency, outcome, brand, entry_mode; "
                "integer count, amount)"
            )
    return None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def recompute(
    seq_from: int, seq_to: int, events: Iterable[HeldEvent], candidates: set[str]
) -> Computation:
    """The close of ``seq_from..seq_to`` from ``events``: every held event with seq <= seq_to
    of the ``candidates`` (their events before ``seq_from`` included), in any order."""
    result = Computation(seq_from=seq_from, seq_to=seq_to)
    rows: dict[str, dict[str, Any]] = {}
    previous: dict[str, str | None] = {}
    unreadable: set[str] = set()
    for ev in sorted(events, key=lambda e: e.seq):
        txn = ev.txn
        if txn is None or txn not in candidates or ev.seq > seq_to or txn in unreadable:
            continue
        if txn not in rows and ev.type != "sale.created":
            unreadable.add(txn)  # its first event is not held: it cannot be refolded
            continue
        if ev.seq >= seq_from and txn not in previous:
            previous[txn] = sale_outcome(rows.get(txn))
        rows[txn] = fold_row(rows.get(txn), ev.seq, ev.ts, ev.type, txn, ev.payload)
    for txn in sorted(rows):
        row = rows[txn]
        if not is_sale(row):
            continue
        now = sale_outcome(row)
        before = previous.get(txn, now)
        if now is None:
            result.pending.append(
                Pending(txn, str(row["state"]), row["amount"], row["currency"], before)
            )
        elif now != before:
            summary = row["summary"]
            result.lines.append(
                Line(
                    txn=txn,
                    outcome=now,
                    previous_outcome=before,
                    amount=row["amount"],
                    currency=row["currency"],
                    brand=str(summary.get("brand") or NONE),
                    entry_mode=str(summary.get("entry_mode") or NONE),
                    last_seq=int(row["last_seq"]),
                )
            )
    result.unreadable = sorted(unreadable)
    return result


def settlement_groups(lines: Iterable[Line]) -> list[dict[str, Any]]:
    """The lines summed per currency × brand × outcome × previous outcome (count, amount),
    sorted: what the settlement export adds up over a store's lanes."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for line in lines:
        key = (line.currency, line.brand, line.outcome, line.previous_outcome or "")
        group = groups.setdefault(key, [0, 0])
        group[0] += 1
        group[1] += line.amount
    return [
        {"currency": c, "brand": b, "outcome": o, "previous_outcome": p or None, "count": n,
         "amount": a}
        for (c, b, o, p), (n, a) in sorted(groups.items())
    ]  # fmt: skip


def _keyed(totals: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], tuple[int, int]]:
    return {
        tuple(str(t[k]) for k in TOTAL_KEYS): (int(t["count"]), int(t["amount"])) for t in totals
    }


def compare(payload: Mapping[str, Any], computed: Computation) -> list[dict[str, Any]]:
    """The differences between the reported close and the recomputed one (empty: none).

    ``totals``: one per currency × outcome × brand × entry mode whose count or amount
    differs, with the recomputed lines of that group (``txns``); ``lines``: the line
    count or digest differs although every total agrees (a sale moved between groups of
    equal sums, or its last seq differs); ``pending``: the sales left in flight differ;
    ``unreadable``: sales whose first event the back office does not hold.
    """
    found: list[dict[str, Any]] = []
    reported = _keyed(payload["totals"])
    recomputed = _keyed(computed.totals())
    by_group: dict[tuple[str, ...], list[Line]] = {}
    for line in computed.lines:
        group: tuple[str, ...] = (line.currency, line.outcome, line.brand, line.entry_mode)
        by_group.setdefault(group, []).append(line)
    for key in sorted(set(reported) | set(recomputed)):
        got, want = reported.get(key, (0, 0)), recomputed.get(key, (0, 0))
        if got == want:
            continue
        lines = by_group.get(key, [])
        found.append(
            {
                "kind": "totals",
                **dict(zip(TOTAL_KEYS, key, strict=True)),
                "reported": {"count": got[0], "amount": got[1]},
                "recomputed": {"count": want[0], "amount": want[1]},
                "txns": [line.txn for line in lines],
                "seqs": [line.last_seq for line in lines],
            }
        )
    digest = computed.digest
    if not found and (
        payload["lines_count"] != len(computed.lines) or payload["lines_digest"] != digest
    ):
        found.append(
            {
                "kind": "lines",
                "reported": {"count": payload["lines_count"], "digest": payload["lines_digest"]},
                "recomputed": {"count": len(computed.lines), "digest": digest},
            }
        )
    pending = {p.txn for p in computed.pending}
    listed = {str(p.get("txn")) for p in payload["pending"] if isinstance(p, dict)}
    complete = len(listed) == payload["pending_count"]
    if payload["pending_count"] != len(pending) or (complete and listed != pending):
        found.append(
            {
                "kind": "pending",
                "reported": {"count": payload["pending_count"]},
                "recomputed": {"count": len(pending)},
                "txns": sorted(pending ^ listed) if complete else sorted(pending - listed),
            }
        )
    if computed.unreadable:
        found.append({"kind": "unreadable", "txns": list(computed.unreadable)})
    return found


def expected_capture(outcome: str | None, amount: int) -> int | None:
    """What the back office should hold for a sale of this outcome (None: in flight)."""
    if outcome is None:
        return None
    return amount if outcome in CAPTURING_OUTCOMES else 0


def capture_differences(
    lines: Iterable[Line],
    captured: Mapping[str, int],
    later: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Lines whose captured amount is not what their outcome says.

    ``later`` maps a sale to its outcome after the close (events held after ``seq_to``:
    a sale approved in this close and voided since is judged by its void; None: in flight
    now, not judged).
    """
    found: list[dict[str, Any]] = []
    for line in lines:
        outcome: str | None = line.outcome
        if later is not None and line.txn in later:
            outcome = later[line.txn]
        expected = expected_capture(outcome, line.amount)
        got = int(captured.get(line.txn, 0))
        if expected is None or got == expected:
            continue
        found.append(
            {
                "kind": "capture",
                "txn": line.txn,
                "outcome": outcome,
                "close_outcome": line.outcome,
                "amount": line.amount,
                "currency": line.currency,
                "expected_captured": expected,
                "captured": got,
                "seq": line.last_seq,
            }
        )
    return found


def later_outcomes(events: Iterable[HeldEvent], txns: set[str]) -> dict[str, str | None]:
    """The current outcome of each of ``txns`` from all of its held events."""
    rows: dict[str, dict[str, Any]] = {}
    for ev in sorted(events, key=lambda e: e.seq):
        if ev.txn in txns:
            rows[ev.txn] = fold_row(rows.get(ev.txn), ev.seq, ev.ts, ev.type, ev.txn, ev.payload)
    return {txn: sale_outcome(row) for txn, row in rows.items()}
