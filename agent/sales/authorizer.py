"""Authorizations and reversals through the back office, as four clear outcomes.

The only place the card data leaves memory: it goes into the authorization
request body (over TLS) and nowhere else. Outcomes:

``approved`` / ``declined``  the host decided;
``unavailable``              the request certainly never arrived (connection
                             refused, 429/503): no reversal needed;
``unknown``                  it may have arrived (timeout, reset, 5xx): the
                             caller must journal ``auth.unknown`` and reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..sync.client import BackofficeClient
from ..sync.errors import BackofficeBusy, BackofficeRejected, BackofficeUnreachable

Outcome = Literal["approved", "declined", "unavailable", "unknown"]


@dataclass(frozen=True)
class AuthResult:
    outcome: Outcome
    auth_code: str | None = None
    reason: str | None = None


class Authorizer:
    """Blocking calls; the engine runs them in worker threads."""

    def __init__(self, client: BackofficeClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    @property
    def terminal(self) -> str:
        return self.client.terminal

    def authorize(self, document: dict[str, Any], key: str) -> AuthResult:
        """Send one authorization request. ``document`` may hold card data: never log it."""
        try:
            reply = self.client.authorize(document, key, timeout_s=self.timeout_s)
        except BackofficeUnreachable as exc:
            if exc.delivered is False:
                return AuthResult("unavailable", reason="host unreachable")
            return AuthResult("unknown", reason=_short(exc))
        except BackofficeBusy as exc:
            if exc.status in (429, 503):
                return AuthResult("unavailable", reason="host busy")
            return AuthResult("unknown", reason=_short(exc))
        except BackofficeRejected as exc:
            return AuthResult("declined", reason=f"rejected by host ({exc.status})")
        body = reply.body
        outcome = body.get("outcome")
        if outcome == "approved":
            code = body.get("auth_code")
            return AuthResult("approved", auth_code=str(code) if code else None)
        if outcome == "declined":
            return AuthResult("declined", reason=str(body.get("reason") or "declined by host"))
        return AuthResult("unknown", reason="host answered without an outcome")

    def reverse(self, document: dict[str, Any], txn: str) -> bool | None:
        """Send one reversal: the host's ``had_authorization``, or None when not acknowledged."""
        try:
            reply = self.client.reverse(document, txn, timeout_s=self.timeout_s)
        except (BackofficeUnreachable, BackofficeBusy, BackofficeRejected):
            return None
        return bool(reply.body.get("had_authorization", True))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
