"""Authorizations and reversals: outcomes, idempotency (400/409/422), no card data stored,
and the attempt rules of docs/sync-protocol.md (reversal wins, one attempt per reversal)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from posedge.simulator.backoffice import AuthorizationPolicy, BackofficeServer, BackofficeStore

from .backends import Databases
from .helpers import TEST_PAN, authorization, reversal

ARRIVED_LATE = "reversed before it arrived"
DECIDED_LATE = "reversed before it was decided"

PROBLEM = "https://posedge.dev/problems/"


def authorize(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    """POST the authorization with its attempt as the key (or ``key``)."""
    key = body["attempt"] if key is None else key
    return client.post("/v1/authorizations", json=body, headers={"Idempotency-Key": key})


def reverse(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    """POST the reversal with its id as the key (or ``key``)."""
    key = body["reversal"] if key is None else key
    return client.post("/v1/reversals", json=body, headers={"Idempotency-Key": key})


def test_approved_and_replayed_with_the_same_response(client: httpx.Client) -> None:
    first = authorize(client, authorization("s-1"))
    assert first.status_code == 200
    doc = first.json()
    assert doc["outcome"] == "approved" and doc["reason"] is None
    assert doc["txn"] == "s-1" and doc["attempt"] == "s-1:online"
    assert len(doc["auth_code"]) == 6 and doc["auth_code"].isalnum()
    again = authorize(client, authorization("s-1"))
    assert again.json() == doc
    other = authorize(client, authorization("s-2"))
    assert other.json()["auth_code"] != doc["auth_code"]


def test_same_key_different_body_is_422_and_missing_key_is_400(client: httpx.Client) -> None:
    authorize(client, authorization("s-1", amount=100))
    reply = authorize(client, authorization("s-1", amount=999))
    assert reply.status_code == 422
    assert reply.json()["type"] == PROBLEM + "idempotency-mismatch"
    reply = client.post("/v1/authorizations", json=authorization("s-3"))
    assert reply.status_code == 400
    assert reply.json()["type"] == PROBLEM + "missing-idempotency-key"


def test_concurrent_request_with_the_same_key_is_409_in_progress(bo: BackofficeServer) -> None:
    bo.config.policy = AuthorizationPolicy(delay_s=0.5)
    replies: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=bo.url, timeout=5.0) as own:
            replies.append(authorize(own, authorization()))

    workers = [threading.Thread(target=send) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(r.status_code for r in replies) == [200, 409]
    busy = next(r for r in replies if r.status_code == 409)
    assert busy.json()["type"] == PROBLEM + "in-progress"
    assert busy.headers["retry-after"] == "1"
    done = next(r for r in replies if r.status_code == 200)
    bo.config.policy = AuthorizationPolicy()
    with httpx.Client(base_url=bo.url, timeout=5.0) as own:
        assert authorize(own, authorization()).json() == done.json()


@pytest.mark.parametrize(
    ("policy", "body", "reason"),
    [
        (AuthorizationPolicy(decline_over=1000), authorization(amount=1001), "insufficient funds"),
        (AuthorizationPolicy(decline_amount_endings=["51"]), authorization(amount=251), "do not"),
        (AuthorizationPolicy(decline_pan_tokens=["ab" * 32]), authorization(), "card blocked"),
        (AuthorizationPolicy(decline_masked_suffixes=["1111"]), authorization(), "card blocked"),
        (AuthorizationPolicy(allowed_currencies=["USD"]), authorization(), "currency EUR"),
    ],
)
def test_decline_rules(
    bo: BackofficeServer,
    client: httpx.Client,
    policy: AuthorizationPolicy,
    body: dict[str, object],
    reason: str,
) -> None:
    bo.config.policy = policy
    doc = authorize(client, body).json()
    assert doc["outcome"] == "declined" and doc["auth_code"] is None
    assert doc["reason"].startswith(reason)


def test_policy_can_be_changed_through_the_admin_api(client: httpx.Client) -> None:
    reply = client.put("/admin/policy", json={"decline_over": 10})
    assert reply.status_code == 200 and reply.json()["decline_over"] == 10
    assert authorize(client, authorization("s-9", amount=11)).json()["outcome"] == "declined"
    assert client.put("/admin/policy", json={"decline_over": -1}).status_code == 422


def test_reversals_are_idempotent_and_report_whether_an_authorization_existed(
    client: httpx.Client,
) -> None:
    authorize(client, authorization("s-1"))
    reply = reverse(client, reversal("s-1"))
    assert reply.json() == {
        "txn": "s-1",
        "attempt": "s-1:online",
        "reversed": True,
        "had_authorization": True,
    }
    again = reverse(client, reversal("s-1"))
    assert again.json() == reply.json()
    changed = reverse(client, {**reversal("s-1"), "amount": 1})
    assert changed.status_code == 422
    assert changed.json()["type"] == PROBLEM + "idempotency-mismatch"
    unknown = reverse(client, reversal("s-404"))
    assert unknown.json() == {
        "txn": "s-404",
        "attempt": "s-404:online",
        "reversed": True,
        "had_authorization": False,
    }
    missing = client.post("/v1/reversals", json=reversal("s-1"))
    assert missing.status_code == 400
    assert "{attempt}:reversal" in missing.json()["detail"]


def test_invalid_card_data_is_refused_without_echoing_it(client: httpx.Client) -> None:
    body = authorization()
    body["masked_pan"] = TEST_PAN  # an unmasked PAN where a masked one belongs
    reply = authorize(client, body)
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "masked_pan"
    assert TEST_PAN not in reply.text


def test_the_card_is_never_stored(
    bo: BackofficeServer, client: httpx.Client, databases: Databases
) -> None:
    bo.config.policy = AuthorizationPolicy(decline_over=5000)
    for i in range(20):
        authorize(client, authorization(f"s-{i}", amount=1000 * i))
        reverse(client, reversal(f"s-{i}"))
    assert bo.store is not None
    rows = bo.store.authorizations("lane1")
    assert len(rows) == 20 and rows[0]["masked_pan"] == "411111******1111"
    bo.close()
    files = databases.files(bo.db)  # PostgreSQL: the database's files after a checkpoint
    assert files
    for path in files:
        data = path.read_bytes()
        assert TEST_PAN.encode() not in data, path
        assert TEST_PAN[6:12].encode() not in data, path  # the masked middle digits


# -- attempts and reversals (docs/sync-protocol.md, "Authorizations, attempts and reversals") --


def store_of(bo: BackofficeServer) -> BackofficeStore:
    assert bo.store is not None
    return bo.store


def test_body_ids_must_equal_the_idempotency_key(client: httpx.Client) -> None:
    reply = authorize(client, authorization("s-1"), "s-1:forward")
    assert reply.status_code == 422
    doc = reply.json()
    assert doc["type"] == PROBLEM + "validation"
    assert doc["errors"] == [
        {"field": "attempt", "message": "must equal the Idempotency-Key header"}
    ]
    legacy = authorize(client, authorization("s-1"), "s-1")  # a version-1 key
    assert legacy.status_code == 422 and legacy.json()["errors"][0]["field"] == "attempt"
    reply = reverse(client, reversal("s-1"), "s-1:forward:reversal")
    assert reply.status_code == 422
    assert reply.json()["errors"] == [
        {"field": "reversal", "message": "must equal the Idempotency-Key header"}
    ]
    no_attempt = {k: v for k, v in reversal("s-1").items() if k != "attempt"}
    assert reverse(client, no_attempt).status_code == 422
    # Nothing of the refused requests was recorded.
    assert authorize(client, authorization("s-1")).json()["outcome"] == "approved"
    assert reverse(client, reversal("s-1")).json()["had_authorization"] is True


def test_the_idempotency_comparison_ignores_the_card(client: httpx.Client) -> None:
    first = authorize(client, authorization("s-1")).json()
    other_card = authorization("s-1")
    other_card["card"] = {"pan": "5500000000000004", "expiry": "3001"}
    assert authorize(client, other_card).json() == first
    without_card = {k: v for k, v in authorization("s-1").items() if k != "card"}
    assert authorize(client, without_card).json() == first


def test_an_attempt_arriving_after_its_reversal_is_refused_and_captures_nothing(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    ack = reverse(client, reversal("s-1"))
    assert ack.status_code == 200
    assert ack.json()["had_authorization"] is False
    late = authorize(client, authorization("s-1"))
    assert late.status_code == 200
    assert late.json() == {
        "txn": "s-1",
        "attempt": "s-1:online",
        "outcome": "declined",
        "auth_code": None,
        "reason": ARRIVED_LATE,
    }
    assert authorize(client, authorization("s-1")).json() == late.json()  # replay
    mismatch = authorize(client, authorization("s-1", amount=1))
    assert mismatch.json()["type"] == PROBLEM + "idempotency-mismatch"
    store = store_of(bo)
    assert store.captured("lane1") == {}
    (row,) = store.authorizations("lane1")
    assert row["outcome"] == "declined" and row["state"] == "decided"
    assert row["reversed_at"] == store.reversals("lane1")[0]["created_at"]
    # The sale's other attempt is not affected by the online attempt's reversal.
    forward = authorize(client, authorization("s-1", forwarded=True)).json()
    assert forward["outcome"] == "approved" and forward["attempt"] == "s-1:forward"
    assert store.captured("lane1") == {"s-1": 1234}


def test_reversing_the_online_attempt_leaves_the_approved_forward_attempt(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    store = store_of(bo)
    assert authorize(client, authorization("s-1", amount=700)).json()["outcome"] == "approved"
    forward = authorize(client, authorization("s-1", amount=700, forwarded=True))
    assert forward.json()["outcome"] == "approved"
    assert store.captured("lane1") == {"s-1": 1400}
    ack = reverse(client, reversal("s-1", amount=700)).json()
    assert ack == {
        "txn": "s-1",
        "attempt": "s-1:online",
        "reversed": True,
        "had_authorization": True,
    }
    assert store.captured("lane1") == {"s-1": 700}
    rows = {row["idem_key"]: row for row in store.authorizations("lane1")}
    assert rows["s-1:online"]["reversed_at"] is not None
    assert rows["s-1:forward"]["reversed_at"] is None
    # And the other way round: the void's reversal of the forward releases the rest.
    void = reverse(client, reversal("s-1", attempt="s-1:forward", amount=700)).json()
    assert void["attempt"] == "s-1:forward" and void["had_authorization"] is True
    assert store.captured("lane1") == {}


def test_a_reversal_recorded_while_the_attempt_is_decided_turns_it_into_a_decline(
    bo: BackofficeServer,
) -> None:
    bo.config.policy = AuthorizationPolicy(delay_s=0.5)
    store = store_of(bo)
    replies: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=bo.url, timeout=5.0) as own:
            replies.append(authorize(own, authorization("s-1")))

    worker = threading.Thread(target=send)
    worker.start()
    deadline = time.monotonic() + 5
    while not any(r["state"] == "pending" for r in store.authorizations("lane1")):
        assert time.monotonic() < deadline, "the authorization was never claimed"
        time.sleep(0.005)
    with httpx.Client(base_url=bo.url, timeout=5.0) as own:
        ack = reverse(own, reversal("s-1"))
    worker.join()
    assert ack.json()["had_authorization"] is False
    (reply,) = replies
    assert reply.status_code == 200
    assert reply.json() == {
        "txn": "s-1",
        "attempt": "s-1:online",
        "outcome": "declined",
        "auth_code": None,
        "reason": DECIDED_LATE,
    }
    assert store.captured("lane1") == {}
    (row,) = store.authorizations("lane1")
    assert row["outcome"] == "declined" and row["reversed_at"] is not None
    bo.config.policy = AuthorizationPolicy()
    with httpx.Client(base_url=bo.url, timeout=5.0) as own:
        assert authorize(own, authorization("s-1")).json() == reply.json()


def test_a_second_reversal_of_an_attempt_gets_the_first_answer_and_changes_nothing(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    store = store_of(bo)
    authorize(client, authorization("s-1"))
    first = reverse(client, reversal("s-1")).json()
    assert first["had_authorization"] is True
    second_body = {**reversal("s-1"), "reversal": "s-1:online:reversal-2", "reason": "void"}
    second = reverse(client, second_body)
    assert second.status_code == 200
    assert second.json() == first
    (recorded,) = store.reversals("lane1")
    assert recorded["reversal"] == "s-1:online:reversal"
    assert recorded["attempt"] == "s-1:online" and recorded["had_authorization"] is True
    # Its key was not recorded either: the first one stays the only record.
    assert reverse(client, {**second_body, "amount": 5}).json() == first


def test_had_authorization_is_true_for_an_approved_attempt_only(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    bo.config.policy = AuthorizationPolicy(decline_over=1000)
    assert authorize(client, authorization("s-ok", amount=500)).json()["outcome"] == "approved"
    assert authorize(client, authorization("s-no", amount=5000)).json()["outcome"] == "declined"
    assert reverse(client, reversal("s-ok")).json()["had_authorization"] is True
    assert reverse(client, reversal("s-no")).json()["had_authorization"] is False
    assert reverse(client, reversal("s-none")).json()["had_authorization"] is False
    store = store_of(bo)
    assert store.captured("lane1") == {}
    assert [(r["txn"], r["had_authorization"]) for r in store.reversals("lane1")] == [
        ("s-ok", True),
        ("s-no", False),
        ("s-none", False),
    ]
