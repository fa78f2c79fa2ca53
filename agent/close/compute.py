"""A close computed from the journal: per-sale lines, pending sales, totals, digest.

The algorithm is docs/close.md, exactly (the back office recomputes it from the events it
holds): the candidates are the sales with an event in ``(previous.seq_to, seq_to]`` plus
every sale whose outcome is still unknown; each candidate's events up to ``seq_to`` are
folded with the journal's own projection rule (:func:`~posedge.agent.journal.projection.fold_row`),
its outcome taken as of the previous close's ``seq_to`` and as of ``seq_to``. Read-only:
nothing here writes the journal.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..journal import Journal
from ..journal.canonical import canonical_json
from ..journal.projection import fold_row
from ..sales.model import FINAL_STATES

log = logging.getLogger("posedge.close")

OUTCOMES = (
    "approved",
    "forward_approved",
    "forward_declined",
    "forward_expired",
    "declined",
    "reversed",
    "voided",
    "cancelled",
    "abandoned",
)
FORWARD_OUTCOMES = {
    "approved": "forward_approved",
    "declined": "forward_declined",
    "expired": "forward_expired",
}
NONE = "none"
"""Brand or entry mode of a sale no event named one for (cancelled before a card)."""
PENDING_LIST_MAX = 200
_FINAL = frozenset(state.value for state in FINAL_STATES)


def sale_outcome(row: dict[str, Any] | None) -> str | None:
    """The settled outcome of a folded sale row, or None while it is in flight."""
    if row is None:
        return None
    state = row["state"]
    summary = row["summary"]
    if state not in _FINAL or summary.get("reversal") == "pending":
        return None
    if state == "approved_offline":
        return FORWARD_OUTCOMES.get(str(summary.get("forward")))
    return str(state)


def is_sale(row: dict[str, Any] | None) -> bool:
    return (
        row is not None
        and type(row.get("amount")) is int
        and isinstance(row.get("currency"), str)
        and row["summary"].get("request_hash") is not None
    )


@dataclass(frozen=True)
class Line:
    txn: str
    outcome: str
    previous_outcome: str | None
    amount: int
    currency: str
    brand: str
    entry_mode: str
    last_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "txn": self.txn,
            "outcome": self.outcome,
            "previous_outcome": self.previous_outcome,
            "amount": self.amount,
            "currency": self.currency,
            "brand": self.brand,
            "entry_mode": self.entry_mode,
            "last_seq": self.last_seq,
        }


@dataclass(frozen=True)
class Pending:
    txn: str
    state: str
    amount: int
    currency: str
    previous_outcome: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "txn": self.txn,
            "state": self.state,
            "amount": self.amount,
            "currency": self.currency,
            "previous_outcome": self.previous_outcome,
        }


@dataclass
class Computation:
    seq_from: int
    seq_to: int
    lines: list[Line] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Candidates whose first events were pruned (their outcome cannot be refolded)."""

    @property
    def digest(self) -> str:
        return lines_digest(line.as_dict() for line in self.lines)

    def totals(self) -> list[dict[str, Any]]:
        return totals_of(self.lines)


def lines_digest(lines: Iterable[dict[str, Any]]) -> str:
    """``sha256:`` + hex SHA-256 of the canonical JSON of the lines sorted by txn."""
    ordered = sorted(lines, key=lambda line: str(line["txn"]))
    text = canonical_json(ordered)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def totals_of(lines: Iterable[Line]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for line in lines:
        key = (line.currency, line.outcome, line.brand, line.entry_mode)
        group = groups.setdefault(key, [0, 0])
        group[0] += 1
        group[1] += line.amount
    return [
        {"currency": c, "outcome": o, "brand": b, "entry_mode": e, "count": n, "amount": a}
        for (c, o, b, e), (n, a) in sorted(groups.items())
    ]


def compute_close(journal: Journal, previous_seq_to: int, seq_to: int) -> Computation:
    """The close of ``(previous_seq_to, seq_to]`` (see the module docstring)."""
    candidates: set[str] = set()
    for raw in journal.iter_rows(previous_seq_to, seq_to):
        if raw["txn"] is not None:
            candidates.add(str(raw["txn"]))
    for open_row in journal.transactions.needing_work(FINAL_STATES):
        candidates.add(str(open_row["txn"]))  # outcome unknown now: maybe no event in range
    first: dict[str, int] = {}
    for txn in candidates:
        current = journal.transactions.get(txn)
        if current is not None and current["first_seq"] <= seq_to:
            first[txn] = int(current["first_seq"])
    result = Computation(seq_from=previous_seq_to + 1, seq_to=seq_to)
    if not first:
        return result
    checkpoint = journal.latest_checkpoint()
    kept_after = checkpoint.seq if checkpoint is not None else 0
    start = max(min(first.values()) - 1, kept_after)
    result.unreadable = sorted(txn for txn, seq in first.items() if seq <= kept_after)
    pruned = set(result.unreadable)
    if result.unreadable:
        log.warning(
            "close: sales whose first events were pruned are left out",
            extra={"count": len(result.unreadable)},
        )
    rows: dict[str, dict[str, Any]] = {}
    previous: dict[str, str | None] = {}
    for event in journal.iter_events(start, seq_to):
        sale = event.txn
        if sale is None or sale not in first or sale in pruned:
            continue
        if event.seq > previous_seq_to and sale not in previous:
            previous[sale] = sale_outcome(rows.get(sale))
        rows[sale] = fold_row(rows.get(sale), event.seq, event.ts, event.type, sale, event.payload)
    for txn in sorted(rows):
        add_sale(result, txn, rows[txn], previous, int(rows[txn]["last_seq"]))
    return result


def add_sale(
    result: Computation,
    txn: str,
    row: dict[str, Any],
    previous: dict[str, str | None],
    last_seq: int,
) -> None:
    """Put one sale of the range into ``result`` (the terminal's close and the back office's
    recomputation both call this: one rule). ``row`` is its projection at the close's last
    seq, ``previous`` the outcomes known before the range (absent: unchanged). A sale whose
    outcome is unknown is pending; one whose outcome changed since the previous close is a
    line naming the outcome it had; anything else is not in this close."""
    if not is_sale(row):
        return
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
                last_seq=last_seq,
            )
        )
