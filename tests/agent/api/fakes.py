"""An in-memory SalesEngine for the API tests: simple state moves, every call recorded.

It is loop-agnostic (waiters are futures of whichever loop awaits them, woken
with call_soon_threadsafe), so a test can drive it from another thread while
uvicorn serves the API in a background loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from typing import Any

from posedge.agent.sales.model import (
    IdempotencyMismatch,
    NotAccepting,
    ReaderBusy,
    ReceiptInfo,
    SaleConflict,
    SaleNotFound,
    SaleRequest,
    SaleState,
    SaleView,
)

NOW = "2025-01-01T00:00:00+00:00"


class FakeEngine:
    def __init__(self, one_at_a_time: bool = True) -> None:
        self.one_at_a_time = one_at_a_time
        self.reset()

    def reset(self) -> None:
        """Forget every sale and call (the shared server's engine is reset per test)."""
        self.accepting = True
        self.explode: Exception | None = None
        """Raised by every call when set (the 500 path)."""
        self.calls: list[tuple[str, Any]] = []
        self.sales: dict[str, SaleView] = {}
        self._keys: dict[str, tuple[SaleRequest, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], str]] = []
        self.wait_started = threading.Event()
        """Set each time a wait_sale call starts waiting (tests clear it)."""

    # -- test controls ------------------------------------------------------------------

    def set_state(self, sale_id: str, state: SaleState, **changes: Any) -> SaleView:
        """Move a sale (from any thread) and wake its long-polls."""
        with self._lock:
            view = dataclasses.replace(self.sales[sale_id], state=state, **changes)
            self.sales[sale_id] = view
            waiters = [w for w in self._waiters if w[2] == sale_id]
        for loop, future, _ in waiters:
            loop.call_soon_threadsafe(_resolve, future)
        return view

    def mutating_calls(self) -> list[tuple[str, Any]]:
        return [c for c in self.calls if c[0] not in ("get_sale", "status")]

    # -- the protocol -------------------------------------------------------------------

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.explode is not None:
            raise self.explode

    async def create_sale(self, idempotency_key: str, request: SaleRequest) -> SaleView:
        self._record("create_sale", idempotency_key, request)
        if not self.accepting:
            raise NotAccepting("the agent is stopping")
        with self._lock:
            if idempotency_key in self._keys:
                first, sale_id = self._keys[idempotency_key]
                if first != request:
                    raise IdempotencyMismatch(
                        "Idempotency-Key was first used with a different body"
                    )
                return self.sales[sale_id]
            if self.one_at_a_time and any(not v.final for v in self.sales.values()):
                raise ReaderBusy("the card reader serves another sale")
            sale_id = f"sale-{next(self._ids)}"
            view = SaleView(
                id=sale_id,
                state=SaleState.CREATED,
                amount=request.amount,
                currency=request.currency,
                reference=request.reference,
                online=request.online,
                created_at=NOW,
                updated_at=NOW,
            )
            self.sales[sale_id] = view
            self._keys[idempotency_key] = (request, sale_id)
            return view

    def get_sale(self, sale_id: str) -> SaleView | None:
        self._record("get_sale", sale_id)
        return self.sales.get(sale_id)

    async def wait_sale(self, sale_id: str, timeout_s: float) -> SaleView | None:
        self._record("wait_sale", sale_id, timeout_s)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (asyncio.get_running_loop(), future, sale_id)
        with self._lock:
            view = self.sales.get(sale_id)
            if view is None or view.final:
                return view
            self._waiters.append(entry)
        self.wait_started.set()
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.remove(entry)
        return self.sales.get(sale_id)

    def _require(self, sale_id: str) -> SaleView:
        view = self.sales.get(sale_id)
        if view is None:
            raise SaleNotFound("no sale with this id")
        return view

    async def cancel(self, sale_id: str) -> SaleView:
        self._record("cancel", sale_id)
        if self._require(sale_id).state is not SaleState.CREATED:
            raise SaleConflict("a card was read already; void the sale after approval")
        return self.set_state(sale_id, SaleState.CANCELLED)

    async def void(self, sale_id: str) -> SaleView:
        self._record("void", sale_id)
        state = self._require(sale_id).state
        if state not in (SaleState.APPROVED, SaleState.APPROVED_OFFLINE):
            raise SaleConflict("only an approved sale can be voided")
        return self.set_state(sale_id, SaleState.VOIDED)

    async def reprint(self, sale_id: str) -> SaleView:
        self._record("reprint", sale_id)
        if not self._require(sale_id).final:
            raise SaleConflict("the sale is not final yet")
        receipt = ReceiptInfo(state="printed", copies=("customer", "merchant"))
        return self.set_state(sale_id, self.sales[sale_id].state, receipt=receipt)

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {
            "devices": {"reader": "ready", "printer": "ready"},
            "network": "online",
            "offline_exposure": {"EUR": 0},
            "backlog": 0,
            "in_doubt": 0,
            "alerts": [],
        }


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
