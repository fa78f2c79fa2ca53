"""The receipt printer device: status, printing, health checks, statistics.

:class:`ReceiptPrinter` drives an ESC/POS printer over any
:class:`~posedge.drivers.transport.base.Transport`:

* :meth:`~ReceiptPrinter.status` flushes stale input, then sends ``DLE EOT 1..4``
  one at a time and reads exactly one reply byte each (timeout →
  :class:`DeviceTimeout`, bad pattern → :class:`ProtocolError`; never "online"
  by default).
* :meth:`~ReceiptPrinter.print_receipt` checks status first and refuses with
  :class:`PrinterNotReady` (nothing sent). After the job it sends ``GS r 1``,
  which the printer answers only once everything before it was processed,
  polling real-time status meanwhile; a fault seen before that answer means
  the job may be incomplete, and the :class:`PrintResult` says so (reprint).
* :meth:`~ReceiptPrinter.check_health` — UnifiedPOS internal / external /
  interactive checks; never raises device errors, returns a HealthResult.
* UnifiedPOS-named counters in :class:`DeviceStatistics`, saved after each job.

Device layer only: bytes come from :mod:`posedge.drivers.escpos`; this module
never builds ESC/POS by hand and never lets a transport exception other than
:mod:`posedge.drivers.errors` escape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .errors import DeviceError, DeviceNotReady, DeviceTimeout
from .escpos import commands as cmd
from .escpos.codepages import CodePage
from .escpos.encoder import EncodedReceipt, encode
from .escpos.model import Align, Barcode, Cut, Feed, QRCode, Receipt, Symbology, Text
from .escpos.status import (
    PaperSensor,
    PrinterStatus,
    ReplyKind,
    check_realtime_byte,
    classify_reply,
    decode_paper_sensor,
    decode_realtime,
)
from .health import HealthLevel, HealthResult
from .statistics import DeviceStatistics
from .transport.base import Transport

log = logging.getLogger("posedge.drivers.printer")

FAULT_HINTS: dict[str, str] = {
    "cover_open": "close the printer cover",
    "paper_end": "load a new paper roll",
    "cutter_error": "clear the jam at the cutter, then recover or power-cycle the printer",
    "unrecoverable_error": "power-cycle the printer; call service if it happens again",
    "auto_recoverable_error": "wait for the print head to cool down",
    "recoverable_error": "clear the cause, then recover or power-cycle the printer",
    "error": "check the printer's error light and power-cycle it",
    "offline": "check the printer is switched on and not being fed by the feed button",
}

# UnifiedPOS statistics names.
LINES = "ReceiptLinePrintedCount"
CUTS = "PaperCutCount"
FAILED_CUTS = "FailedPaperCutCount"
COVER_OPENS = "ReceiptCoverOpenCount"
PAPER_OUTS = "PaperOutCount"
BARCODES = "BarcodePrintedCount"
COMM_ERRORS = "CommunicationErrorCount"
PRINTER_FAULTS = "PrinterFaultCount"


class PrinterNotReady(DeviceNotReady):
    """The printer refused a job before anything was sent; ``status`` says why."""

    def __init__(self, status: PrinterStatus, *, url: str | None = None) -> None:
        self.status = status
        self.faults = status.faults
        hints = "; ".join(f"{f}: {FAULT_HINTS.get(f, 'check the printer')}" for f in self.faults)
        super().__init__(f"printer not ready ({hints}); nothing was printed", url=url)


@dataclass(frozen=True)
class PrintResult:
    """What happened to one job. ``complete`` False means reprint may be needed."""

    ok: bool
    complete: bool
    """The printer confirmed (GS r) it processed every byte of the job."""
    status: PrinterStatus
    """Status after the job (or when the fault was seen)."""
    lines_sent: int
    lines_printed: int | None
    """Text lines confirmed printed; None when the job was not confirmed."""
    bytes_sent: int
    replaced: tuple[str, ...] = ()
    """Characters printed as ``?`` because the code page lacks them."""
    fault: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def replaced_count(self) -> int:
        return len(self.replaced)

    @property
    def reprint_needed(self) -> bool:
        return not self.complete

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "reprint_needed": self.reprint_needed,
            "fault": self.fault,
            "warnings": self.warnings,
            "lines_sent": self.lines_sent,
            "lines_printed": self.lines_printed,
            "bytes_sent": self.bytes_sent,
            "replaced_characters": self.replaced_count,
            "status": self.status.as_dict(),
        }


def test_receipt(*, device_id: str = "printer", columns: int = 42) -> Receipt:
    """The health-check receipt: title, several sizes, CODE128, QR code, cut."""
    rule = "-" * columns
    return Receipt(
        [
            Text("POSEDGE TEST", bold=True, width=2, height=2, align=Align.CENTER),
            Text(rule),
            Text(f"Device: {device_id}"[:columns]),
            Text("Size 1x1 normal"),
            Text("Bold", bold=True),
            Text("Underline", underline=True),
            Text("Size 2x1", width=2),
            Text("Size 1x2", height=2),
            Text("Size 3x3", width=3, height=3),
            Text("Right", align=Align.RIGHT),
            Text("Accents: àéîõü ÄÖÜ ß £ €"),
            Text(rule),
            Barcode(Symbology.CODE128, "POSEDGE-TEST"),
            QRCode(f"posedge test {device_id}"[:200]),
            Text("End of test", align=Align.CENTER),
            Feed(3),
            Cut(),
        ]
    )


setattr(test_receipt, "__test__", False)  # noqa: B010  (not a pytest test when imported)

Confirm = Callable[[str], bool]


class ReceiptPrinter:
    """An ESC/POS receipt printer over a transport."""

    def __init__(
        self,
        transport: Transport,
        *,
        device_id: str = "printer",
        statistics: DeviceStatistics | None = None,
        code_page: CodePage = CodePage.PC858,
        columns: int = 42,
        poll_timeout_s: float = 0.5,
        job_timeout_s: float = 30.0,
        status_interval_s: float = 0.25,
    ) -> None:
        if columns < 8:
            raise ValueError(f"columns={columns}: a receipt printer has at least 8 columns")
        self.transport = transport
        self.device_id = device_id
        self.stats = statistics or DeviceStatistics(None, device_id)
        self.code_page = code_page
        self.columns = columns
        self.poll_timeout_s = poll_timeout_s
        self.job_timeout_s = job_timeout_s
        self.status_interval_s = status_interval_s
        self._last: PrinterStatus | None = None

    @property
    def url(self) -> str:
        return self.transport.url

    # ---- status ------------------------------------------------------------
    def status(self) -> PrinterStatus:
        """Flush stale input, poll ``DLE EOT 1..4``, validate, combine."""
        try:
            self.transport.flush_input()
            status = self._poll(None)
        except DeviceError:
            self._communication_error()
            raise
        return status

    def _poll(self, completion: _Completion | None) -> PrinterStatus:
        replies = [self._realtime_reply(n, completion) for n in (1, 2, 3, 4)]
        status = decode_realtime(replies, self.url)
        self._observe(status)
        return status

    def _realtime_reply(self, n: int, completion: _Completion | None) -> int:
        self.transport.write(cmd.build("realtime_status", n))
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            data = self.transport.read(1, max(0.0, remaining)) if remaining > 0 else b""
            if not data:
                raise DeviceTimeout(
                    f"no reply to DLE EOT {n} within {self.poll_timeout_s:g}s; check power, "
                    "cable and baud rate",
                    url=self.url,
                )
            kind = classify_reply(data[0])
            if kind in (ReplyKind.XON, ReplyKind.XOFF):
                continue
            if kind is ReplyKind.TRANSMIT and completion is not None and not completion.done:
                completion.mark(data[0], self.url)
                continue
            return check_realtime_byte(n, data[0], self.url)

    def _observe(self, status: PrinterStatus) -> None:
        """Count faults on the transition into them and track online time."""
        before = self._last or PrinterStatus()
        self._last = status
        self.stats.mark_online(status.online)
        if status.cover_open and not before.cover_open:
            self.stats.increment(COVER_OPENS)
        if status.paper_end and not before.paper_end:
            self.stats.increment(PAPER_OUTS)
        errors = ("cutter_error", "unrecoverable_error", "auto_recoverable_error")
        if any(getattr(status, e) and not getattr(before, e) for e in errors):
            self.stats.increment(PRINTER_FAULTS)

    def _communication_error(self) -> None:
        self.stats.increment(COMM_ERRORS)
        self._save_stats()

    def _save_stats(self, *, force: bool = False) -> None:
        try:
            self.stats.save(force=force)
        except OSError as exc:  # counters are diagnostics, never a reason to fail a job
            log.warning("could not save printer statistics to %s: %s", self.stats.path, exc)

    # ---- printing ----------------------------------------------------------
    def print_receipt(self, receipt: Receipt) -> PrintResult:
        """Print ``receipt``; raise PrinterNotReady (nothing sent) if the printer is not ready."""
        before = self.status()
        if not before.ready:
            self._save_stats()
            raise PrinterNotReady(before, url=self.url)
        encoded = encode(receipt, self.code_page)
        try:
            self.transport.write(encoded.data + cmd.build("transmit_status", 1))
            completion, status = self._await_completion()
        except DeviceError as exc:
            exc.add_note("the receipt may be incomplete: check the printer and reprint")
            self._communication_error()
            raise
        result = self._result(encoded, completion, status)
        self._count_job(encoded, result)
        self._save_stats()
        return result

    def _await_completion(self) -> tuple[_Completion, PrinterStatus]:
        """Wait for the GS r reply, polling real-time status; stop early on a fault."""
        completion = _Completion()
        deadline = time.monotonic() + self.job_timeout_s
        while True:
            wait = min(self.status_interval_s, max(0.0, deadline - time.monotonic()))
            data = self.transport.read(1, wait)
            if data:
                kind = classify_reply(data[0])
                if kind is ReplyKind.TRANSMIT:
                    completion.mark(data[0], self.url)
                    return completion, self.status()
                log.debug("ignoring byte 0x%02x while waiting for job completion", data[0])
                continue
            status = self._poll(completion)
            if completion.done:
                return completion, self.status()
            # Plain "offline" may be transient (feeding, cutting): keep waiting for it.
            definite = [f for f in status.faults if f != "offline"]
            if definite or time.monotonic() >= deadline:
                return completion, status

    def _result(
        self, encoded: EncodedReceipt, completion: _Completion, status: PrinterStatus
    ) -> PrintResult:
        warnings = list(status.warnings)
        if encoded.replaced:
            warnings.append(f"replaced_characters:{len(encoded.replaced)}")
        if completion.done:
            warnings.extend(status.faults)  # a fault that arrived after the last line
            return PrintResult(
                ok=True,
                complete=True,
                status=status,
                lines_sent=encoded.lines,
                lines_printed=encoded.lines,
                bytes_sent=len(encoded.data),
                replaced=encoded.replaced,
                warnings=warnings,
            )
        fault = status.faults[0] if status.faults else "not_confirmed"
        return PrintResult(
            ok=False,
            complete=False,
            status=status,
            lines_sent=encoded.lines,
            lines_printed=None,
            bytes_sent=len(encoded.data),
            replaced=encoded.replaced,
            fault=fault,
            warnings=warnings,
        )

    def _count_job(self, encoded: EncodedReceipt, result: PrintResult) -> None:
        if result.complete:
            self.stats.increment(LINES, encoded.lines)
            self.stats.increment(CUTS, encoded.cuts)
            self.stats.increment(BARCODES, encoded.barcodes)
        elif result.status.cutter_error and encoded.cuts:
            self.stats.increment(FAILED_CUTS)

    def recover(self, *, clear_buffer: bool = False) -> None:
        """``DLE ENQ``: recover from a recoverable (e.g. cutter) error once its cause is fixed.

        With ``clear_buffer`` the rest of the interrupted job is discarded instead
        of printed — use it before reprinting the whole receipt."""
        self.transport.write(cmd.build("realtime_recover", 2 if clear_buffer else 1))

    # ---- health --------------------------------------------------------------
    def test_receipt(self) -> Receipt:
        return test_receipt(device_id=self.device_id, columns=self.columns)

    def check_health(self, level: HealthLevel, *, confirm: Confirm | None = None) -> HealthResult:
        """UnifiedPOS CheckHealth. Device errors become a failed result, never an exception."""
        details: dict[str, Any] = {"url": self.url}
        try:
            problem = self._health_problem(level, confirm, details)
        except PrinterNotReady as exc:
            details["status"] = exc.status.as_dict()
            problem = f"Not ready ({', '.join(exc.faults)}); nothing printed"
        except DeviceError as exc:
            problem = f"{type(exc).__name__}: {exc.message}"
        details["statistics"] = self.stats.snapshot()
        return HealthResult.make(self.device_id, level, problem, **details)

    def _health_problem(
        self, level: HealthLevel, confirm: Confirm | None, details: dict[str, Any]
    ) -> str | None:
        if level is HealthLevel.INTERNAL:
            status = self.status()
            details["status"] = status.as_dict()
            return None if status.ready else f"Not ready ({', '.join(status.faults)})"
        if level is HealthLevel.INTERACTIVE and confirm is None:
            return "Interactive check needs a technician to confirm (no confirm callback)"
        result = self.print_receipt(self.test_receipt())
        details["print"] = result.as_dict()
        details["status"] = result.status.as_dict()
        if not result.ok:
            return f"Test receipt failed ({result.fault}); reprint after fixing"
        if confirm is not None and not confirm("Did the test receipt print correctly?"):
            return "Technician reported the test receipt did not print correctly"
        return None

    # ---- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        """Stop counting online time and save statistics (the transport stays open)."""
        self.stats.mark_online(False)
        self._save_stats(force=True)

    def __enter__(self) -> ReceiptPrinter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Completion:
    """Whether the job's ``GS r 1`` marker came back (and what it said)."""

    def __init__(self) -> None:
        self.sensor: PaperSensor | None = None

    @property
    def done(self) -> bool:
        return self.sensor is not None

    def mark(self, byte: int, url: str) -> None:
        self.sensor = decode_paper_sensor(byte, url)
