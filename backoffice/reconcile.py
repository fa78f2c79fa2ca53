"""The money invariant, checked: what a till's journal says each sale is worth versus what
the back office captured for it (docs/sync-protocol.md, "Captured"; docs/reconcile.md).

:func:`reconcile` is a pure function over the till's exported events (``posedge
journal export``), the back office's captured amount per sale
(:meth:`BackofficeStore.captured`) and its reversals
(:meth:`BackofficeStore.reversals`). Each sale's events are folded with the
journal's own :func:`~posedge.agent.journal.projection.fold_row`, so the
checker reads a sale exactly as the till does. For a sale in a final state the
expected captured amount is its amount when it ended ``approved`` or
``approved_offline`` (unless the forward was declined or expired: the
merchant's loss, listed as *uncollectable*), else 0.

:func:`read_export` reads an export file; it is the only I/O here. Nothing in
this module writes anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from posedge.agent.journal.projection import fold_row, pending_reversals
from posedge.agent.sales.model import FINAL_STATES

CAPTURING_STATES = frozenset({"approved", "approved_offline"})
LOST_FORWARDS = frozenset({"declined", "expired"})
# Forward sub-states of an offline-approved sale whose money is still to move.
UNSETTLED_FORWARDS = frozenset({None, "pending", "requested"})
_FINAL = frozenset(str(state) for state in FINAL_STATES)


class ExportError(ValueError):
    """An export file that cannot be read: names the file and, when known, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


def read_export(path: Path) -> list[dict[str, Any]]:
    """The events of a ``posedge journal export`` file (JSON Lines), in seq order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ExportError(path, f"cannot read the journal export: {reason}") from None
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise ExportError(
                path, "not a JSON object (expected `posedge journal export` output)", number
            ) from None
        if (
            not isinstance(event, dict)
            or type(event.get("seq")) is not int
            or not isinstance(event.get("type"), str)
            or not isinstance(event.get("payload", {}), dict)
            or not isinstance(event.get("txn"), str | None)
        ):
            raise ExportError(
                path, "not a journal event (needs integer seq, type, txn, payload)", number
            )
        events.append(event)
    events.sort(key=lambda ev: ev["seq"])
    return events


def _sales(events: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Events per txn, in seq order, for the txns with a ``sale.created`` event."""
    by_txn: dict[str, list[Mapping[str, Any]]] = {}
    for event in sorted(events, key=lambda ev: int(ev["seq"])):
        txn = event.get("txn")
        if isinstance(txn, str) and txn:
            by_txn.setdefault(txn, []).append(event)
    return {
        txn: evs for txn, evs in by_txn.items() if any(ev["type"] == "sale.created" for ev in evs)
    }


def reconcile(
    terminal: str,
    events: Iterable[Mapping[str, Any]],
    captured: Mapping[str, int],
    reversals: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Compare every sale of the journal with what the back office captured for it.

    Returns ``terminal``, ``sales``, ``matched``, ``ok`` and the lists
    ``mismatches`` (final sales whose captured amount differs from the expected
    one), ``not_final`` (sales whose money may still move: not in a final
    state, or offline-approved with the forward not yet decided),
    ``reversals_pending`` (attempts the till reversed without an
    acknowledgement; ``at_backoffice`` says whether the back office has
    recorded that reversal, i.e. only the answer was lost), ``uncollectable``
    (offline-approved sales whose forward was declined or expired: the
    merchant's loss, not a mismatch) and ``unknown_at_till`` (captured at the
    back office for a txn the journal has no sale for). ``ok`` is true when
    the four lists other than ``uncollectable`` are empty.
    """
    reversed_at_bo = {str(r["attempt"]) for r in reversals}
    sales = _sales(events)
    mismatches: list[dict[str, Any]] = []
    not_final: list[str] = []
    pending: list[dict[str, Any]] = []
    uncollectable: list[dict[str, Any]] = []
    matched = 0
    for txn, sale_events in sales.items():
        row: dict[str, Any] | None = None
        for ev in sale_events:
            payload = ev.get("payload") or {}
            row = fold_row(row, int(ev["seq"]), str(ev.get("ts", "")), ev["type"], txn, payload)
        assert row is not None
        state = str(row["state"])
        forward = row["summary"].get("forward")
        amount = row["amount"] if isinstance(row["amount"], int) else 0
        for attempt in pending_reversals(txn, row["summary"]):
            pending.append(
                {"txn": txn, "attempt": attempt, "at_backoffice": attempt in reversed_at_bo}
            )
        if state not in _FINAL or (state == "approved_offline" and forward in UNSETTLED_FORWARDS):
            not_final.append(txn)
            continue
        lost = state == "approved_offline" and forward in LOST_FORWARDS
        expected = amount if state in CAPTURING_STATES and forward not in LOST_FORWARDS else 0
        got = int(captured.get(txn, 0))
        if lost:
            uncollectable.append({"txn": txn, "forward": forward, "amount": amount})
        if got == expected:
            matched += 1
            continue
        mismatches.append(
            {
                "txn": txn,
                "till_state": state,
                "forward": forward,
                "expected_captured": expected,
                "captured": got,
                "amount": amount,
                "currency": row["currency"],
            }
        )
    unknown = [
        {"txn": txn, "captured": int(total)}
        for txn, total in sorted(captured.items())
        if txn not in sales
    ]
    return {
        "terminal": terminal,
        "sales": len(sales),
        "matched": matched,
        "ok": not (mismatches or not_final or pending or unknown),
        "mismatches": mismatches,
        "not_final": not_final,
        "reversals_pending": pending,
        "uncollectable": uncollectable,
        "unknown_at_till": unknown,
    }
