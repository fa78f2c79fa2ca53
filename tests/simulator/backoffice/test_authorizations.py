"""Authorizations and reversals: outcomes, idempotency (400/409/422), no card data stored."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from posedge.simulator.backoffice import AuthorizationPolicy, BackofficeServer

from .helpers import TEST_PAN, authorization, reversal

PROBLEM = "https://posedge.dev/problems/"


def authorize(client: httpx.Client, body: dict[str, object], key: str) -> httpx.Response:
    return client.post("/v1/authorizations", json=body, headers={"Idempotency-Key": key})


def test_approved_and_replayed_with_the_same_response(client: httpx.Client) -> None:
    first = authorize(client, authorization("s-1"), "s-1")
    assert first.status_code == 200
    doc = first.json()
    assert doc["outcome"] == "approved" and doc["reason"] is None
    assert len(doc["auth_code"]) == 6 and doc["auth_code"].isalnum()
    again = authorize(client, authorization("s-1"), "s-1")
    assert again.json() == doc
    other = authorize(client, authorization("s-2"), "s-2")
    assert other.json()["auth_code"] != doc["auth_code"]


def test_same_key_different_body_is_422_and_missing_key_is_400(client: httpx.Client) -> None:
    authorize(client, authorization("s-1", amount=100), "s-1")
    reply = authorize(client, authorization("s-1", amount=999), "s-1")
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
            replies.append(authorize(own, authorization(), "s-1"))

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
        assert authorize(own, authorization(), "s-1").json() == done.json()


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
    doc = authorize(client, body, "s-1").json()
    assert doc["outcome"] == "declined" and doc["auth_code"] is None
    assert doc["reason"].startswith(reason)


def test_policy_can_be_changed_through_the_admin_api(client: httpx.Client) -> None:
    reply = client.put("/admin/policy", json={"decline_over": 10})
    assert reply.status_code == 200 and reply.json()["decline_over"] == 10
    assert authorize(client, authorization(amount=11), "s-9").json()["outcome"] == "declined"
    assert client.put("/admin/policy", json={"decline_over": -1}).status_code == 422


def test_reversals_are_idempotent_and_report_whether_an_authorization_existed(
    client: httpx.Client,
) -> None:
    authorize(client, authorization("s-1"), "s-1")
    headers = {"Idempotency-Key": "reversal:s-1"}
    reply = client.post("/v1/reversals", json=reversal("s-1"), headers=headers)
    assert reply.json() == {"txn": "s-1", "reversed": True, "had_authorization": True}
    again = client.post("/v1/reversals", json=reversal("s-1"), headers=headers)
    assert again.json() == reply.json()
    changed = {**reversal("s-1"), "amount": 1}
    assert client.post("/v1/reversals", json=changed, headers=headers).status_code == 422
    unknown = client.post(
        "/v1/reversals", json=reversal("s-404"), headers={"Idempotency-Key": "reversal:s-404"}
    )
    assert unknown.json() == {"txn": "s-404", "reversed": True, "had_authorization": False}
    assert client.post("/v1/reversals", json=reversal("s-1")).status_code == 400


def test_invalid_card_data_is_refused_without_echoing_it(client: httpx.Client) -> None:
    body = authorization()
    body["masked_pan"] = TEST_PAN  # an unmasked PAN where a masked one belongs
    reply = authorize(client, body, "s-1")
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "masked_pan"
    assert TEST_PAN not in reply.text


def test_the_card_is_never_stored(
    bo: BackofficeServer, client: httpx.Client, tmp_path: Path
) -> None:
    bo.config.policy = AuthorizationPolicy(decline_over=5000)
    for i in range(20):
        authorize(client, authorization(f"s-{i}", amount=1000 * i), f"s-{i}")
        client.post(
            "/v1/reversals", json=reversal(f"s-{i}"), headers={"Idempotency-Key": f"reversal:s-{i}"}
        )
    assert bo.store is not None
    rows = bo.store.authorizations("lane1")
    assert len(rows) == 20 and rows[0]["masked_pan"] == "411111******1111"
    bo.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("bo.sqlite3")]
    assert files
    for path in files:
        data = path.read_bytes()
        assert TEST_PAN.encode() not in data, path
        assert TEST_PAN[6:12].encode() not in data, path  # the masked middle digits
