"""Background work that outlives a sale: reversals and store-and-forward.

:class:`ReversalQueue` repeats each journaled reversal (one per attempt,
docs/sync-protocol.md) until the back office acknowledges it, across
restarts (the engine rebuilds the queue from the journal at start).
:class:`ForwardQueue` sends offline approvals to the host when it is back —
but a sale's forward only once no reversal of that sale is pending — deletes
the vaulted card data the moment the outcome is known or the deadline passes,
and raises an alert for the merchant when a forwarded sale is declined.

Every request is journaled before it leaves and every resend is that
journaled body. Each item has its own retry time, from the same tenacity
wait policy as event sync (:class:`~posedge.agent.sync.retry.wait_retry_after_or_jitter`):
full-jitter exponential backoff, ``Retry-After`` (capped) when the server
sent one, and the slow ``sync.permanent_retry`` pace for a request the back
office refused — which also raises an alert naming the sale, the status and
its likely cause, cleared when the request finally goes through. Nothing is
retried forever in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tenacity import Future, RetryCallState
from tenacity.wait import wait_base

from ..alerts import AlertBook
from ..config import SyncConfig
from ..journal import JournalWriteError
from ..sync.errors import SyncError
from ..sync.retry import wait_retry_after_or_jitter
from .authorizer import Authorizer, authorization_request, refusal_cause
from .policy import Exposure
from .vault import CardVault, VaultError

log = logging.getLogger("posedge.sales")

IDLE_WAKE_S = 5.0
"""Longest sleep with nothing due (the watchdog beat)."""
BLOCKED_RECHECK_S = 1.0
"""A forward waiting for its sale's reversal looks again this often (and on every ack)."""
REFUSED_ALERT_PREFIX = "request_refused:"
NO_BACKOFFICE = SyncError("no back office is configured (sync.url)")


class Journaling(Protocol):
    def __call__(self, type_: str, payload: dict[str, Any], txn: str | None) -> None: ...


