"""Every endpoint over real HTTP (uvicorn on a Unix socket and loopback TCP)."""

from __future__ import annotations

import httpx

from posedge.agent.api.models import Sale
from posedge.agent.sales.model import SaleState

from .conftest import AUTH, BackgroundApi
from .fakes import FakeEngine

SALE = {"amount": 1234, "currency": "EUR", "reference": "order-17", "online": "prefer"}


def problem_of(
    reply: httpx.Response, status: int, name: str, field: str | None = None
) -> dict[str, object]:
    """Assert an RFC 9457 problem of this status and type naming ``field``."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    doc = reply.json()
    assert doc["type"] == f"https://posedge.dev/problems/{name}"
    assert doc["status"] == status
    assert doc["title"]
    assert isinstance(doc["detail"], str) and isinstance(doc["errors"], list)
    if field is not None:
        assert field in doc["detail"]
        assert field in [e["field"] for e in doc["errors"]]
    return doc


def create(client: httpx.Client, key: str = "k-1", **body: object) -> httpx.Response:
    return client.post("/v1/sales", json={**SALE, **body}, headers={"Idempotency-Key": key})


def test_create_returns_202_with_location_and_the_view(
    client: httpx.Client, engine: FakeEngine
) -> None:
    reply = create(client)
    assert reply.status_code == 202
    view = reply.json()
    Sale.model_validate(view)
    assert view["state"] == "created" and view["final"] is False
    assert view["amount"] == 1234 and view["currency"] == "EUR"
    assert reply.headers["location"] == f"/v1/sales/{view['id']}"
    assert engine.calls[0][0] == "create_sale"
    key, request = engine.calls[0][1]
    assert key == "k-1" and request.amount == 1234 and request.online == "prefer"


def test_online_defaults_to_prefer(client: httpx.Client, engine: FakeEngine) -> None:
    body = {k: v for k, v in SALE.items() if k != "online"}
    reply = client.post("/v1/sales", json=body, headers={"Idempotency-Key": "k"})
    assert reply.status_code == 202 and reply.json()["online"] == "prefer"


def test_same_key_same_body_is_the_same_sale_different_body_is_422(
    client: httpx.Client,
) -> None:
    first = create(client)
    again = create(client)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    problem_of(create(client, amount=999), 422, "idempotency-mismatch")


def test_second_sale_while_the_reader_is_busy_is_409(client: httpx.Client) -> None:
    create(client, "k-1")
    problem_of(create(client, "k-2"), 409, "reader-busy")


def test_not_accepting_is_503_with_retry_after(client: httpx.Client, engine: FakeEngine) -> None:
    engine.accepting = False
    reply = create(client)
    problem_of(reply, 503, "not-accepting")
    assert int(reply.headers["retry-after"]) >= 1


def test_get_sale_and_unknown_id(client: httpx.Client, engine: FakeEngine) -> None:
    sale_id = create(client).json()["id"]
    engine.set_state(sale_id, SaleState.APPROVED, auth_code="A1B2C3", masked_pan="411111******1111")
    reply = client.get(f"/v1/sales/{sale_id}")
    assert reply.status_code == 200
    assert reply.json()["state"] == "approved" and reply.json()["final"] is True
    assert reply.json()["auth_code"] == "A1B2C3"
    problem_of(client.get("/v1/sales/nope"), 404, "not-found", "id")
    problem_of(client.get("/v1/sales/" + "x" * 200), 404, "not-found", "id")


def test_cancel_void_reprint(client: httpx.Client, engine: FakeEngine) -> None:
    first = create(client, "k-1").json()["id"]
    reply = client.post(f"/v1/sales/{first}/cancel")
    assert reply.status_code == 200 and reply.json()["state"] == "cancelled"
    problem_of(client.post(f"/v1/sales/{first}/void"), 409, "state-conflict")
    problem_of(client.post(f"/v1/sales/{first}/cancel"), 409, "state-conflict")

    second = create(client, "k-2").json()["id"]
    problem_of(client.post(f"/v1/sales/{second}/reprint"), 409, "state-conflict")
    engine.set_state(second, SaleState.APPROVED)
    problem_of(client.post(f"/v1/sales/{second}/cancel"), 409, "state-conflict")
    reply = client.post(f"/v1/sales/{second}/reprint")
    assert reply.status_code == 200 and reply.json()["receipt"]["state"] == "printed"
    reply = client.post(f"/v1/sales/{second}/void")
    assert reply.status_code == 200 and reply.json()["state"] == "voided"
    for action in ("cancel", "void", "reprint"):
        problem_of(client.post(f"/v1/sales/nope/{action}"), 404, "not-found")


def test_status_health_openapi(api: BackgroundApi, client: httpx.Client) -> None:
    reply = client.get("/v1/status")
    assert reply.status_code == 200 and reply.json()["network"] == "online"
    with api.client(auth=False) as anonymous:
        assert anonymous.get("/v1/health").json() == {"status": "ok"}
        assert anonymous.get("/openapi.json").json()["openapi"] == "3.1.0"
        problem_of(anonymous.get("/v1/status"), 401, "unauthorized", "Authorization")


def test_tokens_are_checked_everywhere_but_health(api: BackgroundApi, engine: FakeEngine) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    requests = [
        ("POST", "/v1/sales"),
        ("GET", "/v1/sales/sale-1"),
        ("POST", "/v1/sales/sale-1/cancel"),
        ("POST", "/v1/sales/sale-1/void"),
        ("POST", "/v1/sales/sale-1/reprint"),
        ("GET", "/v1/status"),
        ("GET", "/v1/nowhere"),
    ]
    with api.client(auth=False) as anonymous:
        for method, path in requests:
            for headers in ({}, wrong, {"Authorization": "Basic dXNlcjpwdw=="}):
                reply = anonymous.request(
                    method,
                    path,
                    json=SALE if method == "POST" else None,
                    headers={**headers, "Idempotency-Key": "k"},
                )
                doc = problem_of(reply, 401, "unauthorized", "Authorization")
                assert reply.headers["www-authenticate"].startswith("Bearer")
                assert "not-the-token" not in reply.text
                assert doc["errors"] == [
                    {"field": "Authorization", "message": "missing or wrong bearer token"}
                ]
    assert engine.calls == []


def test_over_loopback_tcp_as_well(api: BackgroundApi) -> None:
    assert api.server.tcp_port and api.server.tcp_url
    with httpx.Client(base_url=api.server.tcp_url, headers=AUTH, timeout=5) as tcp:
        reply = tcp.post("/v1/sales", json=SALE, headers={"Idempotency-Key": "tcp-1"})
        assert reply.status_code == 202
        assert tcp.get(reply.headers["location"]).json()["id"] == reply.json()["id"]


def test_unknown_route_and_method_are_problems(client: httpx.Client) -> None:
    reply = client.get("/v1/nowhere")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    reply = client.get("/v1/sales")
    assert reply.status_code == 405 and "POST" in reply.headers["allow"]
    assert reply.json()["type"].endswith("/method-not-allowed")


def test_unexpected_engine_errors_are_500_without_internals(
    client: httpx.Client, engine: FakeEngine
) -> None:
    engine.explode = RuntimeError("secret internals at /var/lib/posedge")
    for reply in (create(client), client.get("/v1/status"), client.post("/v1/sales/x/void")):
        assert reply.status_code == 500
        assert reply.json()["type"] == "https://posedge.dev/problems/internal"
        assert "secret" not in reply.text and "RuntimeError" not in reply.text
