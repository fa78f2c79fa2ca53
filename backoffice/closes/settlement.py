"""The daily settlement export of one store (CSV, for accounting; docs/reconciliation.md).

Built from the back office's own recomputation of each lane's close of the business day
(``close_reconciliations.settlement``: the lines summed per currency × brand × outcome ×
previous outcome), never from the totals a terminal reported. Pure: the CLI reads the
stored results and writes the text.

Columns, in this order: ``record`` (``sales`` or ``total``), ``store``, ``business_day``,
``terminal`` (``*`` for the whole store), ``currency``, ``brand`` (``*`` on totals),
``outcome``, ``count``, ``amount_minor`` (integer minor units) and ``amount`` (the same as
a decimal, the currency's ISO 4217 minor unit). Totals per currency: ``captured`` (sales
that became approved or forward_approved), ``adjustment`` (minus the sales captured in an
earlier close whose outcome changed in this one, e.g. voided the next day) and
``net_captured`` (their sum).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from posedge.agent.sales.policy import format_amount

from .recompute import CAPTURING_OUTCOMES
from .reconciler import CloseResult

COLUMNS = ("record", "store", "business_day", "terminal", "currency", "brand", "outcome",
           "count", "amount_minor", "amount")  # fmt: skip
ALL = "*"


def settlement_rows(
    closes: Iterable[CloseResult], store_id: str, business_day: str, per_lane: bool = False
) -> list[dict[str, Any]]:
    """The rows of the export: sales rows sorted by terminal, currency, brand, outcome,
    then the totals (per lane first with ``per_lane``, then the store's)."""
    sales: dict[tuple[str, str, str, str], list[int]] = {}
    totals: dict[tuple[str, str, str], list[int]] = {}
    seen: set[tuple[str, str]] = set()
    for close in closes:
        lane = close.terminal if per_lane else ALL
        totalled = (close.terminal, ALL) if per_lane else (ALL,)
        for group in close.settlement:
            currency, count, amount = (
                str(group["currency"]),
                int(group["count"]),
                int(group["amount"]),
            )
            _add(sales, (lane, currency, str(group["brand"]), str(group["outcome"])), count, amount)
            for who in totalled:
                seen.add((who, currency))
                if group["outcome"] in CAPTURING_OUTCOMES:
                    _add(totals, (who, currency, "captured"), count, amount)
                if group.get("previous_outcome") in CAPTURING_OUTCOMES:
                    _add(totals, (who, currency, "adjustment"), count, -amount)
    out = [
        _row("sales", store_id, business_day, lane, currency, brand, outcome, n, a)
        for (lane, currency, brand, outcome), (n, a) in sorted(sales.items())
    ]
    for lane, currency in sorted(seen, key=lambda lc: (lc[0] == ALL, lc)):
        captured = totals.get((lane, currency, "captured"), [0, 0])
        adjusted = totals.get((lane, currency, "adjustment"), [0, 0])
        for name, (n, a) in (("captured", captured), ("adjustment", adjusted),
                             ("net_captured", (captured[0] + adjusted[0],
                                               captured[1] + adjusted[1]))):  # fmt: skip
            out.append(_row("total", store_id, business_day, lane, currency, ALL, name, n, a))
    return out


def _add(sums: dict[Any, list[int]], key: tuple[str, ...], count: int, amount: int) -> None:
    row = sums.setdefault(key, [0, 0])
    row[0] += count
    row[1] += amount


def _row(record: str, store_id: str, day: str, lane: str, currency: str, brand: str,
         outcome: str, count: int, amount: int) -> dict[str, Any]:  # fmt: skip
    return {
        "record": record, "store": store_id, "business_day": day, "terminal": lane,
        "currency": currency, "brand": brand, "outcome": outcome, "count": count,
        "amount_minor": amount, "amount": format_amount(amount, currency),
    }  # fmt: skip


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header line; ``\\n`` line ends."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()
