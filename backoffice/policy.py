"""How the reference back office decides authorizations: approve, decline by rule, delay.

Rules are checked in order: currency allowed, amount over a limit, amount
ending in given digits, a blocked PAN token, a blocked masked-PAN suffix.
Auth codes are deterministic for (terminal, txn, seed), so tests and demos
are repeatable. This module sees the validated request in memory only and
must never store, log or return the ``card`` object.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field

from posedge.protocol.models import AuthorizationRequest

AUTH_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
AUTH_CODE_LENGTH = 6


class AuthorizationPolicy(BaseModel):
    """Configurable outcomes; the default approves everything at once."""

    model_config = ConfigDict(extra="forbid")

    decline_over: int | None = Field(default=None, ge=0, description="Decline above (minor units).")
    decline_amount_endings: list[str] = Field(
        default_factory=list, description='Decline amounts ending in these digits, e.g. "51".'
    )
    decline_pan_tokens: list[str] = Field(default_factory=list)
    decline_masked_suffixes: list[str] = Field(
        default_factory=list, description="Decline masked PANs ending in these digits."
    )
    allowed_currencies: list[str] | None = Field(
        default=None, description="Decline other currencies; None allows all."
    )
    delay_s: float = Field(default=0.0, ge=0, le=300, description="Think time per decision.")
    seed: str = "posedge-reference-backoffice"

    def decline_reason(self, req: AuthorizationRequest) -> str | None:
        """Why this request is declined, or None to approve."""
        if self.allowed_currencies is not None and req.currency not in self.allowed_currencies:
            return f"currency {req.currency} not accepted"
        if self.decline_over is not None and req.amount > self.decline_over:
            return "insufficient funds"
        if any(str(req.amount).endswith(end) for end in self.decline_amount_endings if end):
            return "do not honour"
        if req.pan_token is not None and req.pan_token in self.decline_pan_tokens:
            return "card blocked"
        if any(req.masked_pan.endswith(s) for s in self.decline_masked_suffixes if s):
            return "card blocked"
        return None

    def auth_code(self, terminal: str, txn: str) -> str:
        digest = hmac.new(self.seed.encode(), f"{terminal}\0{txn}".encode(), hashlib.sha256)
        raw = digest.digest()
        return "".join(
            AUTH_CODE_ALPHABET[b % len(AUTH_CODE_ALPHABET)] for b in raw[:AUTH_CODE_LENGTH]
        )

    def decide(self, req: AuthorizationRequest) -> dict[str, str | None]:
        reason = self.decline_reason(req)
        if reason is None:
            code = self.auth_code(req.terminal, req.txn)
            return {
                "txn": req.txn,
                "attempt": req.attempt,
                "outcome": "approved",
                "auth_code": code,
                "reason": None,
            }
        return {
            "txn": req.txn,
            "attempt": req.attempt,
            "outcome": "declined",
            "auth_code": None,
            "reason": reason,
        }
