"""A reprint prints every copy the sale's receipt has, and a receipt that fails part-way
says which copies were printed and which were not (issue 13 item 8).

Real engine, virtual printer over the in-process link, real back office on loopback.
"""

from __future__ import annotations

from pathlib import Path

from .lane import Lane, run_lane


def copies_in(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().endswith(" COPY")]


def test_a_reprint_prints_every_copy_not_just_the_customers(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.printer.apply_fault("paper_out")
        view = await lane.sale(1000)
        failed = lane.engine.get_sale(view.id)
        assert failed is not None and failed.receipt.state == "failed"
        assert "not printed: customer, merchant" in (failed.receipt.error or "")
        lane.printer.apply_fault("clear")
        before = len(lane.printer.receipts)
        reprinted = await lane.engine.reprint(view.id)
        assert reprinted.receipt.state == "printed"
        assert list(reprinted.receipt.copies) == ["customer", "merchant"]
        new = "\n".join(r.plain_text() for r in lane.printer.receipts[before:])
        assert copies_in(new) == ["CUSTOMER COPY", "MERCHANT COPY"]
        assert new.count("*** REPRINT ***") == 2

    run_lane(tmp_path, body)


def test_paper_ending_between_copies_says_which_copy_was_not_printed(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        first = lane.engine.get_sale((await lane.sale(1000)).id)
        assert first is not None and first.receipt.state == "printed"
        per_copy = lane.printer.lines_printed // 2
        lane.printer.apply_fault("paper_out_after_lines", lines=per_copy + 2)
        view = await lane.sale(1000)
        after = lane.engine.get_sale(view.id)
        assert after is not None and after.receipt.state == "failed"
        assert after.receipt.copies == ("customer",)
        assert "not printed: merchant" in (after.receipt.error or "")
        assert "printed: customer" in (after.receipt.error or "")

    run_lane(tmp_path, body)
