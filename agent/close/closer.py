"""Take a close: refuse bad requests, compute it, journal ``day.closed``; print the Z-report.

:class:`Closer` is synchronous and holds one lock for the whole close, so two closes
never interleave (the second is :class:`CloseBusy`). Order (DESIGN §4, write-ahead):
every refusal is decided first (nothing stored), then ``day.closed`` is journaled, and only
then is anything printed. Printing journals ``zreport.printing`` before the printer gets
bytes and ``zreport.printed`` or ``zreport.failed`` after: a printer fault never undoes a
close, and :meth:`Closer.print_report` with ``reprint=True`` prints it again later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from posedge.drivers.errors import DeviceError
from posedge.drivers.printer import ReceiptPrinter

from ..config import Config
from ..journal import Journal
from .businessday import BusinessCalendar, parse_business_day
from .compute import PENDING_LIST_MAX, compute_close
from .errors import AlreadyClosed, CloseBusy, CloseNotFound, CloseRefused
from .records import CLOSE_EVENT, CloseRecord, close_at, closes_of_day, last_close, remember
from .zreport import build_zreport

log = logging.getLogger("posedge.close")

Trigger = Literal["manual", "api", "schedule", "catch_up"]
PAYLOAD_VERSION = 1
PRINT_ERROR_CHARS = 200


def calendar_of(config: Config) -> BusinessCalendar:
    close = config.close
    return BusinessCalendar(timezone=close.timezone, day_starts=close.day_starts, at=close.at)


@dataclass(frozen=True)
class PrintOutcome:
    printed: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"printed": self.printed, "error": self.error}


class Closer:
    """Closes over one journal; ``printer()`` gives the printer at print time (or None)."""

    def __init__(
        self,
        journal: Journal,
        config: Callable[[], Config],
        *,
        terminal: str,
        printer: Callable[[], ReceiptPrinter | None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.journal = journal
        self.config = config
        self.terminal = terminal
        self.printer = printer
        self.clock = clock
        self._lock = threading.Lock()

    # ------------------------------------------------------------ close
    def check(
        self, business_day: str | date | None, *, force: bool, now: datetime | None = None
    ) -> tuple[date, CloseRecord | None]:
        """The business day to close and the previous close; refusals raise, storing nothing."""
        now = now or self.clock()
        calendar = calendar_of(self.config())
        today = calendar.business_day(now)
        if business_day is None:
            day = today
        elif isinstance(business_day, date):
            day = business_day
        else:
            day = parse_business_day(business_day)
        if day > today:
            raise CloseRefused(
                f"business day {day} is in the future: the current business day in "
                f"{calendar.timezone} is {today}; close today's or an earlier unclosed day"
            )
        previous = last_close(self.journal)
        if previous is not None and day < previous.business_day:
            raise CloseRefused(
                f"business day {day} is before the last close's business day "
                f"({previous.business_day}, close #{previous.seq}); closes go forward in time"
            )
        if previous is not None and day == previous.business_day and not force:
            raise AlreadyClosed(
                f"business day {day} is already closed (close #{previous.seq}, seqs "
                f"{previous.payload['seq_from']}-{previous.seq_to}); reprint it with "
                "posedge close-day --reprint, or close it again with --force"
            )
        return day, previous

    def close(
        self,
        business_day: str | date | None = None,
        *,
        trigger: Trigger = "manual",
        force: bool = False,
    ) -> CloseRecord:
        """Journal the close of ``business_day`` (default: the current one)."""
        if not self._lock.acquire(blocking=False):
            raise CloseBusy("another close is running on this terminal; wait for it to finish")
        try:
            now = self.clock()
            day, previous = self.check(business_day, force=force, now=now)
            seq_to = self.journal.head().seq
            previous_seq_to = previous.seq_to if previous is not None else 0
            result = compute_close(self.journal, previous_seq_to, seq_to)
            calendar = calendar_of(self.config())
            payload = {
                "version": PAYLOAD_VERSION,
                "business_day": day.isoformat(),
                "timezone": calendar.timezone,
                "day_starts": calendar.day_starts,
                "trigger": trigger,
                "forced": bool(force and previous is not None and previous.business_day == day),
                "closed_at": now.astimezone(UTC).isoformat(timespec="microseconds"),
                "previous_close_seq": previous.seq if previous is not None else None,
                "seq_from": result.seq_from,
                "seq_to": result.seq_to,
                "lines_count": len(result.lines),
                "lines_digest": result.digest,
                "totals": result.totals(),
                "pending_count": len(result.pending),
                "pending": [p.as_dict() for p in result.pending[:PENDING_LIST_MAX]],
            }
            event = self.journal.append(CLOSE_EVENT, payload)
            record = CloseRecord.of(event)
            try:
                remember(self.journal, record)
            except Exception as exc:  # a hint only: the next lookup scans
                log.warning("close hint not stored", extra={"error": type(exc).__name__})
            log.info(
                "day closed",
                extra={"close_seq": record.seq, "business_day": payload["business_day"],
                       "seq_to": seq_to, "lines": len(result.lines)},
            )  # fmt: skip
            return record
        finally:
            self._lock.release()

    def lines(self, record: CloseRecord) -> list[dict[str, Any]]:
        """The per-sale lines of a close, recomputed from the journal."""
        previous = record.payload.get("previous_close_seq")
        previous_record = close_at(self.journal, int(previous)) if previous is not None else None
        previous_seq_to = int(record.payload["seq_from"]) - 1
        if previous is not None and previous_record is not None:
            previous_seq_to = previous_record.seq_to
        return [
            line.as_dict()
            for line in compute_close(self.journal, previous_seq_to, record.seq_to).lines
        ]

    # ------------------------------------------------------------ find
    def find(self, which: str | None) -> CloseRecord:
        """A close by ``day.closed`` seq, by business day (its latest close), or the latest."""
        if which is None or which == "":
            record = last_close(self.journal)
            if record is None:
                raise CloseNotFound("no close yet on this terminal; run posedge close-day first")
            return record
        if which.isascii() and which.isdigit():
            record = close_at(self.journal, int(which))
            if record is None:
                raise CloseNotFound(
                    f"journal event {which} is not a close (day.closed); give a close's seq, "
                    "a business day YYYY-MM-DD, or nothing for the latest close"
                )
            return record
        day = parse_business_day(which)
        found = closes_of_day(self.journal, day)
        if not found:
            raise CloseNotFound(f"business day {day} has no close on this terminal")
        return found[-1]

    # ------------------------------------------------------------ print
    def print_report(self, record: CloseRecord, *, reprint: bool = False) -> PrintOutcome:
        """Print the Z-report of ``record``; journal printing and its result."""
        config = self.config()
        base = {"close_seq": record.seq, "reprint": reprint}
        try:
            printer = self.printer()
        except DeviceError as exc:
            error = f"printer unavailable: {str(exc)[:PRINT_ERROR_CHARS]}"
            self.journal.append("zreport.failed", base | {"error": error})
            return PrintOutcome(False, error)
        if printer is None:
            self.journal.append("zreport.failed", base | {"error": "no printer configured"})
            return PrintOutcome(False, "no printer configured")
        receipt = build_zreport(
            record.as_dict(),
            merchant_name=config.sales.merchant_name,
            terminal=self.terminal,
            columns=config.printer.columns,
            reprint=reprint,
            now=self.clock(),
        )
        self.journal.append(
            "zreport.printing", base | {"business_day": record.payload["business_day"]}
        )
        try:
            result = printer.print_receipt(receipt)
            if not result.complete:
                raise DeviceError(f"Z-report not confirmed: {result.fault or 'incomplete'}")
        except DeviceError as exc:
            error = str(exc)[:PRINT_ERROR_CHARS]
            self.journal.append("zreport.failed", base | {"error": error})
            log.warning("Z-report not printed", extra={"close_seq": record.seq, "error": error})
            return PrintOutcome(False, error)
        self.journal.append("zreport.printed", base)
        return PrintOutcome(True)


def close_document(
    record: CloseRecord, printed: PrintOutcome | None, lines: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What the CLI and the API answer for a close."""
    doc: dict[str, Any] = {"close": record.as_dict()}
    if printed is not None:
        doc["print"] = printed.as_dict()
    if lines is not None:
        doc["lines"] = lines
    return doc
