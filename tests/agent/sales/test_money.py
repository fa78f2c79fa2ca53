"""Money at the back office equals the till's outcome: one regression test per mechanism
that broke it (issue 10), each against a real reference back office over loopback.

Every test ends on the invariant itself — the amount the back office holds as
captured for the sale (approved attempts not reversed) — plus "no reversal
pending" and "no refusal alert", not on the shape of the events.
"""

from __future__ import annotations

from pathlib import Path

from posedge.agent.sales.engine import SaleEngine
from posedge.agent.sales.model import SaleState
from posedge.protocol.idempotency import forward_attempt, online_attempt

from .lane import Lane, lane_config, run_lane
from .test_engine import held_authorizations, until

TERMINAL = "lane-t"


def captured(lane: Lane, txn: str) -> int:
    assert lane.backoffice.store is not None
    return lane.backoffice.store.captured(TERMINAL).get(txn, 0)


def refusal_alerts(lane: Lane) -> list[str]:
    return [kind for kind in lane.engine.alerts.active() if kind.startswith("request_refused")]


async def settled(lane: Lane, txn: str, timeout_s: float = 15.0) -> None:
    """Nothing left to do for the sale: no reversal pending, no forward outstanding."""

    def done() -> bool:
        view = lane.engine.get_sale(txn)
        return (
            view is not None
            and view.final
            and not lane.engine.reversals.pending_for(txn)
            and txn not in lane.engine.forwards
        )

    await until(done, timeout_s)


async def restart(lane: Lane) -> None:
    """A new engine on the same journal, vault and devices: what a process restart runs."""
    old = lane.engine
    await old.stop(5)
    lane.engine = SaleEngine(
        journal=old.journal, config=old.config, state_dir=old.vault.state_dir,
        reader=old.reader, printer=old.printer, authorizer=old.authorizer,
    )  # fmt: skip
    await lane.engine.start()


def test_void_after_an_in_doubt_sale_releases_the_forwarded_money(tmp_path: Path) -> None:
    """In doubt → reversed and approved offline → forwarded → voided: the void's reversal is
    a new operation on the forward attempt, not a replay of the timeout reversal."""

    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        view = await lane.sale(1500)
        assert view.state == SaleState.APPROVED_OFFLINE
        await settled(lane, view.id)
        assert lane.engine.get_sale(view.id).forward_state == "approved"  # type: ignore[union-attr]
        assert captured(lane, view.id) == 1500
        voided = await lane.engine.void(view.id)
        assert voided.state == SaleState.VOIDED
        await settled(lane, view.id)
        assert captured(lane, view.id) == 0
        assert refusal_alerts(lane) == []
        assert lane.types(view.id).count("reversal.acked") == 2

    run_lane(tmp_path, body)


def test_recovery_resends_the_journaled_reversal_not_one_rebuilt_from_the_sale(
    tmp_path: Path,
) -> None:
    """The timeout reversal's reply is lost, the sale is then voided, the agent restarts:
    the resend is the journaled body (reason "timeout…"), so the back office replays it."""

    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "reversals"})
        view = await lane.sale(1600)
        assert view.state == SaleState.APPROVED_OFFLINE
        assert lane.backoffice.store is not None
        await until(lambda: len(lane.backoffice.store.reversals(TERMINAL)) == 1)  # type: ignore[union-attr]
        await lane.engine.void(view.id)
        await restart(lane)
        lane.backoffice.faults.clear()
        await settled(lane, view.id)
        assert captured(lane, view.id) == 0
        assert refusal_alerts(lane) == []
        acked = [e.payload for e in lane.journal.iter_events()
                 if e.txn == view.id and e.type == "reversal.acked"]  # fmt: skip
        assert [a["attempt"] for a in acked] == [online_attempt(view.id)]

    run_lane(tmp_path, body)


def test_a_void_reverses_a_forward_that_is_in_flight(tmp_path: Path) -> None:
    async def body(lane: Lane) -> None:
        # The host is down (503): the sale is approved offline.
        lane.backoffice.faults.add({"kind": "status_503", "endpoint": "authorizations"})
        view = await lane.sale(1700)
        assert view.state == SaleState.APPROVED_OFFLINE
        # The host comes back slow: the forward leaves and is still in the network...
        lane.backoffice.faults.clear()
        lane.backoffice.faults.add({"kind": "latency", "endpoint": "authorizations",
                                    "latency_s": 0.6, "count": 1})  # fmt: skip
        lane.engine.forwards.wake()
        await until(lambda: lane.backoffice.faults.describe() == [])  # it has arrived
        assert "forward.approved" not in lane.types(view.id)
        # ...when the clerk voids the sale.
        await lane.engine.void(view.id)
        assert lane.engine.vault.txns() == []
        await settled(lane, view.id)
        # The delayed forward lands (or is refused: the reversal may have overtaken it).
        await until(
            lambda: any(a["state"] == "decided" for a in held_authorizations(lane, view.id))
        )
        assert captured(lane, view.id) == 0
        assert refusal_alerts(lane) == []
        assert lane.engine.get_sale(view.id).state == SaleState.VOIDED  # type: ignore[union-attr]

    run_lane(tmp_path, body)


