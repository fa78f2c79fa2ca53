"""The sale state machine: card → authorization → outcome → receipt, write-ahead.

Every step is journaled *before* it acts: ``sale.created`` before the reader
is armed, ``auth.requested`` (with the exact request, minus the card) before
the request leaves, ``receipt.printing`` before the printer gets bytes;
outcomes are further events. A crash at any instant therefore leaves a
journal from which :meth:`SaleEngine.start` (recovery) drives every sale to a
correct final state: sales that never got an answer are reversed, approved
sales get their receipts, pending reversals and forwards resume — each from
its journaled request, byte for byte.

Money is tracked per authorization attempt (docs/sync-protocol.md): a sale's
online attempt and its forward attempt are reversed separately, a forward
waits until every reversal of its sale is acknowledged, and a void reverses
every attempt that may hold money — a forward in flight included.

Card data exists only in the :class:`CardRead` of the running sale (wiped
when the sale leaves the authorization step) and, for offline approvals, in
the encrypted vault until forwarded. Blocking device and network calls run
in worker threads; journal appends run on the event loop (each is one short
fsync).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posedge.drivers.cardreader import CardReader, SwipeCancelled, SwipeTimeout
from posedge.drivers.errors import DeviceError
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.reader.tracks import CardRead, CardUnreadable
from posedge.protocol.idempotency import forward_attempt, online_attempt

from ..alerts import AlertBook
from ..config import Config, parse_duration
from ..health.swipes import SwipeOutcomes
from ..journal import Journal, JournalWriteError
from ..journal.projection import owed_reversals, pending_reversals
from .authorizer import Authorizer, authorization_request, refusal_cause, reversal_request
from .model import (
    FINAL_STATES,
    IdempotencyMismatch,
    NotAccepting,
    ReaderBusy,
    SaleConflict,
    SaleNotFound,
    SaleRequest,
    SaleState,
    SaleView,
)
from .policy import Exposure, OfflinePolicy
from .receipts import build_receipt
from .vault import CardVault
from .views import view_from_row
from .workers import ForwardQueue, RefusalAlerts, RetryPolicy, ReversalQueue

if TYPE_CHECKING:
    from ..close.daemon import DaemonCloses

log = logging.getLogger("posedge.sales")

CANCEL_WAIT_S = 10.0
CRASH_HOOK_ENV = "POSEDGE_TEST_CRASH_AFTER"
_CRASH_AFTER = os.environ.get(CRASH_HOOK_ENV)
"""Test hook for the crash tests: the event type after which the process kills itself."""
RECENT_ALERTS = 50
ALERT_AUTH_REFUSED = "authorization_refused"
ALERT_NO_AMOUNT = "reversal_without_amount:"
_FINAL_VALUES = frozenset(state.value for state in FINAL_STATES)


def request_hash(request: SaleRequest) -> str:
    body = json.dumps(
        {"amount": request.amount, "currency": request.currency,
         "reference": request.reference, "online": request.online},
        sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(body.encode()).hexdigest()


def new_sale_id() -> str:
    return f"s-{int(time.time() * 1000):x}-{secrets.token_hex(4)}"


class SaleEngine:
    """One card reader, one printer, one back office. Implements ``SalesEngine``."""

    def __init__(
        self,
        *,
        journal: Journal,
        config: Config,
        state_dir: Path,
        reader: CardReader | None,
        printer: ReceiptPrinter | None,
        authorizer: Authorizer | None,
        vault: CardVault | None = None,
        alerts: AlertBook | None = None,
    ) -> None:
        self.journal = journal
        self.config = config
        self.reader = reader
        self.printer = printer
        self.authorizer = authorizer
        self.vault = vault or CardVault(state_dir)
        self.alerts = alerts or AlertBook(journal)
        self.policy = OfflinePolicy(config.offline)
        self.exposure = Exposure()
        self.accepting = False
        self.network_state = "unknown"
        self.device_status: dict[str, Any] = {}
        self.reader_problem: str | None = None
        """Why the card reader cannot take a card now (set by the health monitor's device
        poll); while set, new sales answer 503 not-accepting."""
        self.reader_retry_after_s = 10
        """Retry-After of that 503: the health monitor's poll interval."""
        self.swipes = SwipeOutcomes()
        """Read or unreadable, per swipe: the evidence of the reader.errors check."""
        self.health_status: Callable[[], dict[str, Any]] | None = None
        """The ``health`` block of :meth:`status` (checks and alerts), when a monitor runs."""
        self.recent_alerts: list[dict[str, Any]] = []
        self.closes: DaemonCloses | None = None
        """End-of-day closes (``POST /v1/close``); the daemon sets it before the API listens."""
        self.beat: Callable[[], None] = lambda: None
        """Called on every sale step and worker turn (a watchdog heartbeat)."""
        self._swipe_timeout_s = parse_duration(config.reader.swipe_timeout)
        self._void_window_s = parse_duration(config.sales.void_alert_window)
        self._active: str | None = None
        """The sale holding the card reader (until its outcome is journaled)."""
        self.sale_tasks: set[asyncio.Task[None]] = set()
        """Running sales, receipts included."""
        self._cancel_requested: dict[str, str] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.printer_lock = asyncio.Lock()
        self._op_lock = asyncio.Lock()
        self._force_stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused_alert = False
        """Whether this engine's authorization_refused alert may be active (spares a read)."""
        policy = RetryPolicy.from_sync(config.sync)
        refusals = RefusalAlerts(self.alerts)
        self.reversals = ReversalQueue(
            lambda: self.authorizer,
            self._append,
            refusals=refusals,
            on_acked=lambda txn: self.forwards.wake(txn),
            policy=policy,
            on_progress=self._beat,
        )
        self.forwards = ForwardQueue(
            lambda: self.authorizer,
            self._append,
            self.vault,
            self.exposure,
            alert=self._merchant_alert,
            may_send=lambda txn: not self.reversals.pending_for(txn),
            on_dropped=self._queue_reversals,
            refusals=refusals,
            policy=policy,
            on_progress=self._beat,
        )

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Recover every sale left mid-flight, then accept new sales."""
        self._refused_alert = ALERT_AUTH_REFUSED in self.alerts.active()
        await self._recover()
        self.reversals.start()
        self.forwards.start()
        self.accepting = True

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Take no new sales; finish or park the one in flight; stop the workers."""
        self.accepting = False
        active = self._active
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.sale_tasks and not self._force_stop.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("sale still in flight at stop; recovery will finish it",
                            extra={"sale": active})  # fmt: skip
                break
            view = self.get_sale(active) if active is not None else None
            if active is not None and view is not None and view.state == SaleState.CREATED:
                # Re-sent each turn: a cancel that reaches the reader before its read
                # starts is forgotten by the driver.
                self._request_cancel(active, "agent stopping")
            await asyncio.wait(set(self.sale_tasks), timeout=min(0.2, remaining))
        await self.reversals.stop()
        await self.forwards.stop()

    def force_stop(self) -> None:
        """Stop waiting for the sale in flight (a second SIGTERM); recovery finishes it."""
        self._force_stop.set()

    def _beat(self) -> None:
        self.beat()

    @property
    def reader_in_use(self) -> bool:
        """A sale holds the card reader (waiting for or reading a card)."""
        return self._active is not None

    def apply_config(self, config: Config) -> None:
        """Take new sales and offline settings (a reload); device settings are not touched."""
        self.config = config
        self.policy = OfflinePolicy(config.offline)
        self._swipe_timeout_s = parse_duration(config.reader.swipe_timeout)
        self._void_window_s = parse_duration(config.sales.void_alert_window)

    # ------------------------------------------------------------ journal
    def _append(self, type_: str, payload: dict[str, Any], txn: str | None) -> None:
        self.journal.append(type_, payload, txn=txn)
        if type_ == _CRASH_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die right after this step
        self._beat()
        if txn is not None:
            event = self._changed.pop(txn, None)
            if event is not None:
                event.set()

    # ------------------------------------------------------------ queries
    def get_sale(self, sale_id: str) -> SaleView | None:
        row = self.journal.transactions.get(sale_id)
        if row is None or "request_hash" not in row["summary"]:
            return None
        return view_from_row(row)

    async def wait_sale(self, sale_id: str, timeout_s: float) -> SaleView | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            view = self.get_sale(sale_id)
            if view is None or view.final:
                return view
            # No await since the read above: no event can slip in between.
            event = self._changed.setdefault(sale_id, asyncio.Event())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return view
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return self.get_sale(sale_id)

    # ------------------------------------------------------------ new sale
    async def create_sale(self, idempotency_key: str, request: SaleRequest) -> SaleView:
        digest = request_hash(request)
        async with self._op_lock:
            existing = self.journal.transactions.by_idempotency_key(idempotency_key)
            if existing is not None:
                if existing["summary"].get("request_hash") != digest:
                    raise IdempotencyMismatch(
                        "this Idempotency-Key was used for a different sale; use a new key "
                        "for a new sale"
                    )
                return view_from_row(existing)
            if not self.accepting:
                raise NotAccepting("the agent is stopping or starting; retry shortly")
            if self.reader is None:
                raise NotAccepting("no card reader is configured (reader.url)")
            if self.reader_problem is not None:
                refusal = NotAccepting(f"{self.reader_problem}; no sale can be taken until it "
                                       "works again (check its cable)")  # fmt: skip
                refusal.retry_after_s = self.reader_retry_after_s  # type: ignore[attr-defined]
                raise refusal
            if self._active is not None:
                raise ReaderBusy(f"the card reader is serving sale {self._active}; wait for it")
            if request.currency not in self.config.sales.currencies:
                raise NotAccepting(f"currency {request.currency} is not enabled")
            sale_id = new_sale_id()
            self._append(
                "sale.created",
                {"amount": request.amount, "currency": request.currency,
                 "reference": request.reference, "online": request.online,
                 "idempotency_key": idempotency_key, "request_hash": digest},
                sale_id,
            )  # fmt: skip
            self._active = sale_id
            task = asyncio.create_task(self._run_sale(sale_id, request), name=f"sale-{sale_id}")
            self.sale_tasks.add(task)
            task.add_done_callback(self.sale_tasks.discard)
        view = self.get_sale(sale_id)
        assert view is not None
        return view

    async def _run_sale(self, txn: str, request: SaleRequest) -> None:
        try:
            card = await self._read_card(txn)
            if card is None:
                return
            try:
                await self._authorize_and_decide(txn, request, card)
            finally:
                card.wipe()
            self._release_reader(txn)  # the outcome is journaled: the next sale may start
            await self._print(txn)
        except JournalWriteError as exc:
            log.error("journal append failed; the sale stops here and is recovered at restart",
                      extra={"sale": txn, "error": str(exc)})  # fmt: skip
        except Exception:
            log.exception("sale failed unexpectedly; settling it", extra={"sale": txn})
            await self._settle_after_error(txn)
        finally:
            self._release_reader(txn)

    async def _settle_after_error(self, txn: str) -> None:
        """A bug or device surprise mid-sale: finish it now, as recovery would at restart."""
        try:
            row = self.journal.transactions.get(txn)
            if row is not None:
                await self._settle(row, "an internal error interrupted the sale")
        except Exception:
            log.exception("could not settle the sale; recovery at the next start will",
                          extra={"sale": txn})  # fmt: skip

    def _release_reader(self, txn: str) -> None:
        if self._active == txn:
            self._active = None
        self._cancel_requested.pop(txn, None)

    async def _read_card(self, txn: str) -> CardRead | None:
        assert self.reader is not None
        reader = self.reader
        deadline = time.monotonic() + self._swipe_timeout_s
        while True:
            if txn in self._cancel_requested:
                self._end(txn, "sale.cancelled", self._cancel_requested[txn])
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._end(txn, "sale.abandoned", "no card was presented in time")
                return None
            try:
                card = await asyncio.to_thread(reader.read_card, remaining)
            except SwipeCancelled:
                self._end(txn, "sale.cancelled", self._cancel_requested.get(txn, "cancelled"))
                return None
            except SwipeTimeout:
                self._end(txn, "sale.abandoned", "no card was presented in time")
                return None
            except CardUnreadable as exc:
                self.swipes.record(False)
                self._append("card.read_failed", {"reason": str(exc)[:200]}, txn)
                continue
            except DeviceError as exc:
                self._end(txn, "sale.abandoned", f"card reader unavailable: {exc}"[:200])
                return None
            self.swipes.record(True)
            entry_mode = "fallback" if card.chip_card else "swipe"
            self._append(
                "card.read",
                {"masked_pan": card.masked_pan, "brand": card.brand, "entry_mode": entry_mode,
                 "pan_token": card.pan_token, "expired": card.expired},
                txn,
            )  # fmt: skip
            return card

    def _end(self, txn: str, type_: str, reason: str) -> None:
        """A final state without a receipt (cancelled, abandoned)."""
        self._append(type_, {"reason": reason, "receipt": "not_required"}, txn)

    # ------------------------------------------------------------ authorization
    async def _authorize_and_decide(self, txn: str, request: SaleRequest, card: CardRead) -> None:
        entry_mode = "fallback" if card.chip_card else "swipe"
        in_doubt = False
        unavailable_reason = "host unreachable"
        host_down = self.network_state == "offline"
        if self.authorizer is not None and self.policy.try_online_first(
            request.online, host_down=host_down
        ):
            authorizer = self.authorizer
            attempt = online_attempt(txn)
            auth_request = authorization_request(
                terminal=authorizer.terminal, txn=txn, attempt=attempt, amount=request.amount,
                currency=request.currency, entry_mode=entry_mode, masked_pan=card.masked_pan,
                brand=card.brand, pan_token=card.pan_token, forwarded=False,
            )  # fmt: skip
            self._append("auth.requested", {"attempt": attempt, "amount": request.amount,
                         "currency": request.currency, "entry_mode": entry_mode,
                         "request": auth_request}, txn)  # fmt: skip
            card_doc = {"pan": card.sensitive.pan, "expiry": card.expiry,
                        "service_code": card.service_code.code}  # fmt: skip
            try:
                result = await asyncio.to_thread(authorizer.authorize, auth_request, card_doc)
            finally:
                card_doc.clear()
            if result.outcome in ("approved", "declined") and self._refused_alert:
                self._refused_alert = False
                self.alerts.clear(ALERT_AUTH_REFUSED)  # the host decides again
            if result.outcome == "approved":
                self.network_state = "online"
                self._append("auth.approved", {"attempt": attempt, "auth_code": result.auth_code,
                             "approved_at": _now_iso(), "receipt": "pending"}, txn)  # fmt: skip
                return
            if result.outcome == "declined":
                self.network_state = "online"
                self._append("auth.declined", {"attempt": attempt, "reason": result.reason,
                             "receipt": "pending"}, txn)  # fmt: skip
                return
            if result.outcome == "unknown":
                self.network_state = "offline"
                in_doubt = True
                self._append("auth.unknown", {"attempt": attempt, "reason": result.reason}, txn)
                self._queue_reversals(txn)
                if self.config.sales.in_doubt == "decline":
                    self._append("sale.reversed", {"reason": "authorization outcome unknown; "
                                 "reversed", "receipt": "pending"}, txn)  # fmt: skip
                    return
            else:
                if result.outcome == "refused":
                    # It authorized nothing; say so where people look, not only in the sale.
                    detail = (f"sale {txn}: the back office refused the authorization "
                              f"({result.status}): {refusal_cause(result.status)}; "
                              f"{result.reason}")  # fmt: skip
                    self.alerts.raise_(ALERT_AUTH_REFUSED, detail[:500], sale=txn,
                                       status=result.status)  # fmt: skip
                    self._refused_alert = True
                    unavailable_reason = f"back office refused the terminal ({result.status})"
                else:
                    self.network_state = "offline"
                    unavailable_reason = result.reason or unavailable_reason
                self._append("auth.unavailable", {"attempt": attempt,
                             "reason": unavailable_reason}, txn)  # fmt: skip
        await self._offline(txn, request, card, entry_mode, in_doubt, unavailable_reason)

    async def _offline(
        self, txn: str, request: SaleRequest, card: CardRead, entry_mode: str,
        in_doubt: bool, unavailable_reason: str,
    ) -> None:  # fmt: skip
        decision = self.policy.decide(request, entry_mode, self.exposure,
                                      card_expired=card.expired)  # fmt: skip
        if decision.approved:
            deadline = self.policy.deadline(datetime.now(UTC))
            vault_card = {
                "pan": card.sensitive.pan,
                "expiry": card.expiry,
                "service_code": card.service_code.code,
                "entry_mode": entry_mode,
            }
            try:
                await asyncio.to_thread(self.vault.put, txn, vault_card, deadline)
            finally:
                vault_card.clear()
            self._append("offline.approved", {"offline": True, "forward_by": deadline.isoformat(),
                         "approved_at": _now_iso(), "receipt": "pending"}, txn)  # fmt: skip
            self.exposure.add(request.currency, request.amount)
            self.forwards.add(txn, {"amount": request.amount, "currency": request.currency,
                                    "attempt": forward_attempt(txn), "entry_mode": entry_mode,
                                    "masked_pan": card.masked_pan, "brand": card.brand,
                                    "pan_token": card.pan_token})  # fmt: skip
            return
        if in_doubt:
            self._append("sale.reversed", {"reason": f"authorization outcome unknown and "
                         f"reversed; not approved offline: {decision.reason}",
                         "receipt": "pending"}, txn)  # fmt: skip
        else:
            self._append("sale.declined", {"reason": f"{unavailable_reason}; not approved "
                         f"offline: {decision.reason}", "receipt": "pending"}, txn)  # fmt: skip

    def _queue_reversals(self, txn: str) -> None:
        """Journal a reversal for every attempt of ``txn`` that owes one, then queue every
        reversal of it not yet acknowledged — each with its journaled request."""
        row = self.journal.transactions.get(txn)
        if row is None:
            return
        state, summary = row["state"], row["summary"]
        owed = owed_reversals(state, summary)
        legacy = [
            a for a, entry in pending_reversals(txn, summary).items() if "request" not in entry
        ]
        for attempt in owed + legacy:
            request = self._reversal_request(row, attempt)
            if request is None:
                continue
            self._append("reversal.requested",
                         {"attempt": attempt, "key": request["reversal"], "request": request},
                         txn)  # fmt: skip
        if owed or legacy:
            row = self.journal.transactions.get(txn) or row
        for attempt, entry in pending_reversals(txn, row["summary"]).items():
            if attempt not in self.reversals and isinstance(entry.get("request"), dict):
                self.reversals.add(attempt, {"txn": txn, "request": entry["request"]})

    def _reversal_request(self, row: dict[str, Any], attempt: str) -> dict[str, Any] | None:
        txn, state = row["txn"], row["state"]
        if self.authorizer is None:
            log.error("a reversal is owed but no back office is configured (sync.url); "
                      "it is sent once one is",
                      extra={"sale": txn, "attempt": attempt})  # fmt: skip
            return None
        if type(row["amount"]) is not int or not row["currency"]:
            # A journal edited or written by a bug: never guess an amount (nor reverse 0).
            log.error("a reversal is owed but the sale has no amount; not reversing 0",
                      extra={"sale": txn, "attempt": attempt})  # fmt: skip
            self.alerts.raise_(f"{ALERT_NO_AMOUNT}{txn}", f"sale {txn}: attempt {attempt} must be "
                               "reversed but the journal holds no amount or currency for the "
                               "sale; reverse it at the back office by hand", sale=txn)  # fmt: skip
            return None
        if state == "voided":
            reason = "void"
        elif row["summary"].get("forward") in ("cancelled", "expired"):
            reason = "forward not completed"
        else:
            reason = "timeout waiting for response"
        return reversal_request(terminal=self.authorizer.terminal, txn=txn, attempt=attempt,
                                amount=row["amount"], currency=row["currency"],
                                reason=reason)  # fmt: skip

    # ------------------------------------------------------------ receipts
    def _copies_for(self, view: SaleView) -> list[str]:
        if view.state in (SaleState.APPROVED, SaleState.APPROVED_OFFLINE):
            return list(self.config.sales.receipt_copies)
        return ["customer"]

    async def _print(self, txn: str, *, reprint: bool = False) -> None:
        view = self.get_sale(txn)
        if view is None or not view.final:
            return
        copies = self._copies_for(view)  # a reprint too: every copy, none skipped silently
        if self.printer is None:
            self._append("receipt.skipped", {"reason": "no printer configured"}, txn)
            return
        printer = self.printer
        async with self.printer_lock:
            self._append("receipt.printing", {"copies": copies}, txn)
            printed: list[str] = []
            try:
                for copy in copies:
                    receipt = build_receipt(
                        view, copy,  # type: ignore[arg-type]
                        merchant_name=self.config.sales.merchant_name,
                        columns=self.config.printer.columns, reprint=reprint,
                    )  # fmt: skip
                    result = await asyncio.to_thread(printer.print_receipt, receipt)
                    if not result.complete:
                        raise DeviceError(f"receipt not confirmed: {result.fault or 'incomplete'}")
                    printed.append(copy)
            except DeviceError as exc:
                missing = ", ".join(c for c in copies if c not in printed)
                done = f"; printed: {', '.join(printed)}" if printed else ""
                error = f"{str(exc)[:160]}; not printed: {missing}{done}"
                self._append("receipt.failed", {"receipt_error": error, "copies": printed}, txn)
                return
            self._append("receipt.printed", {"copies": copies}, txn)

    # ------------------------------------------------------------ till operations
    async def cancel(self, sale_id: str) -> SaleView:
        view = self._require(sale_id)
        if view.state == SaleState.CANCELLED:
            return view
        if view.state != SaleState.CREATED:
            raise SaleConflict(f"sale {sale_id} is {view.state.value}; only a sale waiting for "
                               "a card can be cancelled (void it after approval)")  # fmt: skip
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            # Re-issued each turn: a cancel that reaches the reader before its read
            # starts is forgotten by the driver.
            self._request_cancel(sale_id, "cancelled by the till")
            view = self._require(sale_id)
            if view.state != SaleState.CREATED:
                break
            await self.wait_sale(sale_id, max(0.0, min(0.2, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
        if view.state != SaleState.CANCELLED:
            raise SaleConflict(f"sale {sale_id} is {view.state.value}: the card was read first")
        return view

    def _request_cancel(self, sale_id: str, reason: str) -> None:
        self._cancel_requested[sale_id] = reason
        if self.reader is not None and self._active == sale_id:
            reader = self.reader
            task = asyncio.create_task(asyncio.to_thread(reader.cancel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def void(self, sale_id: str) -> SaleView:
        async with self._op_lock:
            view = self._require(sale_id)
            if view.state == SaleState.VOIDED:
                return view
            if view.state not in (SaleState.APPROVED, SaleState.APPROVED_OFFLINE):
                raise SaleConflict(f"sale {sale_id} is {view.state.value}; only an approved sale "
                                   "can be voided")  # fmt: skip
            row = self.journal.transactions.get(sale_id) or {}
            approved_at = row.get("summary", {}).get("approved_at")
            after_s = _seconds_since(approved_at)
            self._append("sale.voided", {"reason": "voided by the till", "receipt": "pending",
                         "after_s": after_s}, sale_id)  # fmt: skip
            if after_s is not None and after_s <= self._void_window_s:
                self._one_shot_alert("void_after_approval", sale_id,
                                     f"sale voided {after_s:.1f}s after approval")  # fmt: skip
            self._cancel_forward(sale_id, view, "voided")
            self._queue_reversals(sale_id)
        await self._print(sale_id)
        return self._require(sale_id)

    def _cancel_forward(self, sale_id: str, view: SaleView, why: str) -> None:
        """Stop a forward not yet done: a pending one is never sent, one in flight is
        reversed (by :meth:`_queue_reversals`) and its answer ignored."""
        if view.forward_state not in ("pending", "requested"):
            return
        info = self.forwards.discard(sale_id)
        self._append("forward.cancelled", {"reason": f"{why} before the forward completed"},
                     sale_id)  # fmt: skip
        self.vault.delete(sale_id)
        if info is not None:
            self.exposure.remove(view.currency, view.amount)

    async def reprint(self, sale_id: str) -> SaleView:
        view = self._require(sale_id)
        if not view.final:
            raise SaleConflict(f"sale {sale_id} is {view.state.value}; it has no receipt yet")
        if view.receipt.state == "not_required":
            raise SaleConflict(f"sale {sale_id} is {view.state.value}; it has no receipt")
        await self._print(sale_id, reprint=True)
        return self._require(sale_id)

    def _require(self, sale_id: str) -> SaleView:
        view = self.get_sale(sale_id)
        if view is None:
            raise SaleNotFound(f"no sale {sale_id}")
        return view

    # ------------------------------------------------------------ alerts, status
    def _one_shot_alert(self, kind: str, txn: str, detail: str) -> None:
        self._append("alert.raised", {"kind": kind, "detail": detail}, txn)
        self.recent_alerts.append({"kind": kind, "sale": txn, "detail": detail, "at": _now_iso()})
        del self.recent_alerts[:-RECENT_ALERTS]

    def _merchant_alert(self, kind: str, txn: str, detail: str) -> None:
        self._one_shot_alert(kind, txn, detail)

    def status(self) -> dict[str, Any]:
        unsynced, oldest_age_s = self.journal.backlog()
        return {
            "accepting": self.accepting,
            "active_sale": self._active,
            "devices": self.device_status,
            "network": {"state": self.network_state},
            "offline_exposure": self.exposure.as_dict(),
            "forwards_pending": len(self.forwards),
            "in_doubt": len(self.reversals),
            "card_reads_not_completed": self.journal.transactions.incomplete_card_reads(),
            "backlog": {"unsynced": unsynced, "oldest_age_s": oldest_age_s},
            "alerts": {"active": self.alerts.as_list(), "recent": list(self.recent_alerts)},
            **({"health": self.health_status()} if self.health_status is not None else {}),
        }  # fmt: skip

    # ------------------------------------------------------------ recovery
    async def _recover(self) -> None:
        """At start: drive every sale a crash interrupted to a correct state."""
        for row in self.journal.transactions.needing_work(_FINAL_VALUES):
            if "request_hash" in row["summary"]:  # only sales
                await self._settle(row, "the agent restarted")
        keep = set(self.forwards.pending)
        orphans = self.vault.purge_orphans(keep)
        if orphans:
            log.warning("deleted vault entries with no outstanding offline sale",
                        extra={"count": len(orphans)})  # fmt: skip

    async def _settle(self, row: dict[str, Any], why: str) -> None:
        """Finish one interrupted sale from what its journal says (``why`` goes in reasons).

        Card data is gone (it only lived in memory), so a sale before its outcome
        is abandoned, and one that was authorizing is reversed. Reversals and
        forwards resume with their journaled requests.
        """
        txn, state = row["txn"], row["state"]
        if state in ("created", "card_read", "open"):
            self._end(txn, "sale.abandoned", f"{why} before the sale completed; "
                      "present the card again")  # fmt: skip
            return
        if state in ("authorizing", "in_doubt"):
            if state == "authorizing":
                self._append("auth.unknown", {"attempt": _online_attempt_of(row),
                             "reason": f"{why} while authorizing"}, txn)  # fmt: skip
            self._queue_reversals(txn)
            reason = f"{why} while authorizing; the authorization was reversed"
            self._append("sale.reversed", {"reason": reason, "receipt": "pending"}, txn)
        row = self.journal.transactions.get(txn) or row
        view = view_from_row(row)
        if row["state"] == "voided":
            self._cancel_forward(txn, view, "voided")
        self._queue_reversals(txn)
        row = self.journal.transactions.get(txn) or row
        summary = row["summary"]
        if summary.get("forward") in ("pending", "requested") and txn not in self.forwards:
            self.exposure.add(view.currency, view.amount)
            attempt = forward_attempt(txn)
            info: dict[str, Any] = {key: summary.get(key) for key in
                                    ("masked_pan", "brand", "pan_token", "entry_mode")}  # fmt: skip
            info |= {"amount": view.amount, "currency": view.currency, "attempt": attempt}
            request = (summary.get("attempts") or {}).get(attempt, {}).get("request")
            if isinstance(request, dict):
                info["request"] = request  # resent as journaled
            self.forwards.add(txn, info)
        if summary.get("receipt") in ("pending", "printing"):
            await self._print(txn, reprint=summary.get("receipt") == "printing")


def _online_attempt_of(row: dict[str, Any]) -> str:
    """The sale's online attempt (journals before protocol v2 used the txn as its id)."""
    attempts = row["summary"].get("attempts") or {}
    for attempt, entry in attempts.items():
        if isinstance(entry, dict) and entry.get("kind") == "online":
            return str(attempt)
    return str(row["txn"])


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _seconds_since(iso: object) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return None
