"""The sales vocabulary shared by the engine, the till API and the reports.

A sale is a journal transaction (its id is the ``txn`` of its events). Its
state moves only by journaled events (DESIGN §4); :class:`SaleView` is what
the till sees. Nothing here holds card data: only masked PAN, brand, token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OnlineMode = Literal["require", "prefer", "offline-ok"]
ONLINE_MODES: tuple[OnlineMode, ...] = ("require", "prefer", "offline-ok")


class SaleState(enum.StrEnum):
    CREATED = "created"
    """Journaled; the reader is being armed or waits for a card."""
    CARD_READ = "card_read"
    AUTHORIZING = "authorizing"
    IN_DOUBT = "in_doubt"
    """The authorization's outcome is unknown; a reversal is queued."""
    # final states
    APPROVED = "approved"
    APPROVED_OFFLINE = "approved_offline"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    REVERSED = "reversed"
    VOIDED = "voided"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        SaleState.APPROVED,
        SaleState.APPROVED_OFFLINE,
        SaleState.DECLINED,
        SaleState.CANCELLED,
        SaleState.ABANDONED,
        SaleState.REVERSED,
        SaleState.VOIDED,
    }
)

ReceiptState = Literal["pending", "printing", "printed", "failed", "not_required"]


@dataclass(frozen=True)
class SaleRequest:
    amount: int
    """Minor units, > 0."""
    currency: str
    """ISO 4217, upper case."""
    reference: str
    online: OnlineMode = "prefer"


@dataclass(frozen=True)
class ReceiptInfo:
    state: ReceiptState = "pending"
    copies: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class SaleView:
    id: str
    state: SaleState
    amount: int
    currency: str
    reference: str
    online: OnlineMode
    created_at: str
    updated_at: str
    receipt: ReceiptInfo = field(default_factory=ReceiptInfo)
    masked_pan: str | None = None
    brand: str | None = None
    entry_mode: str | None = None
    auth_code: str | None = None
    decline_reason: str | None = None
    offline: bool = False
    forward_state: str | None = None
    """For offline sales: pending, approved, declined, expired."""

    @property
    def final(self) -> bool:
        return self.state.final

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "final": self.final,
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "online": self.online,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "receipt": {
                "state": self.receipt.state,
                "copies": list(self.receipt.copies),
                "error": self.receipt.error,
            },
            "masked_pan": self.masked_pan,
            "brand": self.brand,
            "entry_mode": self.entry_mode,
            "auth_code": self.auth_code,
            "decline_reason": self.decline_reason,
            "offline": self.offline,
            "forward_state": self.forward_state,
        }


# ---- errors the API maps to statuses ---------------------------------------
class SalesError(Exception):
    """Base of refusals the till can act on; ``status`` is the HTTP status."""

    status = 400
    problem = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SaleNotFound(SalesError):
    status = 404
    problem = "not-found"


class IdempotencyMismatch(SalesError):
    """The same Idempotency-Key came with a different body."""

    status = 422
    problem = "idempotency-mismatch"


class ReaderBusy(SalesError):
    """The card reader already serves another sale."""

    status = 409
    problem = "reader-busy"


class SaleConflict(SalesError):
    """The sale is not in a state that allows the operation (cancel after card read, ...)."""

    status = 409
    problem = "state-conflict"


class NotAccepting(SalesError):
    """The agent is stopping or has no reader: no new sales."""

    status = 503
    problem = "not-accepting"


class SalesEngine(Protocol):
    """What the till API needs from the sales engine. All methods are async-safe."""

    async def create_sale(self, idempotency_key: str, request: SaleRequest) -> SaleView: ...

    def get_sale(self, sale_id: str) -> SaleView | None: ...

    async def wait_sale(self, sale_id: str, timeout_s: float) -> SaleView | None:
        """Return when the sale is final or ``timeout_s`` passed (None: unknown id)."""
        ...

    async def cancel(self, sale_id: str) -> SaleView: ...

    async def void(self, sale_id: str) -> SaleView: ...

    async def reprint(self, sale_id: str) -> SaleView: ...

    def status(self) -> dict[str, Any]:
        """Devices, network, offline exposure per currency, backlog, in-doubt, alerts."""
        ...
