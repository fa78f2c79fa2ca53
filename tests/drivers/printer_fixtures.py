"""Shared helpers for the printer tests: a driver wired to a VirtualPrinter in process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posedge.drivers.escpos.model import (
    Align,
    Barcode,
    Cut,
    Feed,
    QRCode,
    Receipt,
    Symbology,
    Text,
)
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.statistics import DeviceStatistics
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import VirtualPrinter

FAST = {"poll_timeout_s": 0.05, "job_timeout_s": 0.5, "status_interval_s": 0.01}


@dataclass
class Rig:
    device: VirtualPrinter
    transport: InProcessTransport
    printer: ReceiptPrinter


def make_rig(state_dir: Path | None = None, **options: Any) -> Rig:
    device = VirtualPrinter()
    transport = InProcessTransport(device, "sim://printer")
    stats = DeviceStatistics(state_dir, "printer-test")
    printer = ReceiptPrinter(
        transport, device_id="printer-test", statistics=stats, **{**FAST, **options}
    )
    return Rig(device, transport, printer)


def sample_receipt(lines: int = 5) -> Receipt:
    receipt = Receipt([Text("SHOP", bold=True, width=2, height=2, align=Align.CENTER)])
    for i in range(lines):
        receipt.add(Text(f"item {i:02d}        1.00"))
    receipt.add(Barcode(Symbology.CODE128, "TX-0001"))
    receipt.add(QRCode("https://example.test/r/1"))
    receipt.add(Feed(2))
    receipt.add(Cut())
    return receipt