class RetryPolicy:
    """When to try an item again: the event sync's tenacity wait policy, per item."""

    def __init__(self, wait: wait_base | None = None) -> None:
        self.wait = wait or wait_retry_after_or_jitter(0.5, 60.0, 600.0, 900.0)

    @classmethod
    def from_sync(cls, sync: SyncConfig) -> RetryPolicy:
        return cls(
            wait_retry_after_or_jitter(
                sync.seconds("backoff_initial"),
                sync.seconds("backoff_cap"),
                sync.seconds("retry_after_cap"),
                sync.seconds("permanent_retry"),
            )
        )

    def delay(self, attempt: int, error: BaseException) -> float:
        """Seconds before try ``attempt + 1`` after try ``attempt`` failed with ``error``."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        outcome = Future(attempt)
        outcome.set_exception(error)
        state.outcome = outcome
        return float(self.wait(state))


@dataclass(frozen=True)
class Retry:
    """The item is not done: try again later."""

    error: SyncError | None = None
    """Why (decides the wait); None: the fixed ``after_s``."""
    after_s: float = 0.0


class RefusalAlerts:
    """One active alert per sale whose request the back office refuses."""

    def __init__(self, alerts: AlertBook | None) -> None:
        self.alerts = alerts

    def raise_(self, txn: str, what: str, status: int | None, reason: str | None) -> None:
        log.error("back office refused a request; retrying slowly",
                  extra={"sale": txn, "request": what, "status": status})  # fmt: skip
        if self.alerts is not None:
            detail = (f"sale {txn}: the back office refused the {what} ({status}): "
                      f"{refusal_cause(status)}; {reason}")  # fmt: skip
            self.alerts.raise_(f"{REFUSED_ALERT_PREFIX}{txn}", detail[:500], sale=txn,
                               status=status)  # fmt: skip

    def clear(self, txn: str) -> None:
        if self.alerts is not None:
            self.alerts.clear(f"{REFUSED_ALERT_PREFIX}{txn}")


@dataclass
class _Slot:
    info: dict[str, Any]
    due: float = 0.0
    failures: int = 0


class _Queue:
    """Pending items by id, each with its own retry time, worked by one asyncio task."""

    name = "queue"

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._slots: dict[str, _Slot] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.policy = policy or RetryPolicy()
        self.on_progress = on_progress or (lambda: None)

    @property
    def pending(self) -> dict[str, dict[str, Any]]:
        """Items not done yet, by id (a snapshot)."""
        return {key: slot.info for key, slot in self._slots.items()}

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, key: str, info: dict[str, Any]) -> None:
        self._slots[key] = _Slot(info)
        self._wake.set()

    def discard(self, key: str) -> dict[str, Any] | None:
        """Stop working ``key`` (an in-flight try finishes but its result is ignored)."""
        slot = self._slots.pop(key, None)
        return slot.info if slot is not None else None

    def wake(self, key: str | None = None) -> None:
        """Work ``key`` (or every item) now rather than at its retry time."""
        for name, slot in self._slots.items():
            if key is None or name == key:
                slot.due = min(slot.due, time.monotonic())
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
            now = time.monotonic()
            for key in [k for k, slot in self._slots.items() if slot.due <= now]:
                slot = self._slots.get(key)
                if slot is None:
                    continue
                try:
                    outcome = await self._work(key, slot.info)
                except JournalWriteError as exc:
                    log.error("journal append failed; will retry", extra={"error": str(exc)})
                    outcome = Retry(SyncError(str(exc)))
                except Exception as exc:
                    # One item's surprise (a broken vault directory, a bug) must not stop
                    # the worker for every other sale: log it and try that item later.
                    log.exception("unexpected error; will retry", extra={"item": key})
                    outcome = Retry(SyncError(f"{type(exc).__name__}: {exc}"))
                if self._slots.get(key) is not slot:
                    continue  # discarded (or replaced) while it was being worked
                if outcome is None:
                    del self._slots[key]
                    continue
                if outcome.error is None:
                    delay = outcome.after_s
                else:
                    slot.failures += 1
                    delay = self.policy.delay(slot.failures, outcome.error)
                slot.due = time.monotonic() + delay
            self._wake.clear()
            due = min((slot.due for slot in self._slots.values()), default=None)
            left = None if due is None else due - time.monotonic()
            timeout = IDLE_WAKE_S if left is None else max(0.0, min(IDLE_WAKE_S, left))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _work(self, key: str, info: dict[str, Any]) -> Retry | None:
        """One try; None when the item is done."""
        raise NotImplementedError


class ReversalQueue(_Queue):
    """Journaled reversals by attempt (``info``: txn, request)."""

    name = "reversals"

    def __init__(
        self,
        authorizer: Callable[[], Authorizer | None],
        journal: Journaling,
        *,
        refusals: RefusalAlerts | None = None,
        on_acked: Callable[[str], None] = lambda txn: None,
        policy: RetryPolicy | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(policy=policy, on_progress=on_progress)
        self._authorizer = authorizer
        self._journal = journal
        self._refusals = refusals or RefusalAlerts(None)
        self._on_acked = on_acked

    def pending_for(self, txn: str) -> bool:
        return any(slot.info["txn"] == txn for slot in self._slots.values())

    async def _work(self, attempt: str, info: dict[str, Any]) -> Retry | None:
        authorizer = self._authorizer()
        if authorizer is None:
            return Retry(NO_BACKOFFICE)
        txn = info["txn"]
        result = await asyncio.to_thread(authorizer.reverse, info["request"])
        if result.outcome == "refused":
            self._refusals.raise_(txn, f"reversal of {attempt}", result.status, result.reason)
        if result.outcome != "acked":
            return Retry(result.error or SyncError(result.reason or "no answer"))
        self._journal("reversal.acked",
                      {"attempt": attempt, "had_authorization": result.had_authorization},
                      txn)  # fmt: skip
        self._slots.pop(attempt, None)
        if not self.pending_for(txn):
            self._refusals.clear(txn)
            self._on_acked(txn)
        return None


class ForwardQueue(_Queue):
    """Offline approvals waiting to be authorized by the host, by txn.

    ``info``: amount, currency, attempt, entry_mode, masked_pan, brand,
    pan_token and — once ``forward.requested`` is journaled — ``request``.
    """

    name = "forwards"

    def __init__(
        self,
        authorizer: Callable[[], Authorizer | None],
        journal: Journaling,
        vault: CardVault,
        exposure: Exposure,
        *,
        alert: Callable[[str, str, str], Awaitable[None] | None],
        may_send: Callable[[str], bool] = lambda txn: True,
        on_dropped: Callable[[str], None] = lambda txn: None,
        refusals: RefusalAlerts | None = None,
        policy: RetryPolicy | None = None,
        on_progress: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(policy=policy, on_progress=on_progress)
        self._authorizer = authorizer
        self._journal = journal
        self.vault = vault
        self.exposure = exposure
        self._alert = alert
        self._may_send = may_send
        self._on_dropped = on_dropped
        self._refusals = refusals or RefusalAlerts(None)
        self._clock = clock

    def _finish(self, txn: str, info: dict[str, Any]) -> None:
        self.vault.delete(txn)
        self.exposure.remove(info["currency"], info["amount"])

    async def _expire(self, txn: str, info: dict[str, Any], reason: str, alert: str) -> None:
        self._journal("forward.expired", {"reason": reason}, txn)
        self._finish(txn, info)
        self._slots.pop(txn, None)
        self._on_dropped(txn)  # a forward that may have been sent is reversed
        await _maybe_await(self._alert("forward_expired", txn, alert))

    async def _work(self, txn: str, info: dict[str, Any]) -> Retry | None:
        deadline = self.vault.expires_at(txn)
        if deadline is None or deadline <= self._clock():
            reason = (
                "card data missing from the vault"
                if deadline is None
                else "not forwarded before the forward-by deadline"
            )
            await self._expire(txn, info, reason, reason)
            return None
        if not self._may_send(txn):
            return Retry(after_s=BLOCKED_RECHECK_S)  # a reversal of this sale comes first
        authorizer = self._authorizer()
        if authorizer is None:
            return Retry(NO_BACKOFFICE)
        try:
            card = self.vault.get(txn)
        except VaultError as exc:
            await self._expire(txn, info, f"vault entry unusable: {exc}", "vault entry unusable")
            return None
        if card is None:
            return Retry(SyncError("the vault entry is not readable yet"))
        if "request" not in info:
            request = authorization_request(
                terminal=authorizer.terminal, txn=txn, attempt=info["attempt"],
                amount=info["amount"], currency=info["currency"],
                entry_mode=info.get("entry_mode") or card.get("entry_mode", "swipe"),
                masked_pan=info.get("masked_pan"), brand=info.get("brand"),
                pan_token=info.get("pan_token"), forwarded=True,
            )  # fmt: skip
            # The intent and the exact body are journaled once; resends repeat them.
            self._journal("forward.requested",
                          {"attempt": info["attempt"], "key": info["attempt"], "request": request},
                          txn)  # fmt: skip
            info["request"] = request
        card_doc: dict[str, Any] = {
            k: card[k] for k in ("pan", "expiry", "service_code") if k in card
        }
        del card
        try:
            result = await asyncio.to_thread(authorizer.authorize, info["request"], card_doc)
        finally:
            card_doc.clear()
        slot = self._slots.get(txn)
        if slot is None or slot.info is not info:
            log.info("forward answered after the sale was voided; its reversal settles it",
                     extra={"sale": txn, "outcome": result.outcome})  # fmt: skip
            return None
        attempt = info["attempt"]
        if result.outcome == "approved":
            self._journal("forward.approved", {"attempt": attempt, "auth_code": result.auth_code},
                          txn)  # fmt: skip
            self._finish(txn, info)
            self._refusals.clear(txn)
            return None
        if result.outcome == "declined":
            reason = result.reason or "declined by host"
            self._journal("forward.declined", {"attempt": attempt, "reason": reason}, txn)
            self._finish(txn, info)
            self._refusals.clear(txn)
            await _maybe_await(self._alert("forward_declined", txn, reason))
            return None
        if result.outcome == "refused":  # the card stays in the vault
            self._refusals.raise_(txn, f"forward {attempt}", result.status, result.reason)
        # refused, unavailable or unknown: the same body later
        return Retry(result.error or SyncError(result.reason or "no answer"))


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
