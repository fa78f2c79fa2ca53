"""Authorization attempts and reversals through the back office, as clear outcomes.

The only place the card data leaves memory: it goes into the authorization
request body (over TLS) and nowhere else. Requests are built from the shared
protocol models (``posedge.protocol.models``) and sent as canonical JSON, so a
journaled request is re-sent byte for byte. Outcomes of an authorization:

``approved`` / ``declined``  the host decided (an explicit ``outcome`` in a 2xx);
``unavailable``              the request certainly never arrived (connection
                             refused, 429/503): nothing to reverse;
``unknown``                  it may have arrived (timeout, reset, other 5xx,
                             409 in-progress): the caller reverses (online) or
                             resends the same body (forward);
``refused``                  the back office refused it (another 4xx): it
                             authorized nothing; the caller raises an alert.

A reversal is ``acked`` (with ``had_authorization``), ``refused`` (4xx: alert,
retry slowly) or ``retry`` (no answer, busy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from posedge.protocol.idempotency import canonical_json, reversal_id
from posedge.protocol.models import AuthorizationRequest, ReversalRequest

from ..sync.client import BackofficeClient
from ..sync.errors import BackofficeBusy, BackofficeRejected, BackofficeUnreachable, SyncError

Outcome = Literal["approved", "declined", "unavailable", "unknown", "refused"]
ReversalOutcome = Literal["acked", "refused", "retry"]


@dataclass(frozen=True)
class AuthResult:
    outcome: Outcome
    auth_code: str | None = None
    reason: str | None = None
    status: int | None = None
    """HTTP status of a refusal or a busy answer."""
    error: SyncError | None = None
    """What went wrong when there is no decision (drives the retry wait: Retry-After,
    backoff, or the slow pace of a refusal)."""


@dataclass(frozen=True)
class ReversalResult:
    outcome: ReversalOutcome
    had_authorization: bool | None = None
    reason: str | None = None
    status: int | None = None
    error: SyncError | None = None


def refusal_cause(status: int | None) -> str:
    """The likely cause of a 4xx, for the alert a person reads."""
    if status == 401:
        return "the terminal's token is missing, wrong or expired (check sync.token_file)"
    if status == 403:
        return "the token is not this terminal's, or the terminal is not allowed"
    if status == 404:
        return "sync.url does not point at a posedge back office"
    if status in (400, 413, 415, 422):
        return "the back office cannot accept the request (a protocol version mismatch?)"
    return "the back office refused the request"


def authorization_request(**fields: Any) -> dict[str, Any]:
    """An authorization body without its card, validated by the protocol model.

    The result is what the agent journals (``auth.requested``/``forward.requested``):
    never card data.
    """
    fields.pop("card", None)
    return AuthorizationRequest(**fields).model_dump(mode="json", exclude={"card"})


def reversal_request(
    *, terminal: str, txn: str, attempt: str, amount: int, currency: str, reason: str
) -> dict[str, Any]:
    """A reversal body (journaled in ``reversal.requested`` and re-sent as it is)."""
    return ReversalRequest(
        terminal=terminal, txn=txn, attempt=attempt, reversal=reversal_id(attempt),
        amount=amount, currency=currency, reason=reason[:200],
    ).model_dump(mode="json")  # fmt: skip


class Authorizer:
    """Blocking calls; the engine runs them in worker threads."""

    def __init__(self, client: BackofficeClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    @property
    def terminal(self) -> str:
        return self.client.terminal

    def authorize(self, request: dict[str, Any], card: dict[str, Any] | None) -> AuthResult:
        """Send one attempt: the journaled ``request`` plus the ``card`` (never logged)."""
        document = dict(request)
        if card is not None:
            document["card"] = card
        body = canonical_json(document)
        document.clear()
        try:
            reply = self.client.authorize(body, str(request["attempt"]), timeout_s=self.timeout_s)
        except BackofficeUnreachable as exc:
            if exc.delivered is False:
                return AuthResult("unavailable", reason="host unreachable", error=exc)
            return AuthResult("unknown", reason=_short(exc), error=exc)
        except BackofficeBusy as exc:
            if exc.status in (429, 503):
                return AuthResult("unavailable", reason="host busy", status=exc.status, error=exc)
            return AuthResult("unknown", reason=_short(exc), status=exc.status, error=exc)
        except BackofficeRejected as exc:
            return AuthResult("refused", reason=_short(exc), status=exc.status, error=exc)
        finally:
            del body
        outcome = reply.body.get("outcome")
        if outcome == "approved":
            code = reply.body.get("auth_code")
            return AuthResult("approved", auth_code=str(code) if code else None)
        if outcome == "declined":
            return AuthResult(
                "declined", reason=str(reply.body.get("reason") or "declined by host")
            )
        reason = "host answered without an outcome"
        return AuthResult("unknown", reason=reason, error=SyncError(reason))

    def reverse(self, request: dict[str, Any]) -> ReversalResult:
        """Send one reversal exactly as journaled."""
        try:
            reply = self.client.reverse(
                canonical_json(request), str(request["reversal"]), timeout_s=self.timeout_s
            )
        except BackofficeRejected as exc:
            return ReversalResult("refused", reason=_short(exc), status=exc.status, error=exc)
        except BackofficeBusy as exc:
            return ReversalResult("retry", reason=_short(exc), status=exc.status, error=exc)
        except BackofficeUnreachable as exc:
            return ReversalResult("retry", reason=_short(exc), error=exc)
        return ReversalResult("acked", had_authorization=bool(reply.body.get("had_authorization")))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
