"""The closes in the journal: the last one, one by seq or business day, all of them.

A close is a ``day.closed`` event (no ``txn``). The last close's seq is kept as a hint in
the journal's meta table (``close.last_seq``); the hint is checked against the event it
names and the journal is scanned forward from it, so a stale or missing hint (a crash
between the append and the hint, another writer) costs a scan, never a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ..journal import Event, Journal
from ..journal.records import row_to_event

CLOSE_EVENT = "day.closed"
LAST_CLOSE_META = "close.last_seq"


@dataclass(frozen=True)
class CloseRecord:
    seq: int
    ts: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> CloseRecord:
        return cls(event.seq, event.ts, event.payload)

    @property
    def business_day(self) -> date:
        return date.fromisoformat(str(self.payload["business_day"]))

    @property
    def seq_to(self) -> int:
        return int(self.payload["seq_to"])

    def as_dict(self) -> dict[str, Any]:
        return {"close_seq": self.seq, "ts": self.ts, **self.payload}


def _hint(journal: Journal) -> int:
    raw = journal.get_meta(LAST_CLOSE_META)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def last_close(journal: Journal) -> CloseRecord | None:
    """The newest ``day.closed`` event, or None before the first close."""
    found: CloseRecord | None = None
    since = 0
    hint = _hint(journal)
    if hint > 0:
        event = journal.get(hint)
        if event is not None and event.type == CLOSE_EVENT:
            found, since = CloseRecord.of(event), hint
    for row in journal.iter_rows(since):
        if row["type"] == CLOSE_EVENT:
            found = CloseRecord.of(row_to_event(row))
    if found is not None and found.seq != hint and not journal.readonly:
        journal.set_meta(LAST_CLOSE_META, str(found.seq))
    return found


def remember(journal: Journal, record: CloseRecord) -> None:
    journal.set_meta(LAST_CLOSE_META, str(record.seq))


def close_at(journal: Journal, seq: int) -> CloseRecord | None:
    event = journal.get(seq)
    return CloseRecord.of(event) if event is not None and event.type == CLOSE_EVENT else None


def closes_of_day(journal: Journal, day: date) -> list[CloseRecord]:
    """Every close of business day ``day`` in seq order (a full scan: for reprints)."""
    text = day.isoformat()
    found = []
    for row in journal.iter_rows(0):
        if row["type"] == CLOSE_EVENT:
            event = row_to_event(row)
            if event.payload.get("business_day") == text:
                found.append(CloseRecord.of(event))
    return found
