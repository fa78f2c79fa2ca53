"""Totals of real sales (sale engine, simulated reader and printer, reference back office)
against hand-computed expectations; the digest recomputed here from docs/close.md's rule."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from posedge.agent.close.closer import Closer
from posedge.agent.close.daemon import DaemonCloses
from posedge.agent.sales.model import SaleState
from posedge.backoffice.policy import AuthorizationPolicy

from ..sales.lane import Lane, lane_config, run_lane
from ..sales.test_engine import until

DAY1 = datetime(2026, 3, 28, 21, 0, tzinfo=UTC)


def digest_of(lines: list[dict[str, Any]]) -> str:
    """docs/close.md, written out independently of the code under test."""
    ordered = sorted(lines, key=lambda line: line["txn"])
    text = json.dumps(ordered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def line(view: Any, outcome: str, previous: str | None, last_seq: int) -> dict[str, Any]:
    return {
        "txn": view.id,
        "outcome": outcome,
        "previous_outcome": previous,
        "amount": view.amount,
        "currency": "EUR",
        "brand": view.brand,
        "entry_mode": view.entry_mode,
        "last_seq": last_seq,
    }


def last_seq(lane: Lane, txn: str, through: int) -> int:
    return max(e.seq for e in lane.journal.iter_events(0, through) if e.txn == txn)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_totals_lines_pending_and_digest_over_two_closes(tmp_path: Path) -> None:
    config = lane_config(sales={"in_doubt": "decline"}, close={"timezone": "Europe/Berlin"})
    clock = Clock(DAY1)

    async def body(lane: Lane) -> None:
        closer = Closer(lane.journal, lambda: config, terminal="lane-t",
                        printer=lambda: lane.engine.printer, clock=clock)  # fmt: skip
        closes = DaemonCloses(closer, lane.engine.printer_lock)
        kept = await lane.sale(1000)
        voided = await lane.sale(2000)
        assert kept.state == voided.state == SaleState.APPROVED
        assert (await lane.engine.void(voided.id)).state == SaleState.VOIDED
        await until(lambda: "reversal.acked" in lane.types(voided.id))
        lane.backoffice.config.policy = AuthorizationPolicy(decline_over=2000)
        declined = await lane.sale(2500)
        assert declined.state == SaleState.DECLINED
        lane.backoffice.config.policy = AuthorizationPolicy()
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        in_doubt = await lane.sale(1500)
        assert in_doubt.state == SaleState.REVERSED
        await until(lambda: "reversal.acked" in lane.types(in_doubt.id))
        lane.backoffice.stop()
        offline = await lane.sale(3000)
        assert offline.state == SaleState.APPROVED_OFFLINE and offline.forward_state == "pending"
        brand, entry = kept.brand, kept.entry_mode
        assert brand and entry

        first, printed = await closes.close(None, trigger="manual")
        close1 = first.payload
        assert printed.printed and "Z-REPORT" in lane.printer.plain_text()
        assert close1["business_day"] == "2026-03-28"
        assert close1["seq_from"] == 1 and close1["previous_close_seq"] is None
        assert close1["seq_to"] == first.seq - 1
        assert close1["totals"] == [
            {"currency": "EUR", "outcome": o, "brand": brand, "entry_mode": entry,
             "count": 1, "amount": a}
            for o, a in (("approved", 1000), ("declined", 2500), ("reversed", 1500),
                         ("voided", 2000))
        ]  # fmt: skip
        assert close1["pending_count"] == 1
        assert close1["pending"] == [
            {"txn": offline.id, "state": "approved_offline", "amount": 3000,
             "currency": "EUR", "previous_outcome": None}
        ]  # fmt: skip
        expected1 = [
            line(kept, "approved", None, last_seq(lane, kept.id, first.seq)),
            line(voided, "voided", None, last_seq(lane, voided.id, first.seq)),
            line(declined, "declined", None, last_seq(lane, declined.id, first.seq)),
            line(in_doubt, "reversed", None, last_seq(lane, in_doubt.id, first.seq)),
        ]
        assert close1["lines_count"] == 4
        assert close1["lines_digest"] == digest_of(expected1)
        assert sorted(closer.lines(first), key=lambda x: x["txn"]) == sorted(
            expected1, key=lambda x: x["txn"]
        )

        # After the close: the kept sale is voided, the offline one forwarded.
        assert (await lane.engine.void(kept.id)).state == SaleState.VOIDED
        lane.backoffice.start()
        lane.engine.forwards.wake()
        await until(lambda: "reversal.acked" in lane.types(kept.id))
        await until(lambda: lane.engine.get_sale(offline.id).forward_state == "approved")  # type: ignore[union-attr]
        await lane.settle()
        clock.now = DAY1 + timedelta(days=1)
        second, _ = await closes.close(None, trigger="manual")
        close2 = second.payload
        assert close2["business_day"] == "2026-03-29"
        assert close2["previous_close_seq"] == first.seq
        assert close2["seq_from"] == close1["seq_to"] + 1
        assert close2["totals"] == [
            {"currency": "EUR", "outcome": "forward_approved", "brand": brand,
             "entry_mode": entry, "count": 1, "amount": 3000},
            {"currency": "EUR", "outcome": "voided", "brand": brand, "entry_mode": entry,
             "count": 1, "amount": 1000},
        ]  # fmt: skip
        assert close2["pending_count"] == 0 and close2["pending"] == []
        expected2 = [
            line(offline, "forward_approved", None, last_seq(lane, offline.id, second.seq)),
            line(kept, "voided", "approved", last_seq(lane, kept.id, second.seq)),
        ]
        assert close2["lines_digest"] == digest_of(expected2)
        # Nothing counted twice: each sale in close 1 appears in close 2 only if it changed.
        assert {x["txn"] for x in closer.lines(second)} == {kept.id, offline.id}

    run_lane(tmp_path, body, config)


def test_a_close_with_nothing_new_has_no_lines_and_the_empty_digest(tmp_path: Path) -> None:
    config = lane_config()

    async def body(lane: Lane) -> None:
        closer = Closer(lane.journal, lambda: config, terminal="lane-t",
                        clock=Clock(DAY1))  # fmt: skip
        sale = await lane.sale(700)
        first = closer.close(None)
        assert first.payload["lines_count"] == 1
        again = closer.close(None, force=True)
        assert again.payload["forced"] is True
        assert again.payload["lines_count"] == 0 and again.payload["totals"] == []
        assert again.payload["lines_digest"] == digest_of([])
        assert again.payload["seq_from"] == first.payload["seq_to"] + 1
        assert sale.state == SaleState.APPROVED

    run_lane(tmp_path, body, config)
