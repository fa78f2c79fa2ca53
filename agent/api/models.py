"""Request and response bodies of the till API as pydantic models.

The same models validate what the till sends and generate the schemas of
``docs/openapi-api.json`` (:mod:`.openapi`), so the document cannot drift from
the server. This module must never do I/O, log, or keep request contents.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from posedge.agent.sales.model import OnlineMode

MAX_AMOUNT = 999_999_999_999
"""Largest amount in minor units the API accepts (fits every journal and host integer)."""
MAX_REFERENCE_CHARS = 64
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Printable text: no C0/C1 control characters (the reference is printed on receipts).
REFERENCE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


SaleStateName = Literal[
    "created",
    "card_read",
    "authorizing",
    "in_doubt",
    "approved",
    "approved_offline",
    "declined",
    "cancelled",
    "abandoned",
    "reversed",
    "voided",
]
"""``SaleState`` values (a test keeps the two equal)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SaleCreate(_Strict):
    """The body of ``POST /v1/sales``."""

    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Minor units (cents), a JSON integer > 0.")
    currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)] = Field(
        description="ISO 4217 code; must be one of the configured sales.currencies."
    )
    reference: str = Field(
        min_length=1,
        max_length=MAX_REFERENCE_CHARS,
        pattern=REFERENCE_PATTERN,
        description="The till's own reference (order or basket id); never card data.",
    )
    online: OnlineMode = Field(
        default="prefer",
        description="require: online only; prefer: offline within limits when the host "
        "is unreachable; offline-ok: same, for sales the merchant accepts offline.",
    )


class Receipt(_Strict):
    state: Literal["pending", "printing", "printed", "failed", "not_required"]
    copies: list[str] = Field(description="Copies printed so far: customer, merchant.")
    error: str | None = Field(description="Why the last print failed, when it did.")


class Sale(_Strict):
    """What the till sees of a sale (``SaleView.as_dict()``)."""

    id: str
    state: SaleStateName
    final: bool = Field(description="True once the state can no longer change by itself.")
    amount: int
    currency: str
    reference: str
    online: OnlineMode
    created_at: str = Field(description="UTC, ISO 8601 with offset.")
    updated_at: str
    receipt: Receipt
    masked_pan: str | None = Field(description="First 6 and last 4 digits at most.")
    brand: str | None
    entry_mode: str | None
    auth_code: str | None
    decline_reason: str | None = Field(description="Text the till can show for a decline.")
    offline: bool = Field(description="Approved offline (store-and-forward).")
    forward_state: str | None = Field(
        description="Offline sales: pending, approved, declined, expired."
    )


class FieldError(_Strict):
    field: str = Field(
        description="Body field (amount), header (Idempotency-Key) or query parameter (wait)."
    )
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; extension members may be added."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(description="https://posedge.dev/problems/<name>")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class Health(_Strict):
    status: Literal["ok"]


# ---- the end-of-day close (docs/close.md) ------------------------------------------------
class CloseCreate(_Strict):
    """The body of ``POST /v1/close`` (optional: no body closes the current business day)."""

    business_day: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="YYYY-MM-DD; default: the current business day in [close] timezone. "
        "Not in the future, not before the last close's day.",
    )
    force: bool = Field(default=False, description="Close a day that already has a close.")


class CloseTotal(_Strict):
    currency: str
    outcome: str
    brand: str
    entry_mode: str
    count: int
    amount: int = Field(description="Sum of the lines' amounts, minor units.")


class ClosePending(_Strict):
    txn: str
    state: str
    amount: int
    currency: str
    previous_outcome: str | None


class Close(BaseModel):
    """A ``day.closed`` event's payload (docs/close.md) with its seq and time."""

    model_config = ConfigDict(extra="allow", frozen=True)

    close_seq: int
    ts: str
    version: int
    business_day: str
    timezone: str
    day_starts: str
    trigger: Literal["manual", "api", "schedule", "catch_up"]
    forced: bool
    closed_at: str
    previous_close_seq: int | None
    seq_from: int
    seq_to: int
    lines_count: int
    lines_digest: str
    totals: list[CloseTotal]
    pending_count: int
    pending: list[ClosePending]


class ClosePrint(_Strict):
    printed: bool
    error: str | None = Field(description="Why the Z-report did not print; reprint later.")


class CloseLine(_Strict):
    txn: str
    outcome: str
    previous_outcome: str | None
    amount: int
    currency: str
    brand: str
    entry_mode: str
    last_seq: int


class CloseAnswer(_Strict):
    close: Close
    print: ClosePrint | None = Field(default=None, description="After a close or a reprint.")
    lines: list[CloseLine] | None = Field(default=None, description="With ?lines=true.")


class Status(BaseModel):
    """Devices, network state, offline exposure per currency, backlog, in-doubt count, alerts."""

    model_config = ConfigDict(extra="allow", frozen=True)


def sale_document(view_dict: dict[str, Any]) -> Sale:
    """Validate a ``SaleView.as_dict()`` against the documented schema (tests use it)."""
    return Sale.model_validate(view_dict)
