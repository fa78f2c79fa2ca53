"""The printer driver test matrix: every fault × every transport (issue 3).

The same :class:`ReceiptPrinter` tests run against a :class:`VirtualPrinter`
reached over a pseudo-terminal (real pyserial), TCP (pyserial ``socket://``),
the pyusb backend (real pyusb over :class:`SimUsbBackend`) and in process
(``sim://``). Links come from :func:`tests.drivers.transport_fixtures.link_opener`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from posedge.drivers.errors import DeviceTimeout, DeviceUnplugged, ProtocolError
from posedge.drivers.escpos.model import Receipt
from posedge.drivers.printer import PrinterNotReady, ReceiptPrinter
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.reconnect import ReconnectingTransport
from posedge.simulator.printer import VirtualPrinter
from tests.drivers.printer_fixtures import sample_receipt
from tests.drivers.transport_fixtures import LINK_KINDS, Opener, link_opener

POLL_TIMEOUT_S = 0.25
JOB_TIMEOUT_S = 2.0


@dataclass
class Rig:
    kind: str
    device: VirtualPrinter
    transport: Transport
    printer: ReceiptPrinter


def _printer(transport: Transport) -> ReceiptPrinter:
    return ReceiptPrinter(
        transport,
        device_id="matrix",
        poll_timeout_s=POLL_TIMEOUT_S,
        job_timeout_s=JOB_TIMEOUT_S,
        status_interval_s=0.02,
    )


@pytest.fixture(params=LINK_KINDS)
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make_rig(reconnect=False)``: a printer driver wired to a fresh VirtualPrinter."""
    kind: str = request.param
    with ExitStack() as stack:

        def make(*, reconnect: bool = False) -> Rig:
            device = VirtualPrinter()
            opener: Opener = stack.enter_context(link_opener(kind, device, tmp_path))
            transport: Transport
            if reconnect:
                transport = ReconnectingTransport(
                    opener, f"{kind}://matrix", initial_backoff_s=0.01, max_backoff_s=0.05
                )
            else:
                transport = opener()
            stack.callback(transport.close)
            return Rig(kind, device, transport, _printer(transport))

        yield make


def test_ready_printer_prints_and_confirms(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    receipt = sample_receipt(6)
    result = rig.printer.print_receipt(receipt)
    assert result.ok and result.complete and result.fault is None and result.warnings == []
    assert rig.device.wait_for_receipts(1, 1.0)
    assert rig.device.receipts[0].elements == receipt.elements
    assert rig.device.plain_text() == receipt.plain_text()
    assert rig.device.unknown == []


def test_paper_near_end_prints_with_a_warning(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("paper_near_end")
    result = rig.printer.print_receipt(sample_receipt())
    assert result.ok and result.warnings == ["paper_near_end"]
    assert len(rig.device.receipts) == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("paper_out", "paper_end"),
        ("cover_open", "cover_open"),
        ("unrecoverable", "unrecoverable_error"),
        ("auto_recoverable", "auto_recoverable_error"),
    ],
)
def test_not_ready_is_refused_and_nothing_is_sent(
    make_rig: Callable[..., Rig], fault: str, expected: str
) -> None:
    rig = make_rig()
    rig.device.apply_fault(fault)
    with pytest.raises(PrinterNotReady) as info:
        rig.printer.print_receipt(sample_receipt())
    assert info.value.faults == [expected]
    assert rig.device.job_bytes_received == 0
    assert rig.device.receipts == [] and rig.device.lines_printed == 0


