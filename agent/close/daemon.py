"""Closes inside the daemon: one at a time, printing under the printer lock, on a schedule.

:class:`DaemonCloses` runs :class:`~.closer.Closer` off the event loop (a close reads the
day's events) and prints the Z-report while holding the sale engine's printer lock, so a
Z-report never interleaves with a receipt. :class:`CloseScheduler` closes the most recent
business day whose scheduled time (``[close] at``) has passed and that has no close yet:
at start (a missed schedule: ``catch_up``) and then whenever the time comes (``schedule``).
Its clock is injected; :meth:`CloseScheduler.turn` is one decision, so tests drive it
without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ..journal import JournalError
from .businessday import BusinessCalendar
from .closer import Closer, PrintOutcome, Trigger
from .errors import CloseBusy, CloseError
from .records import CloseRecord, last_close

log = logging.getLogger("posedge.close")

MAX_TICK_S = 60.0


class DaemonCloses:
    """What the till API and the scheduler call."""

    def __init__(self, closer: Closer, printer_lock: asyncio.Lock | None = None) -> None:
        self.closer = closer
        self.printer_lock = printer_lock or asyncio.Lock()
        self._running = False

    async def close(
        self, business_day: str | None, *, trigger: Trigger, force: bool = False
    ) -> tuple[CloseRecord, PrintOutcome]:
        if self._running:
            raise CloseBusy("another close is running on this terminal; wait for it to finish")
        self._running = True
        try:
            record = await asyncio.to_thread(
                self.closer.close, business_day, trigger=trigger, force=force
            )
            return record, await self.print(record, reprint=False)
        finally:
            self._running = False

    async def print(self, record: CloseRecord, *, reprint: bool) -> PrintOutcome:
        async with self.printer_lock:
            try:
                return await asyncio.to_thread(self.closer.print_report, record, reprint=reprint)
            except JournalError as exc:  # the close itself stays journaled
                log.error("Z-report print not journaled", extra={"error": str(exc)})
                return PrintOutcome(False, f"not printed: the journal refused ({exc})")

    async def find(self, which: str | None) -> CloseRecord:
        return await asyncio.to_thread(self.closer.find, which)

    async def lines(self, record: CloseRecord) -> list[dict[str, object]]:
        return await asyncio.to_thread(self.closer.lines, record)


class CloseScheduler:
    """``[close] at``: close each business day once, at its time or at the next start."""

    def __init__(
        self,
        closes: DaemonCloses,
        calendar: Callable[[], BusinessCalendar],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.closes = closes
        self.calendar = calendar
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._first = True

    async def turn(self) -> CloseRecord | None:
        """Close the latest due business day if it has no close yet; the close, or None."""
        calendar = self.calendar()
        now = self.clock()
        due = calendar.last_due(now)
        if due is None:
            return None
        last = await asyncio.to_thread(last_close, self.closes.closer.journal)
        if last is not None and last.business_day >= due:
            self._first = False
            return None
        trigger: Trigger = "catch_up" if self._first else "schedule"
        self._first = False
        record, printed = await self.closes.close(due.isoformat(), trigger=trigger)
        log.info(
            "scheduled close taken",
            extra={"business_day": due.isoformat(), "trigger": trigger,
                   "close_seq": record.seq, "printed": printed.printed},
        )  # fmt: skip
        return record

    def seconds_to_next(self) -> float:
        upcoming = self.calendar().next_due(self.clock())
        if upcoming is None:
            return MAX_TICK_S
        wait = (upcoming[1] - self.clock()).total_seconds()
        return min(MAX_TICK_S, max(0.0, wait))

    async def run(self) -> None:
        while True:
            try:
                await self.turn()
            except CloseBusy:
                pass  # someone closes right now; the next turn sees that close
            except (CloseError, JournalError) as exc:
                log.error("scheduled close failed; retried", extra={"error": str(exc)})
            except Exception as exc:  # never let the schedule die silently
                log.error("scheduled close failed; retried", extra={"error": type(exc).__name__})
            await asyncio.sleep(max(1.0, self.seconds_to_next()))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="posedge-close-schedule")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
