"""The OpenAPI 3.1 document of the till API, built from the models that validate requests.

``OPENAPI_DOCUMENT`` is what ``GET /openapi.json`` serves; ``docs/openapi-api.json``
is this document written out (``python -m posedge.agent.api openapi --write
docs/openapi-api.json``) and a test fails when the two differ. This module
must never do I/O at import and never depend on configuration (the document is
the same on every terminal; the configured currencies are named in prose).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from posedge.protocol.openapi import component_schemas
from posedge.protocol.openapi import ref as _ref

from .models import (
    MAX_AMOUNT,
    CloseAnswer,
    CloseCreate,
    FieldError,
    Health,
    Problem,
    Receipt,
    Sale,
    SaleCreate,
    Status,
)
from .problems import PROBLEM_BASE, PROBLEM_TYPES

_MODELS: tuple[type[BaseModel], ...] = (
    SaleCreate,
    Sale,
    Receipt,
    Problem,
    FieldError,
    Health,
    Status,
    CloseCreate,
    CloseAnswer,
)
_MAX_WAIT_S = 60  # app.MAX_WAIT_S; kept literal here so this module imports nothing heavy


def _problems(*names: str) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for name in names:
        by_status.setdefault(PROBLEM_TYPES[name][0], []).append(name)
    out: dict[str, Any] = {}
    for status, kinds in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"{PROBLEM_BASE}{k}" for k in kinds),
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = response
    return out


_SALE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The sale id from POST /v1/sales.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}
_AUTH = ("unauthorized",)
_ALWAYS = ("internal",)


def _ok(status: str, name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": _ref(name)}},
            **extra,
        }
    }


def _sale_action(summary: str, conflict: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": conflict,
            "parameters": [_SALE_ID],
            "responses": {
                **_ok("200", "Sale", "The sale after the request"),
                **_problems(*_AUTH, "not-found", "state-conflict", *_ALWAYS),
            },
        }
    }


_CLOSE_REF = {
    "name": "close",
    "in": "path",
    "required": True,
    "description": "A close's day.closed seq, a business day YYYY-MM-DD, or latest.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 32},
}


def _close_paths() -> dict[str, Any]:
    """The end-of-day close (docs/close.md)."""
    return {
        "/v1/close": {
            "post": {
                "summary": "Close the business day: journal day.closed, print the Z-report",
                "description": "A Z-report that did not print is in print.error; the close "
                "is kept (reprint it later).",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("CloseCreate")}},
                },
                "responses": {
                    **_ok("201", "CloseAnswer", "Closed (and printed, or why not)"),
                    **_problems(
                        "bad-request",
                        *_AUTH,
                        "not-found",
                        "already-closed",
                        "close-in-progress",
                        "payload-too-large",
                        "validation",
                        *_ALWAYS,
                    ),
                },
            }
        },
        "/v1/close/{close}": {
            "get": {
                "summary": "A close; with lines=true its per-sale lines (recomputed)",
                "parameters": [
                    _CLOSE_REF,
                    {
                        "name": "lines",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    **_ok("200", "CloseAnswer", "The close"),
                    **_problems("bad-request", *_AUTH, "not-found", "validation", *_ALWAYS),
                },
            }
        },
        "/v1/close/{close}/reprint": {
            "post": {
                "summary": "Print a close's Z-report again (marked REPRINT)",
                "parameters": [_CLOSE_REF],
                "responses": {
                    **_ok("200", "CloseAnswer", "The close and the print's result"),
                    **_problems(*_AUTH, "not-found", "validation", *_ALWAYS),
                },
            }
        },
    }


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/sales": {
            "post": {
                "summary": "Start a card sale (the reader is armed; poll the sale for its outcome)",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "description": "A new key per sale; the same key and body when "
                        "retrying returns the same sale, a different body is 422.",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 128,
                            "pattern": "^[\\x20-\\x7e]+$",
                        },
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SaleCreate")}},
                },
                "responses": {
                    **_ok(
                        "202",
                        "Sale",
                        "Accepted (or the same sale again for a retried key)",
                        headers={
                            "Location": {
                                "description": "/v1/sales/{id}",
                                "schema": {"type": "string"},
                            }
                        },
                    ),
                    **_problems(
                        "bad-request",
                        "missing-idempotency-key",
                        "invalid-idempotency-key",
                        *_AUTH,
                        "reader-busy",
                        "payload-too-large",
                        "unsupported-media-type",
                        "validation",
                        "card-data",
                        "idempotency-mismatch",
                        "not-accepting",
                        *_ALWAYS,
                    ),
                },
            }
        },
        "/v1/sales/{id}": {
            "get": {
                "summary": "The sale; with wait, long-polls until it is final or the wait ends",
                "parameters": [
                    _SALE_ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "description": "Seconds to wait for a final state (0 to 60; default 0).",
                        "schema": {"type": "number", "minimum": 0, "maximum": _MAX_WAIT_S},
                    },
                ],
                "responses": {
                    **_ok("200", "Sale", "The sale (final, or as it stands when the wait ended)"),
                    **_problems("bad-request", *_AUTH, "not-found", *_ALWAYS),
                },
            }
        },
        "/v1/sales/{id}/cancel": _sale_action(
            "Cancel a sale before a card is read", "409 once a card was read."
        ),
        "/v1/sales/{id}/void": _sale_action(
            "Void an approved sale", "409 unless approved or approved offline."
        ),
        "/v1/sales/{id}/reprint": _sale_action(
            "Print the receipt again (after a printer fault)", "409 before the sale is final."
        ),
        **_close_paths(),
        "/v1/status": {
            "get": {
                "summary": "Devices, network, offline exposure per currency, backlog, "
                "in-doubt count, active alerts",
                "responses": {
                    **_ok("200", "Status", "Agent status"),
                    **_problems(*_AUTH, *_ALWAYS),
                },
            }
        },
        "/v1/health": {
            "get": {
                "summary": "Liveness (no token needed)",
                "security": [],
                "responses": _ok("200", "Health", "The API is up"),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "posedge till API",
            "version": "1",
            "description": "The till's local API to the posedge agent; prose in docs/api.md. "
            "Served on a Unix socket (mode 0660) and optionally on loopback TCP. Every error "
            f"is application/problem+json (RFC 9457) with type {PROBLEM_BASE}<name>. Amounts "
            f"are integer minor units, 1 to {MAX_AMOUNT}; currency must be one of the "
            "terminal's configured sales.currencies.",
        },
        "servers": [{"url": "http://localhost", "description": "over the agent's Unix socket"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": component_schemas(_MODELS),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token in <state dir>/api-token (or api.token_file).",
                }
            },
        },
    }


OPENAPI_DOCUMENT: dict[str, Any] = build_document()


def render() -> str:
    """The document as written to docs/openapi-api.json."""
    return json.dumps(OPENAPI_DOCUMENT, indent=2, ensure_ascii=False) + "\n"


OPENAPI_BYTES = json.dumps(OPENAPI_DOCUMENT, separators=(",", ":")).encode()
