"""Background work that outlives a sale: reversals and store-and-forward.

:class:`ReversalQueue` repeats each reversal until the back office
acknowledges it, with capped full-jitter backoff, across restarts (the queue
is rebuilt from the journal at start). :class:`ForwardQueue` sends offline
approvals to the host when it is back, deletes the vaulted card data the
moment the outcome is known or the deadline passes, and raises an alert for
the merchant when a forwarded sale is declined.

Every step is journaled before it is acted on; an append that fails stops the
step (it is retried on the next turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..journal import JournalWriteError
from .authorizer import Authorizer
from .policy import Exposure
from .vault import CardVault, VaultError

log = logging.getLogger("posedge.sales")

BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 60.0


class Journaling(Protocol):
    def __call__(self, type_: str, payload: dict[str, Any], txn: str | None) -> None: ...


class _Queue:
    """A set of pending transaction ids worked by one asyncio task with backoff."""

    name = "queue"

    def __init__(self, *, on_progress: Callable[[], None] | None = None) -> None:
        self.pending: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0
        self._rng = random.Random()
        self.on_progress = on_progress or (lambda: None)

    def add(self, txn: str, info: dict[str, Any]) -> None:
        self.pending[txn] = info
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"posedge-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self.on_progress()
            if not self.pending:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)
                continue
            all_done = True
            for txn in list(self.pending):
                try:
                    done = await self._work(txn, self.pending[txn])
                except JournalWriteError as exc:
                    log.error("journal append failed; will retry", extra={"error": str(exc)})
                    done = False
                if done:
                    self.pending.pop(txn, None)
                else:
                    all_done = False
            if all_done:
                self._attempt = 0
                continue
            ceiling = min(BACKOFF_CAP_S, BACKOFF_INITIAL_S * 2 ** min(self._attempt, 16))
            self._attempt += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._rng.uniform(0, ceiling))

    async def _work(self, txn: str, info: dict[str, Any]) -> bool:
        raise NotImplementedError


class ReversalQueue(_Queue):
    name = "reversals"

    def __init__(
        self,
        authorizer: Callable[[], Authorizer | None],
        journal: Journaling,
        *,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(on_progress=on_progress)
        self._authorizer = authorizer
        self._journal = journal

    async def _work(self, txn: str, info: dict[str, Any]) -> bool:
        authorizer = self._authorizer()
        if authorizer is None:
            return False
        document = {
            "terminal": authorizer.terminal,
            "txn": txn,
            "amount": info["amount"],
            "currency": info["currency"],
            "reason": info.get("reason", "timeout waiting for response"),
        }
        had = await asyncio.to_thread(authorizer.reverse, document, txn)
        if had is None:
            return False
        self._journal("reversal.acked", {"had_authorization": had}, txn)
        return True


class ForwardQueue(_Queue):
    """Offline approvals waiting to be authorized by the host (``info``: amount, currency)."""

    name = "forwards"

    def __init__(
        self,
        authorizer: Callable[[], Authorizer | None],
        journal: Journaling,
        vault: CardVault,
        exposure: Exposure,
        *,
        alert: Callable[[str, str, str], Awaitable[None] | None],
        on_progress: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(on_progress=on_progress)
        self._authorizer = authorizer
        self._journal = journal
        self.vault = vault
        self.exposure = exposure
        self._alert = alert
        self._clock = clock

    def _finish(self, txn: str, info: dict[str, Any]) -> None:
        self.vault.delete(txn)
        self.exposure.remove(info["currency"], info["amount"])

    async def _work(self, txn: str, info: dict[str, Any]) -> bool:
        deadline = self.vault.expires_at(txn)
        if deadline is None or deadline <= self._clock():
            reason = (
                "card data missing from the vault"
                if deadline is None
                else "not forwarded before the forward-by deadline"
            )
            self._journal("forward.expired", {"reason": reason}, txn)
            self._finish(txn, info)
            await _maybe_await(self._alert("forward_expired", txn, reason))
            return True
        authorizer = self._authorizer()
        if authorizer is None:
            return False
        try:
            card = self.vault.get(txn)
        except VaultError as exc:
            self._journal("forward.expired", {"reason": f"vault entry unusable: {exc}"}, txn)
            self._finish(txn, info)
            await _maybe_await(self._alert("forward_expired", txn, "vault entry unusable"))
            return True
        if card is None:
            return False
        if not info.get("requested"):
            # The intent is journaled once; resends reuse the same Idempotency-Key.
            self._journal("forward.requested", {}, txn)
            info["requested"] = True
        document = {
            "terminal": authorizer.terminal,
            "txn": txn,
            "amount": info["amount"],
            "currency": info["currency"],
            "entry_mode": card.get("entry_mode", "swipe"),
            "card": {k: card[k] for k in ("pan", "expiry", "service_code") if k in card},
            "masked_pan": info.get("masked_pan"),
            "brand": info.get("brand"),
            "pan_token": info.get("pan_token"),
            "forwarded": True,
        }
        del card
        result = await asyncio.to_thread(authorizer.authorize, document, f"{txn}:forward")
        document.clear()
        if result.outcome == "approved":
            self._journal("forward.approved", {"auth_code": result.auth_code}, txn)
            self._finish(txn, info)
            return True
        if result.outcome == "declined":
            reason = result.reason or "declined by host"
            self._journal("forward.declined", {"reason": reason}, txn)
            self._finish(txn, info)
            await _maybe_await(self._alert("forward_declined", txn, reason))
            return True
        return False  # unavailable or unknown: resend later with the same key


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
