"""A close recomputed from the events the back office holds, and compared with the close the
terminal reported (docs/reconciliation.md). Pure: no I/O.

The rules are the terminal's (docs/close.md), taken from its own code: each sale is folded
by :class:`.salefold.SaleFold` (the journal projection's tables and merge rule, restricted
to what a close reads; checked against ``fold_row`` by its tests), its outcome read by
:func:`posedge.agent.close.compute.sale_outcome`, lines, totals and the digest built by
the same classes and functions the terminal uses. Only the candidate set is the back
office's: the sales with an event in the close's range plus those the previous close
left in flight (the terminal asks its transaction index instead).

:func:`compare` lists every difference between the reported and recomputed close, and
:func:`capture_differences` every line whose captured money disagrees with its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

from pydantic_core import from_json

from posedge.agent.close.compute import Computation, Line, add_sale

from .salefold import SaleFold

#: Outcomes whose money the back office must hold (the sale's amount); every other
#: outcome holds none.
CAPTURING_OUTCOMES = frozenset({"approved", "forward_approved"})
PAYLOAD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "version": int, "business_day": str, "seq_from": int, "seq_to": int,
    "lines_count": int, "lines_digest": str, "totals": list, "pending_count": int,
    "pending": list, "previous_close_seq": (int, type(None)),
}  # fmt: skip
TOTAL_KEYS = ("currency", "outcome", "brand", "entry_mode")


class HeldEvent(NamedTuple):
    """One held event; ``payload`` as stored (JSON text), parsed only when it matters."""

    seq: int
    ts: str
    type: str
    txn: str | None
    payload: dict[str, Any] | str | None
    """None: a receipt event the database found naming no field a close reads."""


# Events that never change a sale's outcome, brand or entry mode (they set its receipt
# sub-state only): folding them is skipped, unless their payload names a field that
# would change the row. The sale's last seq is tracked from every event all the same.
RECEIPT_TYPES = _RECEIPT_TYPES = frozenset({"receipt.printing", "receipt.printed", "receipt.failed",
                            "receipt.skipped"})  # fmt: skip
#: A receipt event whose payload names none of these changes nothing a close reads.
RECEIPT_FIELDS = ("amount", "currency", "request_hash", "brand", "entry_mode")
_ROW_FIELDS = tuple(f'"{name}"' for name in RECEIPT_FIELDS)


#: A held event as a plain tuple (seq, ts, type, txn, payload), as the database returns it;
#: :class:`HeldEvent` is the same with names.
EventRow = tuple[int, str, str, str | None, Any]


def payload_of(ev: EventRow) -> dict[str, Any]:
    """:func:`fields_of` the event's payload."""
    return fields_of(ev[4])


def fields_of(payload: dict[str, Any] | str | None) -> dict[str, Any]:
    """The event's payload as an object ({} for none, or stored text that is not one).
    :class:`SaleFold` reads only what can change a close from it: ``amount``,
    ``currency`` and ``request_hash`` (what makes a sale), ``brand`` and ``entry_mode``
    (its line), ``attempt`` (which attempt an authorization, forward or reversal event
    names)."""
    if payload is None:
        return {}
    if isinstance(payload, dict):
        return payload
    try:
        doc = from_json(payload)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _changes_nothing(type_: str, payload: dict[str, Any] | str | None) -> bool:
    if type_ not in _RECEIPT_TYPES:
        return False
    if payload is None:
        return True
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return not any(name in text for name in _ROW_FIELDS)


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
    seq_from: int, seq_to: int, events: Iterable[EventRow], candidates: set[str]
) -> Computation:
    """The close of ``seq_from..seq_to`` from ``events``: every held event with seq <= seq_to
    of the ``candidates`` (their events before ``seq_from`` included), in any order."""
    result = Computation(seq_from=seq_from, seq_to=seq_to)
    sales: dict[str, SaleFold] = {}
    previous: dict[str, str | None] = {}
    last_seq: dict[str, int] = {}
    unreadable: set[str] = set()
    for seq, _, type_, txn, payload in sorted(events, key=itemgetter(0)):
        if txn is None or txn not in candidates or seq > seq_to or txn in unreadable:
            continue
        sale = sales.get(txn)
        if sale is None:
            if type_ != "sale.created":
                unreadable.add(txn)  # its first event is not held: it cannot be refolded
                continue
            if seq >= seq_from:
                previous[txn] = None
            sales[txn] = SaleFold(type_, txn, fields_of(payload))
            last_seq[txn] = seq
            continue
        if seq >= seq_from and txn not in previous:
            previous[txn] = sale.outcome()
        last_seq[txn] = seq
        if not _changes_nothing(type_, payload):
            sale.apply(type_, txn, fields_of(payload))
    for txn in sorted(sales):
        add_sale(result, txn, sales[txn].row(), previous, last_seq[txn])
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


def later_outcomes(events: Iterable[EventRow], txns: set[str]) -> dict[str, str | None]:
    """The current outcome of each of ``txns`` from all of its held events."""
    sales: dict[str, SaleFold] = {}
    for _, _, type_, txn, payload in sorted(events, key=itemgetter(0)):
        if txn is not None and txn in txns:
            sale = sales.get(txn)
            if sale is None:
                sales[txn] = SaleFold(type_, txn, fields_of(payload))
            else:
                sale.apply(type_, txn, fields_of(payload))
    return {txn: sale.outcome() for txn, sale in sales.items()}
