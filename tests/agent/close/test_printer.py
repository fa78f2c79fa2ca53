"""Printer faults never lose a close; the Z-report reprints later."""

from __future__ import annotations

from pathlib import Path

from .support import till, utc

NOW = utc("2026-03-29T12:00:00")


def test_out_of_paper_keeps_the_close_and_the_reprint_prints_it(tmp_path: Path) -> None:
    with till(tmp_path, NOW) as t:
        t.vprinter.apply_fault("paper_out")
        record = t.closer.close(None)
        outcome = t.closer.print_report(record)
        assert not outcome.printed and outcome.error
        assert t.types()[-3:] == ["day.closed", "zreport.printing", "zreport.failed"]
        failed = t.events("zreport.failed")[-1]
        assert failed["close_seq"] == record.seq and failed["reprint"] is False
        assert "Z-REPORT" not in t.vprinter.plain_text()

        t.vprinter.apply_fault("clear")  # paper loaded
        again = t.closer.print_report(t.closer.find(None), reprint=True)
        assert again.printed and again.error is None
        assert t.types()[-2:] == ["zreport.printing", "zreport.printed"]
        assert t.events("zreport.printed")[-1] == {"close_seq": record.seq, "reprint": True}
        text = t.vprinter.plain_text()
        assert "Z-REPORT" in text and "*** REPRINT ***" in text
        assert "2026-03-29" in text and f"#{record.seq}" in text
        digest = record.payload["lines_digest"].removeprefix("sha256:")
        assert digest[:8] in text and digest[-8:] in text
        assert t.types().count("day.closed") == 1


def test_no_printer_is_journaled_as_a_failed_print(tmp_path: Path) -> None:
    with till(tmp_path, NOW) as t:
        t.closer.printer = lambda: None
        record = t.closer.close(None)
        outcome = t.closer.print_report(record)
        assert outcome.error == "no printer configured"
        assert t.types()[-2:] == ["day.closed", "zreport.failed"]


def test_many_sales_in_flight_are_counted_and_the_listed_ones_capped(tmp_path: Path) -> None:
    """250 sales still waiting for a card: all counted as pending, 200 listed, and the
    payload stays within the journal's limit (the Z-report prints the count)."""
    with till(tmp_path, NOW) as t:
        for n in range(250):
            t.journal.append(
                "sale.created",
                {"amount": 100 + n, "currency": "EUR", "reference": f"r{n}", "online": "prefer",
                 "idempotency_key": f"k-{n}", "request_hash": f"{n:064x}"},
                txn=f"sale-{n:04d}-0123456789abcdef0123456789abcdef",
            )  # fmt: skip
        record = t.closer.close(None)
        assert record.payload["pending_count"] == 250 and len(record.payload["pending"]) == 200
        assert record.payload["pending"][0]["txn"].startswith("sale-0000")
        assert record.payload["lines_count"] == 0
        assert t.closer.print_report(record).printed
        assert "Pending (next close)" in t.vprinter.plain_text()