def test_cutter_error_needs_a_reprint(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("cutter_error")
    result = rig.printer.print_receipt(sample_receipt(2))
    assert not result.ok and result.reprint_needed and result.fault == "cutter_error"
    assert rig.device.failed_cuts == 1 and rig.device.receipts == []


def test_paper_out_mid_job_needs_a_reprint(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("paper_out_after_lines", lines=3)
    result = rig.printer.print_receipt(sample_receipt(8))
    assert not result.ok and result.reprint_needed and result.fault == "paper_end"
    assert result.lines_printed is None
    assert rig.device.lines_printed == 3 and rig.device.held_bytes > 0


def test_no_response_is_a_timeout_and_nothing_is_sent(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("no_response")
    with pytest.raises(DeviceTimeout, match="DLE EOT 1"):
        rig.printer.print_receipt(sample_receipt())
    assert rig.device.job_bytes_received == 0
    assert rig.printer.stats.get("CommunicationErrorCount") == 1


def test_slow_response_within_the_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("slow_response", delay_s=0.03)  # every reply, GS r included
    result = rig.printer.print_receipt(sample_receipt())
    assert result.ok and result.complete


def test_slow_response_beyond_the_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("slow_response", delay_s=POLL_TIMEOUT_S * 2)
    with pytest.raises(DeviceTimeout):
        rig.printer.status()


def test_garbage_reply_is_a_protocol_error_then_flushed(make_rig: Callable[..., Rig]) -> None:
    # Driver design: an invalid status byte is a ProtocolError, never "online";
    # the next poll flushes the stale bytes first and succeeds.
    rig = make_rig()
    rig.device.apply_fault("garbage", hex="ff")
    with pytest.raises(ProtocolError, match="0xff"):
        rig.printer.status()
    assert rig.printer.status().ready
    assert rig.printer.print_receipt(sample_receipt()).ok


def test_flow_control_bytes_in_replies_are_tolerated(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("garbage", hex="1311", repeat=True)  # XOFF/XON before every reply
    assert rig.printer.print_receipt(sample_receipt()).ok


def test_split_replies(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.device.apply_fault("garbage", hex="11", repeat=True)  # two-byte replies...
    rig.device.apply_fault("split", chunk=1, gap_s=0.005)  # ...delivered one byte at a time
    result = rig.printer.print_receipt(sample_receipt())
    assert result.ok and result.complete


def test_unplug_mid_job_then_replug_recovers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(reconnect=True)
    assert isinstance(rig.transport, ReconnectingTransport)
    rig.device.apply_fault("unplug_after_bytes", bytes=40)
    with pytest.raises(DeviceUnplugged) as info:
        rig.printer.print_receipt(sample_receipt())
    assert any("reprint" in note for note in getattr(info.value, "__notes__", []))
    assert rig.device.job_bytes_received == 40 and not rig.device.plugged
    assert not rig.transport.connected
    with pytest.raises(DeviceUnplugged):
        rig.printer.status()  # fails fast while the device is away

    rig.device.replug()
    assert rig.transport.wait_connected(3.0)
    assert rig.transport.reconnects == 1
    rig.printer.recover(clear_buffer=True)  # drop the half job before the reprint
    receipt = sample_receipt(3)
    result = rig.printer.print_receipt(receipt)
    assert result.ok and result.complete
    assert rig.device.wait_for_receipts(1, 1.0)
    assert rig.device.receipts[-1].plain_text().endswith(receipt.plain_text())


def test_device_absent_at_start_is_found_when_plugged(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(reconnect=True)
    assert isinstance(rig.transport, ReconnectingTransport)
    rig.device.unplug()
    with pytest.raises(DeviceUnplugged):
        rig.printer.status()
    rig.device.replug()
    assert rig.transport.wait_connected(3.0)
    assert rig.printer.status().ready


@pytest.mark.parametrize("make_rig", ["usb"], indirect=True)
def test_round_trip_over_usb(make_rig: Callable[..., Rig]) -> None:
    """Receipt model → ESC/POS bytes → VirtualPrinter through real pyusb → the same text."""
    rig = make_rig()
    assert type(rig.transport).__name__ == "UsbTransport"
    receipt: Receipt = rig.printer.test_receipt()
    result = rig.printer.print_receipt(receipt)
    assert result.ok and result.complete and result.replaced == ()
    assert rig.device.wait_for_receipts(1, 1.0)
    assert rig.device.receipts[0].elements == receipt.elements
    assert rig.device.plain_text() == receipt.plain_text()
    assert rig.device.unknown == []
