"""The authorizer and the workers' retry wait over httpx.MockTransport, one case per status class.

A rejected request is never a decline (issue 11): only an explicit ``outcome``
in a 2xx answer decides. Refusals (4xx) are their own outcome, with the likely
cause for the alert; busy answers carry Retry-After into the same tenacity
wait policy as event sync.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest

from posedge.agent.config import SyncConfig
from posedge.agent.sales.authorizer import (
    Authorizer,
    authorization_request,
    refusal_cause,
    reversal_request,
)
from posedge.agent.sales.workers import RetryPolicy
from posedge.agent.sync import BackofficeClient
from posedge.agent.sync.errors import BackofficeRejected, SyncError
from posedge.protocol.idempotency import canonical_json

REQUEST = authorization_request(
    terminal="t-1", txn="s-1", attempt="s-1:online", amount=1234, currency="EUR",
    entry_mode="swipe", masked_pan="411111******1111", brand="visa", pan_token="0" * 64,
    forwarded=False,
)  # fmt: skip
CARD = {"pan": "4111111111111111", "expiry": "2912", "service_code": "101"}
REVERSAL = reversal_request(terminal="t-1", txn="s-1", attempt="s-1:online", amount=1234,
                            currency="EUR", reason="timeout waiting for response")  # fmt: skip


def authorizer(handler: Any, seen: list[httpx.Request] | None = None) -> Authorizer:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        response: httpx.Response = handler(request)
        return response

    client = BackofficeClient(
        "http://bo.test", "t-1", SyncConfig.model_validate({}),
        transport=httpx.MockTransport(record),
    )  # fmt: skip
    return Authorizer(client, timeout_s=1.0)


def problem(status: int, kind: str = "x", **headers: str) -> Any:
    body = {"type": f"https://posedge.dev/problems/{kind}", "title": kind, "status": status}
    return lambda request: httpx.Response(status, json=body, headers=headers)


def answer(doc: dict[str, Any]) -> Any:
    return lambda request: httpx.Response(200, json=doc)


def raising(exc: Exception) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "outcome", "status"),
    [
        (answer({"outcome": "approved", "auth_code": "A1"}), "approved", None),
        (answer({"outcome": "declined", "reason": "do not honour"}), "declined", None),
        (answer({"txn": "s-1"}), "unknown", None),  # 2xx without an outcome decides nothing
        (problem(400, "bad-request"), "refused", 400),
        (problem(401, "unauthorized"), "refused", 401),
        (problem(403, "forbidden"), "refused", 403),
        (problem(404, "not-found"), "refused", 404),
        (problem(422, "validation"), "refused", 422),
        (problem(422, "idempotency-mismatch"), "refused", 422),
        (problem(409, "in-progress", **{"Retry-After": "1"}), "unknown", 409),
        (problem(429, "rate-limited", **{"Retry-After": "7"}), "unavailable", 429),
        (problem(503, "unavailable", **{"Retry-After": "3"}), "unavailable", 503),
        (problem(500, "internal"), "unknown", 500),
        (problem(502, "bad-gateway"), "unknown", 502),
        (raising(httpx.ConnectError("refused")), "unavailable", None),
        (raising(httpx.ReadTimeout("slow")), "unknown", None),
        (raising(httpx.RemoteProtocolError("reset")), "unknown", None),
    ],
)  # fmt: skip
def test_every_status_class_of_an_authorization(handler: Any, outcome: str, status: int) -> None:
    result = authorizer(handler).authorize(REQUEST, dict(CARD))
    assert result.outcome == outcome
    assert result.status == status
    if outcome in ("approved", "declined"):
        assert result.error is None
    else:
        assert isinstance(result.error, SyncError)
    if outcome == "refused":
        assert isinstance(result.error, BackofficeRejected)


def test_the_request_sent_is_the_journaled_one_plus_the_card() -> None:
    seen: list[httpx.Request] = []
    auth = authorizer(answer({"outcome": "approved"}), seen)
    auth.authorize(REQUEST, dict(CARD))
    auth.authorize(REQUEST, dict(CARD))
    assert seen[0].headers["Idempotency-Key"] == "s-1:online"
    assert seen[0].content == canonical_json({**REQUEST, "card": CARD})
    assert seen[0].content == seen[1].content  # byte for byte on a resend
    assert "card" not in REQUEST and "4111111111111111" not in json.dumps(REQUEST)


@pytest.mark.parametrize(
    ("handler", "outcome", "had"),
    [
        (answer({"reversed": True, "had_authorization": True}), "acked", True),
        (answer({"reversed": True, "had_authorization": False}), "acked", False),
        (problem(401, "unauthorized"), "refused", None),
        (problem(422, "idempotency-mismatch"), "refused", None),
        (problem(503, "unavailable", **{"Retry-After": "2"}), "retry", None),
        (problem(500, "internal"), "retry", None),
        (raising(httpx.ReadTimeout("slow")), "retry", None),
        (raising(httpx.ConnectError("refused")), "retry", None),
    ],
)  # fmt: skip
def test_every_status_class_of_a_reversal(handler: Any, outcome: str, had: bool | None) -> None:
    seen: list[httpx.Request] = []
    result = authorizer(handler, seen).reverse(REVERSAL)
    assert (result.outcome, result.had_authorization) == (outcome, had)
    assert seen[0].headers["Idempotency-Key"] == "s-1:online:reversal"
    assert seen[0].content == canonical_json(REVERSAL)


def test_refusals_name_their_likely_cause() -> None:
    assert "token" in refusal_cause(401)
    assert "terminal" in refusal_cause(403)
    assert "sync.url" in refusal_cause(404)
    assert "protocol" in refusal_cause(422)


def test_the_retry_wait_is_the_sync_policy() -> None:
    """Refused → the slow permanent pace; Retry-After honoured and capped; otherwise full
    jitter under the exponential ceiling."""
    policy = RetryPolicy.from_sync(SyncConfig.model_validate({
        "backoff_initial": "1s", "backoff_cap": "8s", "retry_after_cap": "5s",
        "permanent_retry": "15m",
    }))  # fmt: skip
    refused = authorizer(problem(401)).reverse(REVERSAL).error
    busy = authorizer(problem(503, **{"Retry-After": "3"})).reverse(REVERSAL).error
    very_busy = authorizer(problem(429, **{"Retry-After": "3600"})).reverse(REVERSAL).error
    lost = authorizer(raising(httpx.ReadTimeout("slow"))).reverse(REVERSAL).error
    assert refused is not None and busy is not None and very_busy is not None and lost
    assert policy.delay(1, refused) == 900.0
    assert policy.delay(1, busy) == 3.0
    assert policy.delay(1, very_busy) == 5.0
    random.seed(7)
    waits = [policy.delay(attempt, lost) for attempt in range(1, 40)]
    assert all(0.0 <= wait <= 8.0 for wait in waits)
    assert max(waits[:2]) <= 2.0 and max(waits) > 2.0  # grows, then capped
