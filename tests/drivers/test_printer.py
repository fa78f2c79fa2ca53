"""ReceiptPrinter against the VirtualPrinter over the in-process link, fault by fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from posedge.drivers import printer as printer_module
from posedge.drivers.errors import DeviceTimeout, DeviceUnplugged, ProtocolError
from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.escpos.model import Receipt, Text
from posedge.drivers.health import HealthLevel
from posedge.drivers.printer import PrinterNotReady
from posedge.drivers.statistics import DeviceStatistics

from .printer_fixtures import make_rig, sample_receipt


def test_status_of_a_healthy_printer() -> None:
    rig = make_rig()
    status = rig.printer.status()
    assert status.ready and status.online and status.faults == []


def test_prints_and_confirms() -> None:
    rig = make_rig()
    result = rig.printer.print_receipt(sample_receipt(4))
    assert result.ok and result.complete and not result.reprint_needed
    assert result.lines_printed == 5 and result.fault is None
    assert len(rig.device.receipts) == 1
    assert rig.device.receipts[0].elements == sample_receipt(4).elements
    assert rig.device.unknown == []


@pytest.mark.parametrize(
    ("fault", "expected", "counter"),
    [
        ("paper_out", "paper_end", "PaperOutCount"),
        ("cover_open", "cover_open", "ReceiptCoverOpenCount"),
        ("unrecoverable", "unrecoverable_error", "PrinterFaultCount"),
        ("auto_recoverable", "auto_recoverable_error", "PrinterFaultCount"),
    ],
)
def test_not_ready_refuses_with_exact_fault_and_sends_nothing(
    fault: str, expected: str, counter: str
) -> None:
    rig = make_rig()
    rig.device.apply_fault(fault)
    with pytest.raises(PrinterNotReady) as info:
        rig.printer.print_receipt(sample_receipt())
    assert info.value.faults[0] == expected
    assert info.value.status.faults[0] == expected
    assert "nothing was printed" in str(info.value) and "sim://printer" in str(info.value)
    assert rig.device.job_bytes_received == 0
    assert rig.device.receipts == [] and rig.device.lines_printed == 0
    assert rig.printer.stats.get(counter) == 1


def test_cover_open_message_says_what_to_do() -> None:
    rig = make_rig()
    rig.device.apply_fault("cover_open")
    with pytest.raises(PrinterNotReady, match="close the printer cover"):
        rig.printer.print_receipt(sample_receipt())


def test_cutter_error_is_reported_for_reprint() -> None:
    rig = make_rig()
    rig.device.apply_fault("cutter_error")
    result = rig.printer.print_receipt(sample_receipt(2))
    assert not result.ok and result.reprint_needed
    assert result.fault == "cutter_error" and result.status.cutter_error
    assert rig.device.failed_cuts == 1 and rig.device.receipts == []
    assert rig.printer.stats.get("FailedPaperCutCount") == 1
    assert rig.printer.stats.get("PrinterFaultCount") == 1
    assert rig.printer.stats.get("PaperCutCount") == 0


def test_recover_after_cutter_error() -> None:
    rig = make_rig()
    rig.device.apply_fault("cutter_error")
    rig.printer.print_receipt(sample_receipt(1))
    rig.device.apply_fault("cutter_error", on=False)
    rig.printer.recover(clear_buffer=True)
    assert rig.printer.status().ready
    assert rig.printer.print_receipt(sample_receipt(1)).ok


def test_paper_out_mid_job_is_reported_for_reprint() -> None:
    rig = make_rig()
    rig.device.apply_fault("paper_out_after_lines", lines=3)
    result = rig.printer.print_receipt(sample_receipt(6))
    assert not result.ok and not result.complete and result.reprint_needed
    assert result.fault == "paper_end" and result.lines_printed is None
    assert rig.device.lines_printed == 3 and rig.device.held_bytes > 0
    assert rig.printer.stats.get("PaperOutCount") == 1
    assert rig.printer.stats.get("ReceiptLinePrintedCount") == 0


def test_near_end_prints_with_a_warning() -> None:
    rig = make_rig()
    rig.device.apply_fault("paper_near_end")
    result = rig.printer.print_receipt(sample_receipt())
    assert result.ok and result.warnings == ["paper_near_end"]
    assert result.status.paper_near_end and len(rig.device.receipts) == 1


def test_no_response_is_a_timeout() -> None:
    rig = make_rig()
    rig.device.apply_fault("no_response")
    with pytest.raises(DeviceTimeout, match="no reply to DLE EOT 1"):
        rig.printer.status()
    with pytest.raises(DeviceTimeout):
        rig.printer.print_receipt(sample_receipt())
    assert rig.device.job_bytes_received == 0
    assert rig.printer.stats.get("CommunicationErrorCount") == 2


def test_garbage_reply_is_a_protocol_error_never_online() -> None:
    rig = make_rig()
    rig.device.apply_fault("garbage", hex="ff")
    with pytest.raises(ProtocolError, match="0xff does not match"):
        rig.printer.status()
    assert rig.printer.stats.get("CommunicationErrorCount") == 1
    assert rig.printer.status().ready  # the stale reply is flushed before the next poll


def test_stale_input_is_flushed_before_polling() -> None:
    rig = make_rig()
    rig.device.send(b"\x7e\x7e\x7e")  # valid-looking "everything wrong" bytes from earlier
    assert rig.printer.status().ready


def test_xon_xoff_between_replies_are_skipped() -> None:
    rig = make_rig()
    rig.device.apply_fault("garbage", hex="1311", repeat=True)
    assert rig.printer.status().ready


def test_split_and_slow_replies_are_handled() -> None:
    rig = make_rig(poll_timeout_s=1.0)
    rig.device.apply_fault("slow_response", delay_s=0.03)
    rig.device.apply_fault("split", chunk=1, gap_s=0.005)
    rig.device.apply_fault("garbage", hex="11", repeat=True)  # 2-byte replies, split in two
    result = rig.printer.print_receipt(sample_receipt())
    assert result.ok and result.complete


def test_completion_marker_arriving_during_a_status_poll_is_recognised() -> None:
    rig = make_rig(poll_timeout_s=1.0)
    rig.device.apply_fault("slow_response", delay_s=0.05)  # GS r reply later than one interval
    result = rig.printer.print_receipt(sample_receipt())
    assert result.complete and result.ok


def test_unplug_mid_job_raises_device_unplugged() -> None:
    rig = make_rig()
    rig.device.apply_fault("unplug_after_bytes", bytes=20)
    with pytest.raises(DeviceUnplugged) as info:
        rig.printer.print_receipt(sample_receipt())
    assert any("reprint" in note for note in getattr(info.value, "__notes__", []))
    assert rig.device.job_bytes_received == 20
    assert rig.printer.stats.get("CommunicationErrorCount") == 1


def test_replaced_characters_are_reported() -> None:
    rig = make_rig(code_page=CodePage.PC437)
    result = rig.printer.print_receipt(Receipt([Text("Total 5 €")]))
    assert result.ok and result.replaced == ("€",) and result.replaced_count == 1
    assert "replaced_characters:1" in result.warnings
    assert rig.device.plain_text() == "Total 5 ?"


def test_statistics_persist_and_reload(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.printer.print_receipt(sample_receipt(3))
    rig.printer.print_receipt(sample_receipt(3))
    rig.device.apply_fault("cover_open")
    with pytest.raises(PrinterNotReady):
        rig.printer.print_receipt(sample_receipt(3))
    reloaded = DeviceStatistics(tmp_path, "printer-test")
    assert reloaded.get("ReceiptLinePrintedCount") == 8
    assert reloaded.get("PaperCutCount") == 2
    assert reloaded.get("BarcodePrintedCount") == 4
    assert reloaded.get("ReceiptCoverOpenCount") == 1
    assert "HoursOnlineCount" in reloaded.snapshot()
    assert (tmp_path / "devices" / "printer-test.stats.json").exists()


# ---- health checks ------------------------------------------------------------
def test_internal_health_check() -> None:
    rig = make_rig()
    result = rig.printer.check_health(HealthLevel.INTERNAL)
    assert result.ok and result.text == "Internal HCheck: Successful"
    assert rig.device.job_bytes_received == 0
    rig.device.apply_fault("paper_out")
    result = rig.printer.check_health(HealthLevel.INTERNAL)
    assert not result.ok and result.text == "Internal HCheck: Not ready (paper_end)"
    assert result.details["status"]["paper_end"] is True


def test_internal_health_check_on_a_silent_printer_does_not_raise() -> None:
    rig = make_rig()
    rig.device.apply_fault("no_response")
    result = rig.printer.check_health(HealthLevel.INTERNAL)
    assert not result.ok and "DeviceTimeout" in result.text


def test_external_health_check_prints_the_test_receipt() -> None:
    rig = make_rig()
    result = rig.printer.check_health(HealthLevel.EXTERNAL)
    assert result.ok and result.text == "External HCheck: Successful"
    printed = rig.device.plain_text()
    assert "POSEDGE TEST" in printed and "[CODE128 POSEDGE-TEST]" in printed
    assert "[QR posedge test printer-test]" in printed and printed.endswith("--- cut ---")
    assert "Size 3x3" in printed and "€" in printed


def test_external_health_check_not_ready_prints_nothing() -> None:
    rig = make_rig()
    rig.device.apply_fault("cover_open")
    result = rig.printer.check_health(HealthLevel.EXTERNAL)
    assert not result.ok and "cover_open" in result.text
    assert rig.device.job_bytes_received == 0


@pytest.mark.parametrize(("answer", "ok"), [(True, True), (False, False)])
def test_interactive_health_check_asks_the_technician(answer: bool, ok: bool) -> None:
    rig = make_rig()
    questions: list[str] = []

    def confirm(question: str) -> bool:
        questions.append(question)
        return answer

    result = rig.printer.check_health(HealthLevel.INTERACTIVE, confirm=confirm)
    assert result.ok is ok and len(questions) == 1 and len(rig.device.receipts) == 1


def test_interactive_without_confirm_fails_without_printing() -> None:
    rig = make_rig()
    result = rig.printer.check_health(HealthLevel.INTERACTIVE)
    assert not result.ok and "technician" in result.text
    assert rig.device.job_bytes_received == 0


def test_test_receipt_builder() -> None:
    receipt = printer_module.test_receipt(device_id="lane-3", columns=32)
    assert receipt.cuts == 1 and receipt.barcodes == 2
    assert "-" * 32 in receipt.plain_text()
