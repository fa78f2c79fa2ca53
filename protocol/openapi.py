"""The OpenAPI 3.1 document of the sync protocol, built from the protocol models.

``docs/openapi-sync.json`` is :func:`render` written out (``posedge backoffice
openapi --write docs/openapi-sync.json``) and a test fails when the two
differ; the back office serves it at ``GET /openapi.json`` with its own admin
routes added. Body schemas come from :mod:`.models`, the same models that
validate requests, so the document cannot drift from either side. Also the
schema helpers the till API's document uses. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from .models import (
    AuthorizationRequest,
    AuthorizationResponse,
    EnrolmentRequest,
    EnrolmentResponse,
    EventBatch,
    EventsAck,
    EventsHead,
    Health,
    Heartbeat,
    HeartbeatReply,
    Problem,
    ReversalRequest,
    ReversalResponse,
    TokenRotationRequest,
    TokenRotationResponse,
)
from .problems import PROBLEM_BASE, PROBLEM_TYPES

REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """``components.schemas`` for ``models`` and every model they reference, sorted."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def ref(name: str) -> dict[str, str]:
    """A JSON reference to the component schema ``name``."""
    return {"$ref": REF_TEMPLATE.format(model=name)}


_ref = ref

_MODELS: tuple[type[BaseModel], ...] = (
    EventBatch,
    EventsAck,
    EventsHead,
    Heartbeat,
    HeartbeatReply,
    AuthorizationRequest,
    AuthorizationResponse,
    ReversalRequest,
    ReversalResponse,
    EnrolmentRequest,
    EnrolmentResponse,
    TokenRotationRequest,
    TokenRotationResponse,
    Problem,
    Health,
)


def _json_body(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _ok(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Date": {"$ref": "#/components/headers/Date"}},
        **_json_body(name),
    }


def _problems(*kinds: str) -> dict[str, Any]:
    """Problem responses by status, listing the problem types each status may carry."""
    by_status: dict[int, list[str]] = {}
    for kind in kinds:
        by_status.setdefault(PROBLEM_TYPES[kind][0], []).append(kind)
    out: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"{PROBLEM_BASE}{n}" for n in names),
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = response
    return out


_COMMON_FAULTS = ("internal", "rate-limited", "unavailable")
_AUTH = ("unauthorized", "forbidden", "terminal-revoked")
_TERMINAL_PARAM = {
    "name": "terminal",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
}


def operation(
    summary: str,
    ok: tuple[str, str],
    problems: tuple[str, ...],
    body: str | None = None,
    params: tuple[dict[str, Any], ...] = (),
    secure: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary}
    if params:
        op["parameters"] = list(params)
    if body:
        op["requestBody"] = {"required": True, **_json_body(body)}
    op["responses"] = {"200": _ok(*ok), **_problems(*problems)}
    if not secure:
        op["security"] = []
    return op


def _idem(description: str) -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }


def _encoding() -> dict[str, Any]:
    return {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "description": "gzip-compressed request bodies are accepted.",
        "schema": {"type": "string", "enum": ["gzip", "identity"]},
    }


