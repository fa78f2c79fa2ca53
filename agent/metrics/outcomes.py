"""Sale, forward and receipt outcomes counted by tailing the journal.

Counters since this agent process started (Prometheus handles the reset at a restart:
``rate()`` and ``increase()`` see it). The tail begins at this process's
``agent.started`` event, found by reading back from the head (at most
:data:`MAX_LOOK_BACK` events, once); after that each :meth:`OutcomeTail.update` reads
only the events appended since the previous one (a primary-key range), so a scrape
costs what happened since the last scrape, never the journal's size.

Each outcome event counts once: a sale approved and later voided counts once under
``approved`` and once under ``voided``.
"""

from __future__ import annotations

import json
from typing import Protocol

PAGE_ROWS = 1000
MAX_LOOK_BACK = 20_000
"""Events read back from the head to find ``agent.started``; not found: count from the head."""
AGENT_STARTED = "agent.started"
MAX_ROWS_PER_UPDATE = 20_000
"""Most events one scrape reads (about 50 ms of CPU): a scrape after a long pause never
stalls the event loop longer; the counters catch up over the following scrapes."""

SALE_OUTCOMES: dict[str, str] = {
    "auth.approved": "approved",
    "offline.approved": "approved_offline",
    "auth.declined": "declined",
    "sale.declined": "declined",
    "sale.reversed": "reversed",
    "sale.cancelled": "cancelled",
    "sale.abandoned": "abandoned",
    "sale.voided": "voided",
}
"""Event type → the ``outcome`` label of ``posedge_sales_total``."""
FORWARD_OUTCOMES: dict[str, str] = {
    "forward.approved": "approved",
    "forward.declined": "declined",
    "forward.expired": "expired",
    "forward.cancelled": "cancelled",
}
RECEIPT_OUTCOMES: dict[str, str] = {
    "receipt.printed": "printed",
    "receipt.failed": "failed",
}
SALE_CREATED = "sale.created"


class RawReader(Protocol):
    """What the tail needs of :class:`~posedge.agent.journal.Journal`."""

    def read_raw(
        self, after: int, limit: int
    ) -> list[tuple[int, str, str, str | None, str, str, str]]: ...


class OutcomeTail:
    """Counts by outcome of the events after ``start_seq``; every label starts at 0."""

    def __init__(self, start_seq: int) -> None:
        self.after = start_seq
        """The last seq counted."""
        self.sales_created = 0
        self.sales = dict.fromkeys(sorted(set(SALE_OUTCOMES.values())), 0)
        self.forwards = dict.fromkeys(sorted(set(FORWARD_OUTCOMES.values())), 0)
        self.receipts = dict.fromkeys(sorted(set(RECEIPT_OUTCOMES.values())), 0)

    @classmethod
    def since_agent_start(cls, journal: RawReader, head_seq: int, pid: int) -> OutcomeTail:
        """A tail counting from the ``agent.started`` event of process ``pid`` (the last one
        within :data:`MAX_LOOK_BACK` events of ``head_seq``), else from ``head_seq``."""
        high = head_seq
        while high > 0 and head_seq - high < MAX_LOOK_BACK:
            low = max(0, high - PAGE_ROWS)
            rows = journal.read_raw(low, high - low)
            for row in reversed(rows):
                if row[2] == AGENT_STARTED and _pid_of(row[4]) == pid:
                    return cls(row[0])
            if not rows:
                break  # the older events were pruned
            high = low
        return cls(head_seq)

    def update(self, journal: RawReader, max_rows: int | None = None) -> int:
        """Count the events appended since the last update, at most ``max_rows`` (default
        :data:`MAX_ROWS_PER_UPDATE`: after a long pause in scraping the counters catch up
        over a few scrapes instead of stalling one); how many were read."""
        limit = MAX_ROWS_PER_UPDATE if max_rows is None else max_rows
        read = 0
        while read < limit:
            page = min(PAGE_ROWS, limit - read)
            rows = journal.read_raw(self.after, page)
            for row in rows:
                self._count(row[2])
            read += len(rows)
            if rows:
                self.after = rows[-1][0]
            if len(rows) < page:
                break
        return read

    def _count(self, type_: str) -> None:
        if type_ == SALE_CREATED:
            self.sales_created += 1
        elif type_ in SALE_OUTCOMES:
            self.sales[SALE_OUTCOMES[type_]] += 1
        elif type_ in FORWARD_OUTCOMES:
            self.forwards[FORWARD_OUTCOMES[type_]] += 1
        elif type_ in RECEIPT_OUTCOMES:
            self.receipts[RECEIPT_OUTCOMES[type_]] += 1


def _pid_of(payload: str) -> object:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc.get("pid") if isinstance(doc, dict) else None
