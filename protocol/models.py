"""Request and response bodies of the sync protocol (docs/sync-protocol.md) as pydantic models.

The agent builds its requests with them; the same models validate what the
reference back office receives and generate the schemas of
``docs/openapi-sync.json``, so the three cannot drift. This module must never
log or store anything: the ``card`` object of an authorization lives only in
the validated request, in memory.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.dataclasses import dataclass

from .signing import PUBLIC_KEY_PATTERN, SIGNATURE_PATTERN

TERMINAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HASH_PATTERN = r"^[0-9a-f]{64}$"
ZERO_HASH = "0" * 64
# At most the first 6 and last 4 digits, the middle masked.
MASKED_PAN_PATTERN = r"^[0-9]{0,6}[*Xx#]+[0-9]{0,4}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
# Integer bounds: a seq fits SQLite's INTEGER; counts, amounts and sizes stay exact in
# every JSON implementation (IEEE doubles hold integers up to 2^53 - 1).
MAX_SEQ = 2**63 - 1
MAX_COUNT = 2**53 - 1

TerminalId = Annotated[str, StringConstraints(pattern=TERMINAL_PATTERN)]
Hash = Annotated[str, StringConstraints(pattern=HASH_PATTERN)]
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]
TxnId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# One authorization request of a sale: ``{txn}:online`` or ``{txn}:forward``
# (see posedge.protocol.idempotency); equal to the request's Idempotency-Key.
AttemptId = Annotated[str, StringConstraints(min_length=1, max_length=160)]
# A reversal's id, ``{attempt}:reversal``; equal to the request's Idempotency-Key.
ReversalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    """Bodies that may grow new optional fields without breaking older servers."""

    model_config = ConfigDict(extra="allow", frozen=True)


# A slotted frozen dataclass rather than a model: the back office validates hundreds per
# request, at half a model's cost each (no per-instance __dict__ or fields-set bookkeeping);
# the fields, rules and schema are those of a model.
@dataclass(frozen=True, slots=True, kw_only=True, config=ConfigDict(extra="forbid"))
class Event:
    """One journal event: ``hash`` chains it to the event before (``prev_hash``)."""

    seq: int = Field(ge=1, le=MAX_SEQ, description="Journal sequence number, 1-based, consecutive.")
    ts: str = Field(min_length=1, max_length=64, description="ISO 8601 time with offset.")
    type: str = Field(min_length=1, max_length=64)
    txn: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any] = Field(description="Event payload; never card data.")
    prev_hash: Hash
    hash: Hash


class EventBatch(_Strict):
    terminal: TerminalId
    first_seq: int = Field(ge=1, le=MAX_SEQ)
    last_seq: int = Field(ge=1, le=MAX_SEQ)
    events: list[Event] = Field(min_length=1)
    signature: str | None = Field(
        default=None,
        pattern=SIGNATURE_PATTERN,
        description="Ed25519 signature by the device key over (terminal, first_seq, last_seq, "
        "hash of the last event); see posedge.protocol.signing. Required of enrolled terminals.",
    )

    @model_validator(mode="after")
    def _consecutive(self) -> EventBatch:
        if self.events[0].seq != self.first_seq:
            raise ValueError(
                f"first_seq is {self.first_seq} but the first event has seq {self.events[0].seq}"
            )
        if self.events[-1].seq != self.last_seq:
            raise ValueError(
                f"last_seq is {self.last_seq} but the last event has seq {self.events[-1].seq}"
            )
        if self.last_seq - self.first_seq + 1 != len(self.events):
            raise ValueError("events must be consecutive in seq order with no holes")
        for before, after in zip(self.events, self.events[1:], strict=False):
            if after.seq != before.seq + 1:
                raise ValueError(
                    f"events must be consecutive in seq order: seq {after.seq} follows {before.seq}"
                )
        return self


class EventsAck(_Strict):
    acked_seq: int = Field(
        ge=0, le=MAX_SEQ, description="Highest seq held contiguously for the terminal."
    )
    accepted: int = Field(ge=0, le=MAX_COUNT)
    duplicates: int = Field(ge=0, le=MAX_COUNT)
    head_hash: Hash | None


class EventsHead(_Strict):
    acked_seq: int = Field(ge=0, le=MAX_SEQ)
    head_hash: Hash | None


class JournalHead(_Open):
    seq: int = Field(ge=0, le=MAX_SEQ)
    hash: Hash | None = None


class DeviceStatus(_Open):
    state: str
    faults: list[str] = Field(default_factory=list)


class Exposure(_Open):
    count: int = Field(ge=0, le=MAX_COUNT)
    amount: int = Field(ge=0, le=MAX_COUNT)


class Alert(_Open):
    kind: str
    since: str | None = None
    detail: str | None = None


class HealthCheck(_Open):
    """One self-check's latest result (docs/health.md)."""

    name: str = Field(min_length=1, max_length=64)
    status: Literal["ok", "warn", "fail", "skip"]
    summary: str = Field(default="", max_length=512)
    value: float | None = Field(default=None, allow_inf_nan=False)


