"""Checks of the receipt printer and the card reader.

Each run polls a device at most once: the daemon's monitor puts the polled status in
``ctx.extra["printer_status"]`` / ``ctx.extra["reader_status"]`` (a status or the
:class:`DeviceError` the poll raised); without it (``posedge doctor`` offline) the first
check that needs the status polls ``ctx.printer`` / ``ctx.reader`` and leaves the answer
there for the others. A device that is not configured is ``skip``; configured but
unreachable is ``fail``.
"""

from __future__ import annotations

from typing import Any

from posedge.drivers.cardreader import ReaderStatus
from posedge.drivers.errors import DeviceError
from posedge.drivers.escpos.status import PrinterStatus

from .model import CheckResult, HealthContext, Status

PRINTER_STATUS = "printer_status"
READER_STATUS = "reader_status"
SWIPES = "swipes"


def poll_printer(printer: Any) -> PrinterStatus | DeviceError:
    try:
        status: PrinterStatus = printer.status()
    except DeviceError as exc:
        return exc
    return status


def poll_reader(reader: Any) -> ReaderStatus | DeviceError:
    """The reader's status; a reconnecting transport that lost the reader is retried now.

    A magtek reader has no status query: while no read holds it, its input is flushed
    (every swipe flushes it first anyway), the one I/O that finds it unplugged; and once
    lost, nothing but this poll would notice it came back.
    """
    transport = getattr(reader, "transport", None)
    reconnect = getattr(transport, "reconnect_now", None)
    if transport is not None and not transport.is_open and callable(reconnect):
        reconnect()
    if getattr(reader, "protocol", None) == "magtek" and transport is not None:
        _probe_link(reader, transport)
    try:
        status: ReaderStatus = reader.status()
    except DeviceError as exc:
        return exc
    return status


def _probe_link(reader: Any, transport: Any) -> None:
    # The reader's own lock, never waited for: a read in progress owns the link.
    lock = getattr(reader, "_lock", None)
    if lock is None or not transport.is_open or not lock.acquire(blocking=False):
        return
    try:
        transport.flush_input()
    except DeviceError:
        pass  # a reconnecting transport is now disconnected: status() says so
    finally:
        lock.release()


def _printer(ctx: HealthContext) -> PrinterStatus | DeviceError | None:
    if PRINTER_STATUS not in ctx.extra:
        if ctx.printer is None:
            return None
        ctx.extra[PRINTER_STATUS] = poll_printer(ctx.printer)
    found: PrinterStatus | DeviceError | None = ctx.extra[PRINTER_STATUS]
    return found


def _printer_configured(ctx: HealthContext) -> bool:
    return bool(getattr(getattr(ctx.config, "printer", None), "url", None))


def _printer_skip(name: str, ctx: HealthContext) -> CheckResult | None:
    if not _printer_configured(ctx) and ctx.printer is None:
        return CheckResult(name, Status.SKIP, "no printer configured (printer.url)")
    return None


def check_printer_online(ctx: HealthContext) -> CheckResult:
    name = "printer.online"
    if (skipped := _printer_skip(name, ctx)) is not None:
        return skipped
    status = _printer(ctx)
    if status is None:
        return CheckResult(name, Status.FAIL, "the printer could not be opened",
                           fix="check the printer's power and cable, and printer.url")  # fmt: skip
    if isinstance(status, DeviceError):
        return CheckResult(
            name, Status.FAIL, f"no answer from the printer: {str(status)[:160]}",
            fix="check the printer's power and cable, then printer.url and the baud rate",
        )  # fmt: skip
    if not status.online and not status.faults:
        return CheckResult(name, Status.FAIL, "the printer reports itself offline",
                           fix="press the printer's online button or power-cycle it")  # fmt: skip
    return CheckResult(name, Status.OK, "the printer answers its status requests",
                       details={"online": status.online})  # fmt: skip


def _printer_flag(name: str, ctx: HealthContext, flag: str, summary: str, fix: str) -> CheckResult:
    if (skipped := _printer_skip(name, ctx)) is not None:
        return skipped
    status = _printer(ctx)
    if not isinstance(status, PrinterStatus):
        return CheckResult(name, Status.SKIP, "printer status unknown (see printer.online)")
    if getattr(status, flag):
        return CheckResult(name, Status.FAIL, summary, fix=fix, value=1.0)
    return CheckResult(name, Status.OK, f"no {flag.replace('_', ' ')}", value=0.0)


