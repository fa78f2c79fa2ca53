"""A virtual ESC/POS receipt printer built on the real protocol code.

:class:`VirtualPrinter` decodes what the host writes with
:class:`posedge.drivers.escpos.decoder.EscPosDecoder` (buffered across split
writes) into receipts — completed at each cut — and a plain-text rendering;
it answers ``DLE EOT 1..4`` and ``GS r`` with bytes made by
:mod:`posedge.drivers.escpos.status`, sends Automatic Status Back when
enabled, and keeps every byte it did not understand in :attr:`unknown`.

Like a real printer, real-time commands (``DLE EOT n``, ``DLE ENQ n``) are
picked out of the incoming stream *before* buffering, so they are answered
in every state. While offline (paper out, cover open, cutter or other error)
incoming job bytes are **held** in the receive buffer, not printed and not
discarded; they print when the fault clears (``apply_fault("clear")``), as on
real hardware. ``GS r`` is in the buffer too, so it is not answered while
offline.

Faults (:data:`FAULT_NAMES`, plus the byte-level ones of
:class:`~posedge.simulator.core.VirtualDevice`): ``paper_near_end``,
``paper_out``, ``paper_out_after_lines`` (``lines=N``: the paper ends after N
more text lines), ``cover_open``, ``cutter_error`` (the next cut fails, status
shows it), ``unrecoverable``, ``auto_recoverable``, ``drawer`` (``open=``),
``unplug_after_bytes`` (``bytes=N``: accepts N more job bytes, then unplugs)
and ``clear``. :meth:`VirtualPrinter.state_dump` / :meth:`VirtualPrinter.load_state`
turn a state into a dict and back; a driver status dump
(:meth:`PrinterStatus.as_dict`) loads too, so a field report becomes a test.

Test and simulation only: never imported by production code paths except
through the ``sim://`` transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

from posedge.drivers.escpos.decoder import Control, EscPosDecoder, Item, Unknown
from posedge.drivers.escpos.model import Cut, DrawerKick, Element, Receipt, Text
from posedge.drivers.escpos.status import (
    PrinterStatus,
    encode_asb,
    encode_drawer_sensor,
    encode_paper_sensor,
    encode_realtime,
)

from .core import VirtualDevice

DLE, EOT, ENQ = 0x10, 0x04, 0x05

FAULT_NAMES = (
    "paper_near_end",
    "paper_out",
    "paper_out_after_lines",
    "cover_open",
    "cutter_error",
    "unrecoverable",
    "auto_recoverable",
    "drawer",
    "unplug_after_bytes",
    "clear",
)
BYTE_FAULT_NAMES = ("no_response", "slow_response", "garbage", "split", "unplug", "replug")


def _on(params: Mapping[str, Any]) -> bool:
    return bool(params.get("on", True))


class VirtualPrinter(VirtualDevice):
    """A simulated ESC/POS receipt printer with injectable faults."""

    kind = "printer"

    def __init__(self, *, paper_out_after_lines: int | None = None) -> None:
        super().__init__()
        self._decoder = EscPosDecoder()
        self._rt_tail = bytearray()
        self._held = bytearray()
        self._conditions = PrinterStatus()
        self._cutter_armed = False
        self._paper_left = paper_out_after_lines
        self._unplug_after: int | None = None
        self._asb_mask = 0
        self._current: list[Element] = []
        self.receipts: list[Receipt] = []
        """Completed receipts, each ending with its Cut."""
        self.unknown: list[Unknown] = []
        """Bytes the printer did not understand (with the reason)."""
        self.job_bytes_received = 0
        """Bytes received other than real-time commands (0 = no job was sent)."""
        self.lines_printed = 0
        self.cuts = 0
        self.failed_cuts = 0
        self.drawer_kicks = 0

    # ---- state -------------------------------------------------------------
    @property
    def status(self) -> PrinterStatus:
        """What the printer reports now (offline derived from its conditions)."""
        with self._cond:
            c = self._conditions
            errors = (
                c.cutter_error
                or c.unrecoverable_error
                or c.auto_recoverable_error
                or c.recoverable_error
                or c.error
            )
            online = c.online and not (c.cover_open or c.paper_end or errors)
            return replace(c, online=online, paper_stopped=c.paper_end, error=errors)

    @property
    def current_receipt(self) -> Receipt:
        """Elements printed since the last cut."""
        with self._cond:
            return Receipt(list(self._current))

    @property
    def held_bytes(self) -> int:
        """Job bytes waiting in the receive buffer (printer offline or command unfinished)."""
        with self._cond:
            return len(self._held)

    def plain_text(self) -> str:
        """Everything printed so far: completed receipts, then the one in progress."""
        with self._cond:
            parts = [r.plain_text() for r in self.receipts]
            if self._current:
                parts.append(Receipt(list(self._current)).plain_text())
            return "\n".join(parts)

    def wait_for_receipts(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` receipts are complete (for tests over threaded links)."""
        return self.wait_until(lambda: len(self.receipts) >= count, timeout_s)

    # ---- host → printer ----------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        unplug = False
        with self._cond:
            job = self._take_realtime(data)
            if self._unplug_after is not None:
                job = job[: max(0, self._unplug_after - self.job_bytes_received)]
                unplug = self.job_bytes_received + len(job) >= self._unplug_after
            self.job_bytes_received += len(job)
            self._held += job
            self._process()
            self._cond.notify_all()
        if unplug:
            self._unplug_after = None
            self.unplug()

    def _take_realtime(self, data: bytes) -> bytes:
        """Answer DLE EOT / DLE ENQ wherever they are; return the other bytes in order."""
        buf = self._rt_tail + data
        self._rt_tail = bytearray()
        out = bytearray()
        i = 0
        while i < len(buf):
            if buf[i] != DLE:
                out.append(buf[i])
                i += 1
                continue
            if len(buf) - i < 3 and bytes(buf[i + 1 : i + 2]) in (b"", b"\x04", b"\x05"):
                self._rt_tail = buf[i:]  # maybe a real-time command split across writes
                break
            cmd, n = buf[i + 1], buf[i + 2] if i + 2 < len(buf) else 0
            if (cmd == EOT and 1 <= n <= 4) or (cmd == ENQ and n in (1, 2)):
                self._realtime(cmd, n)
                i += 3
            else:
                out.append(buf[i])
                i += 1
        return bytes(out)

    def _realtime(self, cmd: int, n: int) -> None:
        if cmd == EOT:
            self.send(bytes((encode_realtime(self.status, n),)))
            return
        before = self.status
        self._conditions = replace(self._conditions, cutter_error=False, recoverable_error=False)
        if n == 2:
            self._held.clear()
        self._changed(before)

    def _process(self) -> None:
        """Print held bytes while the printer is online."""
        while self._held and self.status.online:
            step = self._decoder.step(self._held)
            if step is None:
                return
            items, used = step
            del self._held[:used]
            for item in items:
                self._handle(item)

    def _handle(self, item: Item) -> None:
        if isinstance(item, Unknown):
            self.unknown.append(item)
        elif isinstance(item, Control):
            self._control(item)
        elif isinstance(item, Cut):
            self._cut(item)
        else:
            self._current.append(item)
            if isinstance(item, Text):
                self._line_printed()
            elif isinstance(item, DrawerKick):
                self.drawer_kicks += 1
                self._set(drawer_open=True)

    def _line_printed(self) -> None:
        self.lines_printed += 1
        if self._paper_left is not None:
            self._paper_left -= 1
            if self._paper_left <= 0:
                self._paper_left = None
                self._set(paper_end=True, paper_near_end=True)

    def _cut(self, cut: Cut) -> None:
        if self._cutter_armed:
            self.failed_cuts += 1
            self._set(cutter_error=True)
            return
        self.cuts += 1
        self._current.append(cut)
        self.receipts.append(Receipt(self._current))
        self._current = []

    def _control(self, item: Control) -> None:
        if item.name == "transmit_status":
            n = item.args[0] % 48
            if n == 1:
                self.send(bytes((encode_paper_sensor(self.status),)))
            elif n == 2:
                self.send(bytes((encode_drawer_sensor(self.status),)))
        elif item.name == "auto_status_back":
            self._asb_mask = item.args[0]
            if self._asb_mask:
                self.send(encode_asb(self.status))

    def _set(self, **conditions: bool) -> None:
        before = self.status
        self._conditions = replace(self._conditions, **conditions)
        self._changed(before)

    def _changed(self, before: PrinterStatus) -> None:
        after = self.status
        if self._asb_mask and after != before:
            self.send(encode_asb(after))
        self._cond.notify_all()

    # ---- faults ------------------------------------------------------------
    def apply_fault(self, name: str, **params: Any) -> None:
        """Apply a printer fault (:data:`FAULT_NAMES`) or a byte-level one by name."""
        if name in BYTE_FAULT_NAMES:
            super().apply_fault(name, **params)
            return
        handler = _FAULT_HANDLERS.get(name)
        if handler is None:
            known = ", ".join((*FAULT_NAMES, *BYTE_FAULT_NAMES))
            raise ValueError(f"unknown fault {name!r} for printer; known: {known}")
        with self._cond:
            before = self.status
            handler(self, params)
            self._changed(before)
            self._process()
        if name == "clear":
            super().apply_fault("clear")

    def _fault_clear(self, params: Mapping[str, Any]) -> None:
        self._conditions = PrinterStatus(drawer_open=self._conditions.drawer_open)
        self._cutter_armed = False
        self._paper_left = None
        self._unplug_after = None

    # ---- dumps ---------------------------------------------------------------
    def state_dump(self) -> dict[str, Any]:
        """The printer's state as JSON-able data; :meth:`load_state` replays it."""
        with self._cond:
            return {
                "kind": self.kind,
                "status": self.status.as_dict(),
                "conditions": asdict(self._conditions),
                "cutter_armed": self._cutter_armed,
                "paper_out_after_lines": self._paper_left,
                "byte_faults": self.faults.describe(),
                "held_bytes": len(self._held),
                "counters": {
                    "receipts": len(self.receipts),
                    "lines_printed": self.lines_printed,
                    "cuts": self.cuts,
                    "failed_cuts": self.failed_cuts,
                    "drawer_kicks": self.drawer_kicks,
                    "unknown": len(self.unknown),
                },
            }

    def load_state(self, dump: Mapping[str, Any]) -> None:
        """Take the state in ``dump``: a :meth:`state_dump`, or a bare status dict
        (``PrinterStatus.as_dict()``, e.g. from a technician's ``--json`` output)."""
        if "conditions" in dump:
            conditions = PrinterStatus.from_dict(dict(dump["conditions"]))
        else:
            conditions = _conditions_from_status(dict(dump.get("status", dump)))
        with self._cond:
            before = self.status
            self._conditions = conditions
            self._cutter_armed = bool(dump.get("cutter_armed", False))
            lines = dump.get("paper_out_after_lines")
            self._paper_left = None if lines is None else int(lines)
            self._changed(before)
            self._process()

    @classmethod
    def from_state(cls, dump: Mapping[str, Any]) -> VirtualPrinter:
        printer = cls()
        printer.load_state(dump)
        return printer


