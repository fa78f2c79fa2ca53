"""The back office's OpenAPI document: the protocol's (:mod:`posedge.protocol.openapi`)
plus the back office's own admin routes. ``OPENAPI_DOCUMENT`` is what
``GET /openapi.json`` serves. This module must never do I/O at import."""

from __future__ import annotations

from typing import Any

from posedge.protocol.openapi import build_document, component_schemas, operation

from .policy import AuthorizationPolicy


def backoffice_document() -> dict[str, Any]:
    doc = build_document()
    doc["paths"]["/admin/policy"] = {
        method: operation(
            summary,
            ("AuthorizationPolicy", "The authorization policy in force"),
            ("validation", "not-found"),
            body="AuthorizationPolicy" if method == "put" else None,
            secure=False,
        )
        for method, summary in (
            ("get", "Admin API (--admin or open mode): authorization outcomes"),
            ("put", "Admin API (--admin or open mode): replace the authorization outcomes"),
        )
    }
    schemas = doc["components"]["schemas"]
    schemas.update(component_schemas([AuthorizationPolicy]))
    doc["components"]["schemas"] = dict(sorted(schemas.items()))
    return doc


OPENAPI_DOCUMENT: dict[str, Any] = backoffice_document()
