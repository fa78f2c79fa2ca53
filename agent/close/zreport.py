"""The Z-report: a close (``day.closed`` payload) → a printer-independent :class:`Receipt`.

Business day, terminal, when, seq range, previous close, a totals table per currency
(outcome, then brand and entry mode under it: count and amount), the pending sales and the
lines' digest in groups of eight characters (so no run of digits can look like a card
number and be redacted). Pure: no I/O, no ESC/POS bytes (the printer driver's job).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from posedge.agent.carddata import find_card_data
from posedge.agent.sales.policy import format_amount
from posedge.agent.sales.receipts import MAX_COLUMNS, MIN_COLUMNS, Layout, receipt_time
from posedge.drivers.escpos.model import Cut, Feed, Receipt

OUTCOME_LABELS = {
    "approved": "Approved",
    "forward_approved": "Offline, forwarded",
    "forward_declined": "Offline, fwd DECLINED",
    "forward_expired": "Offline, fwd expired",
    "declined": "Declined",
    "reversed": "Reversed",
    "voided": "Voided",
    "cancelled": "Cancelled",
    "abandoned": "Abandoned",
}


def build_zreport(
    close: dict[str, Any],
    *,
    merchant_name: str,
    terminal: str,
    columns: int,
    reprint: bool = False,
    now: datetime | None = None,
) -> Receipt:
    """The Z-report of ``close`` (:meth:`CloseRecord.as_dict`)."""
    if not MIN_COLUMNS <= columns <= MAX_COLUMNS:
        raise ValueError(f"columns={columns} outside {MIN_COLUMNS}..{MAX_COLUMNS}")
    out = Layout(columns)
    out.big(merchant_name or "posedge")
    out.big("Z-REPORT")
    if reprint:
        out.mark("*** REPRINT ***")
    if close.get("forced"):
        out.mark("FORCED (second close of the day)")
    out.rule()
    out.pair("Business day", str(close["business_day"]), bold=True)
    out.pair("Time zone", str(close.get("timezone", "")))
    out.pair("Terminal", terminal)
    out.pair("Closed", receipt_time(str(close["closed_at"])))
    if reprint:
        out.pair("Reprinted", receipt_time((now or datetime.now(UTC)).isoformat()))
    out.pair("Close", f"#{close['close_seq']} ({close['trigger']})")
    out.pair("Seqs", f"{close['seq_from']}-{close['seq_to']}")
    previous = close.get("previous_close_seq")
    out.pair("Previous close", f"#{previous}" if previous is not None else "none")
    out.rule()
    _totals(out, close.get("totals") or [])
    out.pair("Sales (lines)", str(close["lines_count"]))
    _pending(out, close.get("pending") or [], int(close.get("pending_count") or 0))
    out.rule()
    out.line("Lines digest")
    digest = str(close["lines_digest"]).removeprefix("sha256:")
    groups = [digest[i : i + 8] for i in range(0, len(digest), 8)]
    per_line = max(1, (columns + 1) // 9)
    out.line("sha256:")
    for start in range(0, len(groups), per_line):
        out.line(" ".join(groups[start : start + per_line]))
    out.add(Feed(3))
    out.add(Cut())
    receipt = Receipt(out.elements)
    if find_card_data(receipt.plain_text()):  # pragma: no cover - nothing here holds a PAN
        raise ValueError("the Z-report would show a card number; it was not built")
    return receipt


def _totals(out: Layout, totals: list[dict[str, Any]]) -> None:
    if not totals:
        out.line("No sales settled since the previous close.")
        out.rule()
        return
    currencies = sorted({str(t["currency"]) for t in totals})
    for currency in currencies:
        rows = [t for t in totals if t["currency"] == currency]
        out.line(currency, bold=True)
        for outcome in sorted({str(t["outcome"]) for t in rows}, key=_outcome_order):
            group = [t for t in rows if t["outcome"] == outcome]
            count = sum(int(t["count"]) for t in group)
            amount = sum(int(t["amount"]) for t in group)
            label = OUTCOME_LABELS.get(outcome, outcome)
            out.pair(label, f"{count} x {format_amount(amount, currency)}", bold=True)
            for t in group:
                out.pair(
                    f"  {t['brand']} {t['entry_mode']}",
                    f"{t['count']} x {format_amount(int(t['amount']), currency)}",
                )
        out.rule()


def _pending(out: Layout, pending: list[dict[str, Any]], count: int) -> None:
    out.pair("Pending (next close)", str(count))
    sums: dict[str, int] = {}
    for entry in pending:
        sums[str(entry["currency"])] = sums.get(str(entry["currency"]), 0) + int(entry["amount"])
    for currency, amount in sorted(sums.items()):
        out.pair(f"  {currency}", format_amount(amount, currency))


def _outcome_order(outcome: str) -> int:
    order = list(OUTCOME_LABELS)
    return order.index(outcome) if outcome in order else len(order)