def test_a_forward_waits_for_the_reversal_of_the_online_attempt(tmp_path: Path) -> None:
    """Unknown outcome → reversal and offline approval. The forward must not overtake the
    reversal: the merchant keeps the offline sale's money."""

    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "drop_reply", "endpoint": "authorizations",
                                    "count": 1})  # fmt: skip
        lane.backoffice.faults.add({"kind": "status_503", "endpoint": "reversals", "count": 3,
                                    "retry_after_s": 0})  # fmt: skip
        view = await lane.sale(1800)
        assert view.state == SaleState.APPROVED_OFFLINE
        # While the reversal is refused by the busy host, the forward stays home.
        await until(lambda: lane.backoffice.faults.describe() == [])
        assert "forward.requested" not in lane.types(view.id) or (
            "reversal.acked" in lane.types(view.id)
        )
        await settled(lane, view.id)
        types = lane.types(view.id)
        assert types.index("reversal.acked") < types.index("forward.requested")
        assert captured(lane, view.id) == 1800
        auths = {a["idem_key"]: a for a in held_authorizations(lane, view.id)}
        assert auths[forward_attempt(view.id)]["reversed_at"] is None

    run_lane(tmp_path, body)


def test_a_late_authorization_after_its_reversal_is_not_captured(tmp_path: Path) -> None:
    """The authorization is delayed in the network past the agent's timeout; the reversal
    overtakes it. Reversal wins: the late attempt is refused when it lands."""

    async def body(lane: Lane) -> None:
        lane.backoffice.faults.add({"kind": "latency", "endpoint": "authorizations",
                                    "latency_s": 1.6, "count": 1})  # fmt: skip
        view = await lane.sale(1900)
        assert view.state == SaleState.REVERSED
        await settled(lane, view.id)
        await until(
            lambda: any(a["state"] == "decided" for a in held_authorizations(lane, view.id))
        )
        (auth,) = held_authorizations(lane, view.id)
        assert auth["outcome"] == "declined"
        assert captured(lane, view.id) == 0

    run_lane(tmp_path, body, lane_config(sales={"in_doubt": "decline"}))


def test_a_refused_reversal_raises_an_alert_keeps_retrying_and_clears(tmp_path: Path) -> None:
    """Nothing retries forever in silence: a 401 on the void's reversal is an alert naming
    the sale and the status, visible in the status; once the token is fixed it goes
    through and the alert clears."""

    async def body(lane: Lane) -> None:
        view = await lane.sale(2100)
        assert view.state == SaleState.APPROVED
        lane.backoffice.config.tokens = {TERMINAL: "the-right-token"}  # the agent has none
        await lane.engine.void(view.id)
        kind = f"request_refused:{view.id}"
        await until(lambda: kind in lane.engine.alerts.active())
        alert = lane.engine.alerts.active()[kind]
        assert view.id in alert["detail"] and "401" in alert["detail"]
        assert kind in [a["kind"] for a in lane.engine.status()["alerts"]["active"]]
        assert lane.engine.reversals.pending_for(view.id)
        assert captured(lane, view.id) == 2100  # not released yet: the money is still held
        attempts_before = len(lane.backoffice.store.reversals(TERMINAL))  # type: ignore[union-attr]
        lane.client._http.headers["Authorization"] = "Bearer the-right-token"
        await settled(lane, view.id)
        assert captured(lane, view.id) == 0
        assert kind not in lane.engine.alerts.active()
        assert attempts_before == 0  # every refused try was refused before anything was stored

    run_lane(tmp_path, body, lane_config(sync={"permanent_retry": "0.2s"}))


def test_a_refused_authorization_is_not_a_decline(tmp_path: Path) -> None:
    """A 401 on the online attempt authorized nothing: the sale takes the unavailable path
    (approved offline here), an alert names it, and the forward goes through once the
    terminal's token is right — the merchant is paid."""

    async def body(lane: Lane) -> None:
        lane.backoffice.config.tokens = {TERMINAL: "the-right-token"}  # the agent has none
        view = await lane.sale(2200)
        assert view.state == SaleState.APPROVED_OFFLINE
        alert = lane.engine.alerts.active()["authorization_refused"]
        assert view.id in alert["detail"] and "401" in alert["detail"]
        await until(lambda: f"request_refused:{view.id}" in lane.engine.alerts.active())
        assert lane.engine.vault.txns() == [view.id]  # the card is kept for the forward
        lane.client._http.headers["Authorization"] = "Bearer the-right-token"
        await settled(lane, view.id)
        assert captured(lane, view.id) == 2200
        assert lane.engine.vault.txns() == []
        second = await lane.sale(2300)
        assert second.state == SaleState.APPROVED
        assert lane.engine.alerts.active() == {}

    run_lane(tmp_path, body, lane_config(sync={"permanent_retry": "0.2s"}))


def test_a_sale_without_an_amount_is_an_error_never_a_reversal_of_zero(tmp_path: Path) -> None:
    """A journal whose sale lost its amount (a bug, an edit): recovery owes a reversal but
    must not invent one of 0; it raises an alert for a person instead."""

    async def body(lane: Lane) -> None:
        txn = "s-noamount"
        lane.journal.append("sale.created", {"currency": "EUR", "request_hash": "h",
                                             "idempotency_key": "k-noamount"}, txn=txn)  # fmt: skip
        lane.journal.append("auth.requested", {"attempt": online_attempt(txn)}, txn=txn)
        await restart(lane)
        assert "reversal.requested" not in lane.types(txn)
        assert not lane.engine.reversals.pending_for(txn)
        alert = lane.engine.alerts.active()[f"reversal_without_amount:{txn}"]
        assert online_attempt(txn) in alert["detail"]
        assert lane.backoffice.store is not None
        assert lane.backoffice.store.reversals(TERMINAL) == []

    run_lane(tmp_path, body)
