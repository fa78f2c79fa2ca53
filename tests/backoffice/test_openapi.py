"""docs/openapi-sync.json is what the server serves, and real responses match its schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from posedge.backoffice.openapi import OPENAPI_DOCUMENT
from posedge.protocol.openapi import build_document, render
from posedge.simulator.backoffice import BackofficeServer

from .helpers import authorization, batch, chain, events_url, heartbeat, reversal

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi-sync.json"


def check(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """Structural check of the JSON Schema subset the document uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        check(doc, doc["components"]["schemas"][name], value, where)
        return
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(doc, option, value, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches no anyOf option: {errors}")
    kind = schema.get("type")
    types: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "null": type(None),
    }
    if kind is not None:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing required {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check(doc, sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(doc, schema["items"], item, f"{where}[{i}]")


def check_reply(reply: httpx.Response, path: str, method: str) -> None:
    operation = OPENAPI_DOCUMENT["paths"][path][method]
    response = operation["responses"][str(reply.status_code)]
    media = reply.headers["content-type"].split(";")[0]
    schema = response["content"][media]["schema"]
    check(OPENAPI_DOCUMENT, schema, reply.json())


def test_docs_copy_and_served_document_do_not_drift(client: httpx.Client) -> None:
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "docs/openapi-sync.json is stale: run `posedge backoffice openapi --write "
        "docs/openapi-sync.json`"
    )
    protocol = json.loads(DOCS.read_text(encoding="utf-8"))
    assert protocol == build_document()
    served = client.get("/openapi.json").json()
    assert served == OPENAPI_DOCUMENT and served["openapi"] == "3.1.0"
    # What the back office serves is the protocol plus its own admin routes, nothing changed.
    assert set(served["paths"]) - set(protocol["paths"]) == {"/admin/policy"}
    assert {p: v for p, v in served["paths"].items() if p != "/admin/policy"} == protocol["paths"]
    schemas = served["components"]["schemas"]
    assert {k: v for k, v in schemas.items() if k != "AuthorizationPolicy"} == protocol[
        "components"
    ]["schemas"]


def test_responses_match_the_documented_schemas(bo: BackofficeServer, client: httpx.Client) -> None:
    events = chain(4)
    ev = "/v1/terminals/{terminal}/events"
    check_reply(client.post(events_url(), json=batch(events[:2])), ev, "post")
    check_reply(client.post(events_url(), json=batch(events[3:])), ev, "post")  # 409 gap
    check_reply(client.post(events_url(), json={"terminal": "lane1"}), ev, "post")  # 422
    check_reply(client.get(f"{events_url()}/head"), f"{ev}/head", "get")
    check_reply(
        client.post("/v1/terminals/lane1/heartbeat", json=heartbeat()),
        "/v1/terminals/{terminal}/heartbeat",
        "post",
    )
    key = {"Idempotency-Key": "s-1:online"}
    check_reply(
        client.post("/v1/authorizations", json=authorization(), headers=key),
        "/v1/authorizations",
        "post",
    )
    check_reply(
        client.post("/v1/authorizations", json=authorization(amount=1), headers=key),
        "/v1/authorizations",
        "post",
    )  # 422 mismatch
    check_reply(
        client.post(
            "/v1/reversals", json=reversal(), headers={"Idempotency-Key": "s-1:online:reversal"}
        ),
        "/v1/reversals",
        "post",
    )
    check_reply(client.get("/healthz"), "/healthz", "get")
    bo.faults.add({"kind": "status_503", "count": 1})
    check_reply(client.get(f"{events_url()}/head"), f"{ev}/head", "get")
