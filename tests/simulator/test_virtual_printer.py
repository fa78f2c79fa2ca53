"""The VirtualPrinter: decoding, status replies per state, faults, dumps, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.escpos.decoder import decode
from posedge.drivers.escpos.encoder import encode
from posedge.drivers.escpos.model import Align, Cut, DrawerKick, QRCode, Receipt, Text
from posedge.drivers.escpos.status import PrinterStatus, decode_asb
from posedge.drivers.printer import ReceiptPrinter
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import FAULT_NAMES, VirtualPrinter

ACCENTED = Receipt(
    [
        Text("Crème brûlée  4,50 €", bold=True),
        Text("Smørrebrød ÆØÅ", width=2, align=Align.CENTER),
        Text("Snowman ☃ costs extra"),  # ☃ is in no code page: printed as '?'
        QRCode("https://x.test/ça"),
        Cut(),
    ]
)


def realtime(printer: VirtualPrinter, n: int) -> int:
    printer.receive(bytes((0x10, 0x04, n)))
    reply = printer.take(1, 0.1)
    assert len(reply) == 1
    return reply[0]


def all_realtime(printer: VirtualPrinter) -> list[int]:
    return [realtime(printer, n) for n in (1, 2, 3, 4)]


# ---- round trip -------------------------------------------------------------
@pytest.mark.parametrize("page", [CodePage.PC858, CodePage.WPC1252])
def test_round_trip_through_the_virtual_printer(page: CodePage) -> None:
    device = VirtualPrinter()
    transport = InProcessTransport(device, "sim://printer")
    encoded = encode(ACCENTED, page)
    assert encoded.replaced == ("☃",)
    transport.write(encoded.data)
    assert len(device.receipts) == 1
    assert device.receipts[0].plain_text() == ACCENTED.plain_text(page)
    assert (
        "Crème brûlée  4,50 €" in device.plain_text() and "Snowman ? costs" in device.plain_text()
    )
    assert device.unknown == []


def test_round_trip_with_the_driver() -> None:
    device = VirtualPrinter()
    driver = ReceiptPrinter(InProcessTransport(device, "sim://printer"), code_page=CodePage.PC858)
    result = driver.print_receipt(ACCENTED)
    assert result.ok and result.replaced_count == 1
    assert device.plain_text() == ACCENTED.plain_text(CodePage.PC858)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=12))
def test_split_writes_decode_like_one_write(sizes: list[int]) -> None:
    data = encode(ACCENTED).data
    device = VirtualPrinter()
    start = 0
    for size in sizes:
        device.receive(data[start : start + size])
        start += size
    device.receive(data[start:])
    assert [r.elements for r in device.receipts] == [decode(data)[0]]
    assert device.plain_text() == ACCENTED.plain_text(CodePage.PC858)


def test_receipts_are_delimited_by_cuts() -> None:
    device = VirtualPrinter()
    device.receive(encode(Receipt([Text("one"), Cut(), Text("two"), Cut(), Text("three")])).data)
    assert [r.plain_text() for r in device.receipts] == ["one\n--- cut ---", "two\n--- cut ---"]
    assert device.current_receipt.elements == [Text("three")]
    assert device.plain_text().endswith("three")


def test_unknown_bytes_are_flagged() -> None:
    device = VirtualPrinter()
    device.receive(b"\x1b@ok\n\x1b\x99\x07more\n")
    assert [u.data for u in device.unknown] == [b"\x1b\x99", b"\x07"]
    assert device.plain_text() == "ok\nmore"


# ---- real-time status per state -------------------------------------------
@pytest.mark.parametrize(
    ("fault", "replies"),
    [
        (None, [0x12, 0x12, 0x12, 0x12]),
        ("paper_near_end", [0x12, 0x12, 0x12, 0x1E]),
        ("paper_out", [0x1A, 0x32, 0x12, 0x7E]),
        ("cover_open", [0x1A, 0x16, 0x12, 0x12]),
        ("unrecoverable", [0x1A, 0x52, 0x32, 0x12]),
        ("auto_recoverable", [0x1A, 0x52, 0x52, 0x12]),
    ],
)
def test_realtime_status_follows_the_state(fault: str | None, replies: list[int]) -> None:
    device = VirtualPrinter()
    if fault:
        device.apply_fault(fault)
    assert all_realtime(device) == replies
    device.apply_fault("clear")
    assert all_realtime(device) == [0x12] * 4


def test_cutter_error_shows_after_a_failed_cut() -> None:
    device = VirtualPrinter()
    device.apply_fault("cutter_error")
    assert all_realtime(device) == [0x12] * 4  # armed: the next cut fails
    device.receive(encode(Receipt([Text("x"), Cut(), Text("held")])).data)
    assert all_realtime(device) == [0x1A, 0x52, 0x1A, 0x12]
    assert device.failed_cuts == 1 and device.receipts == [] and device.held_bytes > 0
    device.receive(b"\x10\x05\x02")  # DLE ENQ 2: recover, clear buffers
    assert device.status.ready and device.held_bytes == 0


def test_realtime_command_split_across_writes_and_inside_a_job() -> None:
    device = VirtualPrinter()
    device.receive(b"ab\x10")
    device.receive(b"\x04")
    device.receive(b"\x04cd\n")
    assert device.take(1, 0.1) == b"\x12"
    assert device.plain_text() == "abcd" and device.job_bytes_received == 5


def test_offline_printer_holds_job_bytes_and_still_answers_status() -> None:
    device = VirtualPrinter()
    device.apply_fault("cover_open")
    device.receive(encode(Receipt([Text("later"), Cut()])).data + b"\x1dr\x01")
    assert device.receipts == [] and device.held_bytes > 0
    assert device.take(1, 0.01) == b""  # GS r is in buffer order: not answered offline
    assert realtime(device, 2) == 0x16
    device.apply_fault("clear")
    assert device.receipts[0].plain_text() == "later\n--- cut ---"
    assert device.take(1, 0.1) == b"\x00"  # now GS r 1 is answered


def test_paper_runs_out_after_n_lines() -> None:
    device = VirtualPrinter(paper_out_after_lines=2)
    device.receive(encode(Receipt([Text("1"), Text("2"), Text("3"), Cut()])).data)
    assert device.lines_printed == 2 and device.status.paper_end
    assert device.current_receipt.plain_text() == "1\n2"


def test_transmit_status_and_drawer() -> None:
    device = VirtualPrinter()
    device.receive(b"\x1dr\x01\x1dr\x02")
    assert device.take(2, 0.1) == b"\x00"
    assert device.take(2, 0.1) == b"\x00"
    device.receive(encode(Receipt([DrawerKick()])).data + b"\x1dr\x02")
    assert device.take(1, 0.1) == b"\x01" and device.status.drawer_open
    device.apply_fault("paper_near_end")
    device.receive(b"\x1dr\x01")
    assert device.take(1, 0.1) == b"\x03"


def test_automatic_status_back() -> None:
    device = VirtualPrinter()
    device.receive(b"\x1da\x0f")
    assert decode_asb(device.take(4, 0.1)) == PrinterStatus()
    device.apply_fault("cover_open")
    status = decode_asb(device.take(4, 0.1))
    assert status.cover_open and not status.online


def test_unplug_after_bytes() -> None:
    device = VirtualPrinter()
    device.apply_fault("unplug_after_bytes", bytes=3)
    device.receive(b"abcdef\n")
    assert not device.plugged and device.job_bytes_received == 3
    device.apply_fault("replug")
    assert device.plugged


def test_unknown_fault_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="paper_out_after_lines") as info:
        VirtualPrinter().apply_fault("on_fire")
    assert "no_response" in str(info.value)
    assert "paper_out" in FAULT_NAMES


# ---- dumps --------------------------------------------------------------------
def test_state_dump_round_trip() -> None:
    device = VirtualPrinter()
    device.apply_fault("paper_near_end")
    device.apply_fault("cutter_error")
    device.apply_fault("paper_out_after_lines", lines=7)
    dump = device.state_dump()
    assert dump["status"]["warnings"] == ["paper_near_end"]
    replay = VirtualPrinter.from_state(dump)
    assert replay.status == device.status
    assert replay.state_dump()["cutter_armed"] and replay.state_dump()["paper_out_after_lines"] == 7


@pytest.mark.parametrize(
    "status",
    [
        PrinterStatus(online=False, cover_open=True),
        PrinterStatus(online=False, paper_end=True, paper_near_end=True, paper_stopped=True),
        PrinterStatus(online=False, cutter_error=True, error=True),
        PrinterStatus(online=False),
        PrinterStatus(paper_near_end=True, drawer_open=True),
    ],
)
def test_technician_status_dump_replays_as_scenario(status: PrinterStatus) -> None:
    device = VirtualPrinter.from_state(status.as_dict())
    driver = ReceiptPrinter(InProcessTransport(device, "sim://printer"), poll_timeout_s=0.1)
    assert driver.status() == status