class HealthAlert(_Open):
    """A health alert that is not inactive (docs/health.md: the lifecycle)."""

    name: str = Field(min_length=1, max_length=64)
    state: Literal["pending", "firing", "flapping"]
    since: str = Field(min_length=1, max_length=64)
    value: float | None = Field(default=None, allow_inf_nan=False)
    summary: str = Field(default="", max_length=512)
    labels: dict[str, str] = Field(default_factory=dict)


class HealthSummary(_Open):
    checks: list[HealthCheck] = Field(default_factory=list, max_length=256)
    alerts: list[HealthAlert] = Field(default_factory=list, max_length=256)


class ResendReport(_Open):
    """The terminal's answer to a ``resend_from`` (docs/sync-protocol.md, Resend)."""

    from_seq: int = Field(ge=1, le=MAX_SEQ)
    outcome: Literal["rewound", "pruned", "not_sent_yet", "beyond_head"]
    acked_before: int = Field(ge=0, le=MAX_SEQ)
    oldest_seq: int = Field(ge=1, le=MAX_SEQ, description="Oldest seq the journal still holds.")
    head_seq: int = Field(ge=0, le=MAX_SEQ)


class Heartbeat(_Open):
    terminal: TerminalId
    sent_at: str = Field(min_length=1, max_length=64)
    agent_version: str | None = None
    uptime_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    devices: dict[str, DeviceStatus] = Field(default_factory=dict)
    journal_head: JournalHead | None = None
    unsynced_count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    oldest_unsynced_age_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    offline_exposure: dict[str, Exposure] = Field(default_factory=dict)
    in_doubt_count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    disk_free_bytes: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    active_alerts: list[Alert] = Field(default_factory=list)
    clock_skew_s: float | None = Field(default=None, allow_inf_nan=False)
    health: HealthSummary | None = None
    """The terminal's self-checks and health alerts; absent from agents before issue 13."""
    resend: ResendReport | None = None
    """What the terminal did with the latest ``resend_from``; absent before issue 15."""


class HeartbeatReply(_Strict):
    server_time: str
    interval_s: int = Field(ge=1, le=MAX_COUNT)
    resend_from: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEQ,
        description="Optional: upload the events again from this seq (seqs the back office "
        "lacks, found reconciling a close). Agents before issue 15 ignore it.",
    )


class Card(_Strict):
    """Card data for the decision only: never stored, logged or echoed."""

    pan: str = Field(pattern=r"^[0-9]{12,19}$")
    expiry: str = Field(pattern=r"^[0-9]{4}$", description="YYMM")
    service_code: str | None = Field(default=None, pattern=r"^[0-9]{3}$")


class AuthorizationRequest(_Strict):
    terminal: TerminalId
    txn: TxnId
    attempt: AttemptId = Field(
        description="The attempt: {txn}:online or {txn}:forward; equals the Idempotency-Key."
    )
    amount: int = Field(ge=0, le=MAX_COUNT, description="Minor units (cents).")
    currency: Currency
    entry_mode: str = Field(default="swipe", min_length=1, max_length=16)
    card: Card | None = None
    masked_pan: str = Field(pattern=MASKED_PAN_PATTERN)
    brand: str | None = Field(default=None, max_length=32)
    pan_token: Hash | None = None
    forwarded: bool = False


class AuthorizationResponse(_Strict):
    txn: str
    attempt: str
    outcome: Literal["approved", "declined"]
    auth_code: str | None
    reason: str | None


class ReversalRequest(_Strict):
    terminal: TerminalId
    txn: TxnId
    attempt: AttemptId = Field(description="The one attempt this reversal releases.")
    reversal: ReversalId = Field(
        description="This reversal's id, {attempt}:reversal; equals the Idempotency-Key."
    )
    amount: int = Field(
        ge=0, le=MAX_COUNT, description="The attempt's amount, for the audit trail."
    )
    currency: Currency
    reason: str = Field(min_length=1, max_length=200)


class ReversalResponse(_Strict):
    txn: str
    attempt: str
    reversed: Literal[True]
    had_authorization: bool


class Problem(_Open):
    """RFC 9457 problem details; extension members per type."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    expected_seq: int | None = None
    acked_seq: int | None = None
    retry_after_s: float | None = None
    errors: list[dict[str, Any]] | None = None


class EnrolmentRequest(_Strict):
    """``POST /v1/enrol``: a one-time enrolment code and the terminal's new public key."""

    code: str = Field(min_length=8, max_length=64, description="One-time enrolment code.")
    public_key: str = Field(
        pattern=PUBLIC_KEY_PATTERN, description="Ed25519 public key, unpadded base64url."
    )
    agent_version: str | None = Field(default=None, max_length=64)


class EnrolmentResponse(_Strict):
    terminal: TerminalId
    store: str
    lane: str
    token: str = Field(description="The terminal's bearer token; shown once, stored hashed.")


class TokenRotationRequest(_Strict):
    """``POST /v1/terminals/{terminal}/token``: proof of the device key for a new token.

    ``signature`` signs :func:`posedge.protocol.signing.rotation_message` of
    ``terminal`` and ``nonce``; the current token authenticates the request.
    """

    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    signature: str = Field(pattern=SIGNATURE_PATTERN)


class TokenRotationResponse(_Strict):
    terminal: TerminalId
    token: str


class Health(_Strict):
    status: Literal["ok"]
    open_mode: bool
