"""A whole lane for engine tests: journal, simulated devices, a real back office."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posedge.agent.cardtokens import pan_token_key
from posedge.agent.config import Config
from posedge.agent.journal import Journal
from posedge.agent.sales.authorizer import Authorizer
from posedge.agent.sales.engine import SaleEngine
from posedge.agent.sales.model import SaleRequest, SaleView
from posedge.agent.sync import BackofficeClient
from posedge.drivers.cardreader import CardReader
from posedge.drivers.printer import ReceiptPrinter
from posedge.simulator.backoffice import BackofficeServer
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import VirtualPrinter
from posedge.simulator.reader import VirtualReader

FAST_SYNC = {"backoff_initial": "20ms", "backoff_cap": "100ms", "connect_timeout": "1s"}


def lane_config(**sections: dict[str, Any]) -> Config:
    base: dict[str, Any] = {
        "terminal": {"id": "lane-t"},
        "sync": dict(FAST_SYNC),
        "reader": {"swipe_timeout": "5s"},
        "sales": {"authorization_timeout": "1s"},
        "offline": {"max_per_sale": {"EUR": 5000}, "max_total": {"EUR": 8000}},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Config.model_validate(base)


@dataclass
class Lane:
    engine: SaleEngine
    journal: Journal
    printer: VirtualPrinter
    reader: VirtualReader
    backoffice: BackofficeServer
    client: BackofficeClient

    async def sale(self, amount: int = 1234, key: str | None = None, **fields: Any) -> SaleView:
        """Create a sale and wait until it is final."""
        request = SaleRequest(amount=amount, currency=fields.pop("currency", "EUR"),
                              reference=fields.pop("reference", "ref"), **fields)  # fmt: skip
        view = await self.engine.create_sale(key or f"key-{uuid.uuid4().hex}", request)
        final = await self.engine.wait_sale(view.id, 10)
        assert final is not None and final.final, final
        await self.settle()
        return final

    async def settle(self) -> None:
        """Let the sale task finish its receipts (it runs after the final state)."""
        tasks = set(self.engine.sale_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def types(self, txn: str) -> list[str]:
        return [e.type for e in self.journal.iter_events() if e.txn == txn]


def run_lane(
    tmp_path: Path,
    body: Callable[[Lane], Awaitable[None]],
    config: Config | None = None,
    *,
    card_delay_s: float = 0.0,
    start_backoffice: bool = True,
) -> None:
    """Build a lane, run ``body`` in an event loop, tear everything down."""

    async def main() -> None:
        cfg = config or lane_config()
        state = tmp_path / "state"
        journal = Journal.open(state)
        vprinter = VirtualPrinter()
        vreader = VirtualReader("magtek", auto_present=True, auto_present_delay_s=card_delay_s)
        backoffice = BackofficeServer(tmp_path / "bo.sqlite3")
        if start_backoffice:
            backoffice.start()
        else:
            backoffice.start()
            backoffice.stop()
        client = BackofficeClient(backoffice.url, "lane-t", cfg.sync)
        printer = ReceiptPrinter(InProcessTransport(vprinter, "sim://printer"))
        reader = CardReader(InProcessTransport(vreader, "sim://reader"),
                            token_key=pan_token_key())  # fmt: skip
        engine = SaleEngine(
            journal=journal, config=cfg, state_dir=state, reader=reader, printer=printer,
            authorizer=Authorizer(client, 1.0),
        )  # fmt: skip
        lane = Lane(engine, journal, vprinter, vreader, backoffice, client)
        await engine.start()
        try:
            await body(lane)
        finally:
            await engine.stop(5)
            vreader.close()
            client.close()
            backoffice.close()
            journal.close()

    asyncio.run(main())