def build_document() -> dict[str, Any]:
    body_problems = ("bad-request", "validation", "payload-too-large", "unsupported-media-type")
    paths = {
        "/v1/terminals/{terminal}/events": {
            "post": operation(
                "Upload a batch of journal events in seq order (dedupe, gap, chain checks)",
                ("EventsAck", "Stored; acked_seq is the highest seq held"),
                (
                    *body_problems,
                    *_AUTH,
                    "signature-required",
                    "signature-invalid",
                    "sequence-gap",
                    "chain-mismatch",
                    "conflict",
                    *_COMMON_FAULTS,
                ),
                body="EventBatch",
                params=(
                    _TERMINAL_PARAM,
                    {**_idem("{terminal}:{first_seq}-{last_seq}"), "required": False},
                    _encoding(),
                ),
            )
        },
        "/v1/terminals/{terminal}/events/head": {
            "get": operation(
                "Highest seq held for the terminal and its hash",
                ("EventsHead", "acked_seq 0 and head_hash null when nothing is held"),
                ("bad-request", *_AUTH, *_COMMON_FAULTS),
                params=(_TERMINAL_PARAM,),
            )
        },
        "/v1/terminals/{terminal}/heartbeat": {
            "post": operation(
                "Terminal health; records the journal head as an anchor",
                ("HeartbeatReply", "Recorded"),
                (*body_problems, *_AUTH, *_COMMON_FAULTS),
                body="Heartbeat",
                params=(_TERMINAL_PARAM, _encoding()),
            )
        },
        "/v1/authorizations": {
            "post": operation(
                "Authorize one attempt of a sale (idempotent per attempt; a reversal "
                "recorded first refuses it; card is never stored)",
                ("AuthorizationResponse", "Decided (or the first decision, replayed)"),
                (
                    *body_problems,
                    "missing-idempotency-key",
                    *_AUTH,
                    "in-progress",
                    "idempotency-mismatch",
                    *_COMMON_FAULTS,
                ),
                body="AuthorizationRequest",
                params=(
                    _idem("The attempt, {txn}:online | {txn}:forward; equals the body's attempt."),
                    _encoding(),
                ),
            )
        },
        "/v1/reversals": {
            "post": operation(
                "Reverse one attempt, known or not (always acknowledged, idempotent; "
                "releases only that attempt)",
                ("ReversalResponse", "Acknowledged"),
                (
                    *body_problems,
                    "missing-idempotency-key",
                    *_AUTH,
                    "idempotency-mismatch",
                    *_COMMON_FAULTS,
                ),
                body="ReversalRequest",
                params=(_idem("{attempt}:reversal; equals the body's reversal."), _encoding()),
            )
        },
        "/v1/enrol": {
            "post": operation(
                "Enrol a terminal: a one-time code (it authenticates; no bearer token) and the "
                "terminal's new Ed25519 public key, for its id and bearer token",
                ("EnrolmentResponse", "Enrolled; the token is shown once, stored hashed"),
                (
                    *body_problems,
                    "enrolment-code-unknown",
                    "enrolment-code-used",
                    "enrolment-code-expired",
                    "terminal-revoked",
                    *_COMMON_FAULTS,
                ),
                body="EnrolmentRequest",
                params=(_encoding(),),
                secure=False,
            )
        },
        "/v1/terminals/{terminal}/token": {
            "post": operation(
                "Rotate an enrolled terminal's token: the current token authenticates, the "
                "device key signs a fresh nonce; the old token stops working",
                ("TokenRotationResponse", "The new token; the old one is refused from now on"),
                (
                    *body_problems,
                    *_AUTH,
                    "signature-invalid",
                    "nonce-reused",
                    "conflict",
                    *_COMMON_FAULTS,
                ),
                body="TokenRotationRequest",
                params=(_TERMINAL_PARAM, _encoding()),
            )
        },
        "/healthz": {
            "get": operation("Liveness", ("Health", "Up"), (), secure=False),
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
    }
    schemas = component_schemas(_MODELS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "posedge sync and authorization protocol",
            "version": "2",
            "description": "Agent ⇄ back office contract; prose in docs/sync-protocol.md. "
            "Every error is application/problem+json (RFC 9457) with type "
            f"{PROBLEM_BASE}<kind>. /admin/* exists only on the reference back office.",
        },
        "servers": [{"url": "http://127.0.0.1:8700", "description": "reference back office"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One token per terminal: from the back office's tokens "
                    "file, or issued at enrolment (POST /v1/enrol); none in open mode.",
                }
            },
            "headers": {
                "Date": {"description": "RFC 9110 date", "schema": {"type": "string"}},
                "Retry-After": {
                    "description": "delay-seconds or an HTTP-date (RFC 9110 §10.2.3)",
                    "schema": {"type": "string"},
                },
            },
        },
    }


def render(document: dict[str, Any] | None = None) -> str:
    """The document as written to docs/openapi-sync.json."""
    return json.dumps(document or build_document(), indent=2, ensure_ascii=False) + "\n"
