"""The reconciliation page's data: end-of-day closes reconciled at the back office, per
business day (table close_reconciliations, backoffice/closes; docs/reconciliation.md).
One query for the days, one for the closes of the day shown."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..store import BackofficeStore

DAYS_SHOWN = 31
CLOSES_PER_DAY_SHOWN = 500
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DayError(ValueError):
    """A day parameter that is not a date; the message says the form."""


@dataclass(frozen=True)
class DaySummary:
    day: str
    closes: int
    reconciled: int
    missing_seqs: int
    mismatch: int
    invalid: int
    stores: int

    @property
    def problems(self) -> int:
        return self.closes - self.reconciled


def days(store: BackofficeStore) -> list[DaySummary]:
    rows = store.db.execute(
        "SELECT business_day, count(*),"
        " sum(CASE WHEN state = 'reconciled' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN state = 'missing_seqs' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN state = 'mismatch' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN state = 'invalid' THEN 1 ELSE 0 END), count(DISTINCT store)"
        " FROM close_reconciliations GROUP BY business_day ORDER BY business_day DESC LIMIT ?",
        (DAYS_SHOWN,),
    ).rows
    return [DaySummary(str(r[0]), *(int(v or 0) for v in r[1:])) for r in rows]


def closes_on(store: BackofficeStore, day: str) -> list[dict[str, Any]]:
    if not DAY_RE.fullmatch(day):
        raise DayError(f"day {day[:40]!r} is not a date; give YYYY-MM-DD")
    rows = store.db.execute(
        "SELECT store, terminal, close_seq, seq_from, seq_to, state, missing_count,"
        " missing_from, differences FROM close_reconciliations WHERE business_day = ?"
        " ORDER BY CASE WHEN state = 'reconciled' THEN 1 ELSE 0 END, store, terminal LIMIT ?",
        (day, CLOSES_PER_DAY_SHOWN),
    ).rows
    out = []
    for r in rows:
        try:
            differences = json.loads(r[8])
        except (TypeError, ValueError):
            differences = []
        out.append({
            "store": str(r[0]), "terminal": str(r[1]), "close_seq": int(r[2]),
            "seq_from": int(r[3]), "seq_to": int(r[4]), "state": str(r[5]),
            "missing_count": int(r[6]), "missing_from": r[7],
            "differences": differences if isinstance(differences, list) else [],
        })  # fmt: skip
    return out