def _conditions_from_status(raw: dict[str, Any]) -> PrinterStatus:
    """Conditions that make the printer report ``raw`` (offline kept only if unexplained)."""
    status = PrinterStatus.from_dict(raw)
    explained = status.cover_open or status.paper_end or status.paper_stopped or status.error
    explained = explained or bool(set(status.faults) - {"offline"})
    return replace(
        status,
        online=status.online or explained,
        paper_end=status.paper_end or status.paper_stopped,
        paper_stopped=False,
        error=status.error
        and not (
            status.cutter_error
            or status.unrecoverable_error
            or status.auto_recoverable_error
            or status.recoverable_error
        ),
    )


FaultHandler = Callable[[VirtualPrinter, Mapping[str, Any]], None]


def _set_flag(**flags: bool) -> FaultHandler:
    def handler(printer: VirtualPrinter, params: Mapping[str, Any]) -> None:
        on = _on(params)
        printer._conditions = replace(
            printer._conditions, **{k: on and v for k, v in flags.items()}
        )

    return handler


def _paper_out_after(printer: VirtualPrinter, params: Mapping[str, Any]) -> None:
    lines = int(params.get("lines", 1))
    if lines < 1:
        raise ValueError(f"paper_out_after_lines: lines={lines} must be at least 1")
    printer._paper_left = lines


def _cutter(printer: VirtualPrinter, params: Mapping[str, Any]) -> None:
    printer._cutter_armed = _on(params)


def _drawer(printer: VirtualPrinter, params: Mapping[str, Any]) -> None:
    printer._conditions = replace(printer._conditions, drawer_open=bool(params.get("open", True)))


def _unplug_after(printer: VirtualPrinter, params: Mapping[str, Any]) -> None:
    printer._unplug_after = printer.job_bytes_received + int(params.get("bytes", 1))


_FAULT_HANDLERS: dict[str, FaultHandler] = {
    "paper_near_end": _set_flag(paper_near_end=True),
    "paper_out": _set_flag(paper_end=True, paper_near_end=True),
    "paper_out_after_lines": _paper_out_after,
    "cover_open": _set_flag(cover_open=True),
    "cutter_error": _cutter,
    "unrecoverable": _set_flag(unrecoverable_error=True),
    "auto_recoverable": _set_flag(auto_recoverable_error=True),
    "drawer": _drawer,
    "unplug_after_bytes": _unplug_after,
    "clear": VirtualPrinter._fault_clear,
}
