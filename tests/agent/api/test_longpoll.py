"""Long-polling: early return when the sale becomes final, the live view after the wait, drain."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from posedge.agent.api import ApiServer, create_app
from posedge.agent.sales.model import SaleState

from .conftest import AUTH, CURRENCIES, TOKEN
from .fakes import FakeEngine
from .test_endpoints import SALE

LONG_WAIT_S = 30


def test_returns_as_soon_as_the_sale_is_final(
    api: object, client: httpx.Client, engine: FakeEngine
) -> None:
    sale_id = client.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "k"}).json()["id"]
    engine.wait_started.clear()

    def approve_once_waiting() -> None:
        assert engine.wait_started.wait(10)
        engine.set_state(sale_id, SaleState.APPROVED, auth_code="OK1234")

    driver = threading.Thread(target=approve_once_waiting)
    driver.start()
    started = time.monotonic()
    reply = client.get(f"/v1/sales/{sale_id}", params={"wait": LONG_WAIT_S})
    elapsed = time.monotonic() - started
    driver.join(10)
    assert reply.status_code == 200
    assert reply.json()["state"] == "approved" and reply.json()["final"] is True
    assert elapsed < LONG_WAIT_S / 3
    assert ("wait_sale", (sale_id, float(LONG_WAIT_S))) in engine.calls


def test_answers_the_non_final_view_when_the_wait_ends(client: httpx.Client) -> None:
    sale_id = client.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "k"}).json()["id"]
    started = time.monotonic()
    reply = client.get(f"/v1/sales/{sale_id}", params={"wait": "0.3"})
    assert time.monotonic() - started >= 0.25
    assert reply.status_code == 200 and reply.json()["state"] == "created"
    assert reply.json()["final"] is False


def test_final_sale_and_wait_zero_do_not_wait(client: httpx.Client, engine: FakeEngine) -> None:
    sale_id = client.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "k"}).json()["id"]
    assert client.get(f"/v1/sales/{sale_id}", params={"wait": "0"}).json()["state"] == "created"
    engine.set_state(sale_id, SaleState.DECLINED, decline_reason="insufficient funds")
    reply = client.get(f"/v1/sales/{sale_id}", params={"wait": LONG_WAIT_S})
    assert reply.json()["decline_reason"] == "insufficient funds"
    assert not [c for c in engine.calls if c[0] == "wait_sale"]


def test_inside_one_event_loop_with_a_task_driving_the_engine(tmp_path: Path) -> None:
    """The daemon's shape: server, engine and client share one loop; stop() drains polls."""

    async def scenario() -> None:
        engine = FakeEngine()
        app = create_app(engine, token=TOKEN, currencies=CURRENCIES)
        server = ApiServer(app, tmp_path / "api.sock")
        await server.start()
        transport = httpx.AsyncHTTPTransport(uds=str(tmp_path / "api.sock"))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://till", headers=AUTH, timeout=10
        ) as client:
            created = await client.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "a"})
            sale_id = created.json()["id"]

            async def approve_when_polled() -> None:
                await asyncio.to_thread(engine.wait_started.wait, 10)
                engine.set_state(sale_id, SaleState.APPROVED_OFFLINE, offline=True)

            driver = asyncio.create_task(approve_when_polled())
            reply = await client.get(f"/v1/sales/{sale_id}", params={"wait": LONG_WAIT_S})
            await driver
            assert reply.json()["state"] == "approved_offline"

            engine.set_state(sale_id, SaleState.APPROVED)
            engine.reset()
            second = await client.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "b"})
            poll = asyncio.create_task(
                client.get(f"/v1/sales/{second.json()['id']}", params={"wait": LONG_WAIT_S})
            )
            await asyncio.to_thread(engine.wait_started.wait, 10)
            started = time.monotonic()
            await server.stop()
            drained = await poll
            assert time.monotonic() - started < 5
            assert drained.status_code == 200 and drained.json()["state"] == "created"
        assert not (tmp_path / "api.sock").exists()

    asyncio.run(scenario())
