"""The sale state machine against simulated devices and the real reference back office."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from posedge.agent.alerts import AlertBook
from posedge.agent.sales.model import (
    IdempotencyMismatch,
    ReaderBusy,
    SaleConflict,
    SaleRequest,
    SaleState,
)
from posedge.backoffice.policy import AuthorizationPolicy

from .lane import Lane, lane_config, run_lane

TEST_PAN = "4111111111111111"


def held_authorizations(lane: Lane, txn: str) -> list[dict[str, object]]:
    assert lane.backoffice.store is not None
    return [a for a in lane.backoffice.store.authorizations("lane-t") if a["txn"] == txn]


async def until(condition: object, timeout_s: float = 10.0) -> None:
    """Await a condition of the system under test (re-checked as the loop runs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_online_approval_journals_every_step_before_acting(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        view = await lane.sale(1234)
        assert view.state == SaleState.APPROVED and view.auth_code
        assert view.masked_pan == "411111******1111" and view.brand == "visa"
        final = lane.engine.get_sale(view.id)
        assert final is not None and final.receipt.state == "printed"
        assert lane.types(view.id) == [
            "sale.created", "card.read", "auth.requested", "auth.approved",
            "receipt.printing", "receipt.printed",
        ]  # fmt: skip
        assert len(lane.printer.receipts) == 2  # customer and merchant copies
        assert "APPROVED" in lane.printer.plain_text()
        auths = held_authorizations(lane, view.id)
        assert len(auths) == 1 and auths[0]["outcome"] == "approved"

    run_lane(tmp_path, body)


def test_decline_by_the_host(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.backoffice.config.policy = AuthorizationPolicy(decline_over=2000)
        view = await lane.sale(2500)
        assert view.state == SaleState.DECLINED and view.decline_reason
        assert len(lane.printer.receipts) == 1  # customer copy only

    run_lane(tmp_path, body)


def test_host_down_store_and_forward_then_forwarded(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        view = await lane.sale(3000, online="prefer")
        assert view.state == SaleState.APPROVED_OFFLINE and view.offline
        assert view.forward_state == "pending"
        assert lane.engine.exposure.as_dict()["EUR"] == {"count": 1, "amount": 3000}
        assert lane.engine.vault.txns() == [view.id]
        assert "OFFLINE" in lane.printer.plain_text()
        over = await lane.sale(6000)  # above the per-sale limit
        assert over.state == SaleState.DECLINED and "per sale" in (over.decline_reason or "")
        required = await lane.sale(100, online="require")
        assert required.state == SaleState.DECLINED
        lane.backoffice.start()
        lane.engine.forwards.wake()
        await until(lambda: lane.engine.get_sale(view.id).forward_state == "approved")  # type: ignore[union-attr]
        assert lane.engine.vault.txns() == []
        assert lane.engine.exposure.as_dict().get("EUR", {}).get("count", 0) == 0
        auths = held_authorizations(lane, view.id)
        assert [a["forwarded"] for a in auths] == [1]

    run_lane(tmp_path, body, start_backoffice=False)


def test_in_doubt_authorization_is_reversed_then_offline(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        view = await lane.sale(1500)
        assert view.state == SaleState.APPROVED_OFFLINE
        types = lane.types(view.id)
        assert types[:5] == ["sale.created", "card.read", "auth.requested", "auth.unknown",
                             "reversal.requested"]  # fmt: skip
        await until(lambda: "reversal.acked" in lane.types(view.id))
        await until(lambda: lane.engine.get_sale(view.id).forward_state == "approved")  # type: ignore[union-attr]
        auths = held_authorizations(lane, view.id)
        reversed_ = [a for a in auths if a["reversed_at"] is not None]
        live = [a for a in auths if a["reversed_at"] is None]
        assert len(reversed_) == 1 and len(live) == 1 and live[0]["forwarded"] == 1

    run_lane(tmp_path, body)


def test_in_doubt_with_decline_policy_ends_reversed(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        view = await lane.sale(1500)
        assert view.state == SaleState.REVERSED
        await until(lambda: "reversal.acked" in lane.types(view.id))
        assert lane.engine.vault.txns() == []

    run_lane(tmp_path, body, lane_config(sales={"in_doubt": "decline"}))


def test_idempotency_and_one_sale_per_reader(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.reader.apply_fault("no_card")
        request = SaleRequest(amount=700, currency="EUR", reference="r1")
        first = await lane.engine.create_sale("k1", request)
        again = await lane.engine.create_sale("k1", request)
        assert again.id == first.id
        with pytest.raises(IdempotencyMismatch):
            await lane.engine.create_sale("k1", SaleRequest(amount=701, currency="EUR",
                                                            reference="r1"))  # fmt: skip
        with pytest.raises(ReaderBusy):
            await lane.engine.create_sale("k2", request)
        cancelled = await lane.engine.cancel(first.id)
        assert cancelled.state == SaleState.CANCELLED
        await lane.settle()
        assert lane.types(first.id) == ["sale.created", "sale.cancelled"]

    run_lane(tmp_path, body)


def test_cancel_after_the_card_is_a_conflict(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        view = await lane.sale(900)
        with pytest.raises(SaleConflict, match="only a sale waiting for a card"):
            await lane.engine.cancel(view.id)

    run_lane(tmp_path, body)


def test_no_card_in_time_is_abandoned(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.reader.apply_fault("no_card")
        view = await lane.sale(800)
        assert view.state == SaleState.ABANDONED and "in time" in (view.decline_reason or "")

    run_lane(tmp_path, body, lane_config(reader={"swipe_timeout": "1s"}))


def test_void_right_after_approval_alerts_and_reverses(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        view = await lane.sale(1000)
        voided = await lane.engine.void(view.id)
        assert voided.state == SaleState.VOIDED
        alerts = [e for e in lane.journal.iter_events() if e.type == "alert.raised"]
        assert [a.payload["kind"] for a in alerts] == ["void_after_approval"]
        await until(lambda: "reversal.acked" in lane.types(view.id))
        assert (await lane.engine.void(view.id)).state == SaleState.VOIDED  # idempotent
        with pytest.raises(SaleConflict):
            await lane.engine.cancel(view.id)

    run_lane(tmp_path, body)


def test_paper_out_marks_the_receipt_failed_and_reprint_recovers(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        lane.printer.apply_fault("paper_out")
        view = await lane.sale(1000)
        after = lane.engine.get_sale(view.id)
        assert after is not None and after.state == SaleState.APPROVED
        assert after.receipt.state == "failed" and "paper" in (after.receipt.error or "")
        lane.printer.apply_fault("clear")
        reprinted = await lane.engine.reprint(view.id)
        assert reprinted.receipt.state == "printed"
        assert "REPRINT" in lane.printer.plain_text()

    run_lane(tmp_path, body)


def test_card_data_never_reaches_the_journal_or_back_office(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        await lane.sale(1000)
        lane.backoffice.stop()
        await lane.sale(1200)  # offline: the card sits in the vault, encrypted

    run_lane(tmp_path, body)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TEST_PAN.encode() not in path.read_bytes(), path


def test_recovery_drives_every_interrupted_sale_to_a_final_state(tmp_path: Path) -> None:
    """Sales left at each step (as a crash leaves them) are finished at start."""
    from posedge.agent.journal import Journal

    state = tmp_path / "state"
    with Journal.open(state) as jr:

        def created(txn: str, key: str) -> None:
            jr.append("sale.created", {"amount": 500, "currency": "EUR", "reference": "r",
                      "online": "prefer", "idempotency_key": key,
                      "request_hash": "h" + key}, txn=txn)  # fmt: skip

        created("s-waiting", "a")
        created("s-carded", "b")
        jr.append("card.read", {"masked_pan": "411111******1111", "entry_mode": "swipe"},
                  txn="s-carded")  # fmt: skip
        created("s-authorizing", "c")
        jr.append("card.read", {"masked_pan": "411111******1111"}, txn="s-authorizing")
        jr.append("auth.requested", {"amount": 500, "currency": "EUR"}, txn="s-authorizing")
        created("s-approved", "d")
        jr.append("auth.approved", {"auth_code": "A1", "receipt": "pending"}, txn="s-approved")

    async def body(lane: Lane) -> None:
        states = {t: lane.engine.get_sale(t).state for t in  # type: ignore[union-attr]
                  ("s-waiting", "s-carded", "s-authorizing", "s-approved")}  # fmt: skip
        assert states == {
            "s-waiting": SaleState.ABANDONED,
            "s-carded": SaleState.ABANDONED,
            "s-authorizing": SaleState.REVERSED,
            "s-approved": SaleState.APPROVED,
        }
        assert lane.engine.get_sale("s-approved").receipt.state == "printed"  # type: ignore[union-attr]
        assert lane.engine.status()["card_reads_not_completed"] == 1  # s-carded
        await until(lambda: "reversal.acked" in lane.types("s-authorizing"))
        assert not AlertBook(lane.journal).active()

    run_lane(tmp_path, body)


def test_a_failure_mid_sale_is_settled_at_once_not_left_hanging(tmp_path: Path) -> None:
    """The vault's directory is broken (a file where it should be): the offline approval
    cannot store its card; the sale must still end final (reversed) right away."""

    async def body(lane: Lane) -> None:
        first = await lane.sale(1000)
        assert first.state == SaleState.APPROVED_OFFLINE
        vault_dir = tmp_path / "state" / "vault"
        shutil.rmtree(vault_dir)
        vault_dir.write_text("not a directory")
        second = await lane.sale(1100)
        assert second.state == SaleState.REVERSED
        assert "internal error" in (second.decline_reason or "")
        assert lane.engine._active is None  # the reader is free for the next sale

    run_lane(tmp_path, body, start_backoffice=False)
