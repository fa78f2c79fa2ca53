"""Benchmark: driver CPU time per receipt vs that receipt's wire time at 9600 baud.

Prints a 40-line receipt with a CODE128 barcode and a QR code through
:class:`ReceiptPrinter` (status check, encode, write, GS r completion, final
status, statistics save) against a :class:`VirtualPrinter` over the in-process
link, and compares the CPU time (``time.process_time``) with the time the same
bytes take on a 9600 baud serial line (10 bits per byte), measured in the same
run. The simulator runs in the same process, so its share is measured
separately (feeding it the same bytes) and reported; nothing is subtracted
from the headline number. Target: driver CPU ≤ 1 % of wire time.

Run: ``.venv/bin/python benchmarks/bench_printer.py [--iterations N] [--json]``.
Not a pytest module; never touches real hardware.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from posedge.drivers.escpos import commands as cmd
from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.escpos.encoder import encode
from posedge.drivers.escpos.model import Barcode, Cut, Feed, QRCode, Receipt, Symbology, Text
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.statistics import DeviceStatistics
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import VirtualPrinter

BAUD = 9600
BITS_PER_BYTE = 10  # start + 8 data + stop
TARGET_RATIO = 0.01


def forty_line_receipt() -> Receipt:
    receipt = Receipt([Text("POSEDGE MARKET", bold=True, width=2, height=2)])
    for i in range(1, 39):
        receipt.add(Text(f"{i:2d} Article numéro {i:03d}      x1   {i * 1.25:7.2f} €"))
    receipt.add(Text("TOTAL                          1234,50 €", bold=True))
    receipt.add(Barcode(Symbology.CODE128, "TX-2026-000123"))
    receipt.add(QRCode("https://receipts.example/r/2026-000123?sig=abcdef0123456789"))
    receipt.add(Feed(3))
    receipt.add(Cut())
    return receipt


def status_bytes_per_job() -> tuple[int, int]:
    """Host→printer and printer→host bytes of the status traffic in one job."""
    polls = 2 * 4  # status before the job and after completion
    return polls * 3 + 3, polls + 1  # DLE EOT n each + GS r 1; one reply byte each


def measure(iterations: int) -> dict[str, float]:
    receipt = forty_line_receipt()
    job = encode(receipt, CodePage.PC858).data
    out_bytes, in_bytes = status_bytes_per_job()
    with tempfile.TemporaryDirectory() as state_dir:
        device = VirtualPrinter()
        stats = DeviceStatistics(Path(state_dir), "bench-printer")
        printer = ReceiptPrinter(InProcessTransport(device, "sim://printer"), statistics=stats)
        for _ in range(5):  # warm up
            assert printer.print_receipt(receipt).ok
        start = time.process_time()
        for _ in range(iterations):
            printer.print_receipt(receipt)
        total_s = (time.process_time() - start) / iterations

    start = time.process_time()
    for _ in range(iterations):
        encode(receipt, CodePage.PC858)
    encode_s = (time.process_time() - start) / iterations

    polls = b"".join(cmd.build("realtime_status", n) for n in (1, 2, 3, 4))
    start = time.process_time()
    for _ in range(iterations):
        sim = VirtualPrinter()
        sim.receive(polls)
        sim.receive(job + cmd.build("transmit_status", 1))
        sim.receive(polls)
        sim.clear_output()
    sim_s = (time.process_time() - start) / iterations

    wire_job_s = len(job) * BITS_PER_BYTE / BAUD
    wire_all_s = (len(job) + out_bytes + in_bytes) * BITS_PER_BYTE / BAUD
    return {
        "iterations": iterations,
        "job_bytes": len(job),
        "wire_time_job_s": wire_job_s,
        "wire_time_with_status_s": wire_all_s,
        "cpu_total_per_receipt_s": total_s,
        "cpu_encode_per_receipt_s": encode_s,
        "cpu_simulator_share_s": sim_s,
        "cpu_driver_estimate_s": max(0.0, total_s - sim_s),
        "ratio_total": total_s / wire_job_s,
        "ratio_driver_estimate": max(0.0, total_s - sim_s) / wire_job_s,
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    result = measure(args.iterations)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        ms = {k: v * 1e3 for k, v in result.items() if k.endswith("_s")}
        print(f"40-line receipt + CODE128 + QR: {result['job_bytes']:.0f} bytes")
        print(f"wire time at {BAUD} baud:          {ms['wire_time_job_s']:9.1f} ms")
        print(f"CPU per receipt (driver + sim):  {ms['cpu_total_per_receipt_s']:9.3f} ms")
        print(f"  of which encode:               {ms['cpu_encode_per_receipt_s']:9.3f} ms")
        print(f"  simulator share (separately):  {ms['cpu_simulator_share_s']:9.3f} ms")
        print(f"ratio (driver + sim) / wire:     {result['ratio_total'] * 100:9.3f} %")
        print(f"ratio (driver estimate) / wire:  {result['ratio_driver_estimate'] * 100:9.3f} %")
        verdict = "meets" if result["ratio_total"] <= TARGET_RATIO else "MISSES"
        print(f"target <= {TARGET_RATIO * 100:.0f} % of wire time: {verdict}")
    return 0 if result["ratio_total"] <= TARGET_RATIO else 3


if __name__ == "__main__":
    raise SystemExit(main())