def check_printer_cover(ctx: HealthContext) -> CheckResult:
    return _printer_flag("printer.cover", ctx, "cover_open", "the printer cover is open",
                         "close the printer cover")  # fmt: skip


def check_printer_paper(ctx: HealthContext) -> CheckResult:
    name = "printer.paper"
    if (skipped := _printer_skip(name, ctx)) is not None:
        return skipped
    status = _printer(ctx)
    if not isinstance(status, PrinterStatus):
        return CheckResult(name, Status.SKIP, "printer status unknown (see printer.online)")
    if status.paper_end or status.paper_stopped:
        return CheckResult(name, Status.FAIL, "the printer is out of paper",
                           fix="load a new paper roll", value=0.0)  # fmt: skip
    if status.paper_near_end:
        return CheckResult(name, Status.WARN, "the paper roll is nearly used up",
                           fix="have a new paper roll ready and change it soon",
                           value=0.5)  # fmt: skip
    return CheckResult(name, Status.OK, "paper loaded", value=1.0)


def check_printer_cutter(ctx: HealthContext) -> CheckResult:
    if (skipped := _printer_skip("printer.cutter", ctx)) is not None:
        return skipped
    status = _printer(ctx)
    if isinstance(status, PrinterStatus) and (
        status.unrecoverable_error or status.auto_recoverable_error
    ):
        return CheckResult("printer.cutter", Status.FAIL,
                           "the printer reports an error (cutter or head)",
                           fix="open the cover, clear any jammed paper, close it; power-cycle "
                           "the printer if the error stays", value=1.0)  # fmt: skip
    return _printer_flag(
        "printer.cutter",
        ctx,
        "cutter_error",
        "the auto-cutter is jammed",
        "open the cover, clear the jammed paper from the cutter and close it",
    )


def check_reader_present(ctx: HealthContext) -> CheckResult:
    name = "reader.present"
    if not getattr(getattr(ctx.config, "reader", None), "url", None) and ctx.reader is None:
        return CheckResult(name, Status.FAIL, "no card reader is configured: sales are refused",
                           fix="set reader.url in the configuration and restart")  # fmt: skip
    if READER_STATUS not in ctx.extra:
        if ctx.reader is None:
            return CheckResult(name, Status.FAIL, "the card reader could not be opened",
                               fix="check the reader's cable and reader.url")  # fmt: skip
        ctx.extra[READER_STATUS] = poll_reader(ctx.reader)
    status = ctx.extra[READER_STATUS]
    if isinstance(status, DeviceError):
        return CheckResult(name, Status.FAIL,
                           f"the card reader does not answer: {str(status)[:160]}",
                           fix="check the reader's cable (replug it) and reader.url")  # fmt: skip
    if status is None or not status.online:
        return CheckResult(name, Status.FAIL, "the card reader is disconnected",
                           fix="replug the card reader's cable; check reader.url")  # fmt: skip
    if status.state == "fault":
        return CheckResult(name, Status.FAIL, "the card reader reports a fault",
                           fix="replug the card reader; replace it if the fault stays")  # fmt: skip
    return CheckResult(name, Status.OK, f"the card reader is connected ({status.state})",
                       details=status.as_dict())  # fmt: skip


def check_reader_errors(ctx: HealthContext) -> CheckResult:
    name = "reader.errors"
    swipes = ctx.extra.get(SWIPES)
    if swipes is None and ctx.engine is not None:
        swipes = getattr(ctx.engine, "swipes", None)
    if swipes is None:
        return CheckResult(name, Status.SKIP, "no recent swipes known here (daemon only)")
    health = ctx.config.health
    failed, total = swipes.recent(health.reader_error_window)
    details = {"failed": failed, "swipes": total}
    if total < health.reader_error_min_swipes:
        return CheckResult(name, Status.OK,
                           f"{failed} of {total} recent swipes unreadable (too few to judge)",
                           value=0.0, details=details)  # fmt: skip
    rate = failed / total
    summary = f"{failed} of the last {total} swipes could not be read ({rate:.0%})"
    fix = ("clean the reader's head with a cleaning card; replace the reader if the rate "
           "stays high")  # fmt: skip
    if rate >= health.reader_error_rate_fail:
        return CheckResult(name, Status.FAIL, summary, fix=fix, value=rate, details=details)
    if rate >= health.reader_error_rate_warn:
        return CheckResult(name, Status.WARN, summary, fix=fix, value=rate, details=details)
    return CheckResult(name, Status.OK, summary, value=rate, details=details)
