"""RFC 9457 problem documents for every error the till API answers.

Each problem type is ``https://posedge.dev/problems/<name>``; the table below
is the list docs/api.md documents. This module only builds responses; it must
never put request contents (bodies, tokens, card data, ids the client sent)
into a problem document — callers pass field names and rules, not values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

PROBLEM_BASE = "https://posedge.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# name -> (status, title)
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "missing-idempotency-key": (400, "Missing Idempotency-Key"),
    "invalid-idempotency-key": (400, "Invalid Idempotency-Key"),
    "unauthorized": (401, "Unauthorized"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "reader-busy": (409, "Card reader busy"),
    "state-conflict": (409, "Sale state does not allow this"),
    "already-closed": (409, "Business day already closed"),
    "close-in-progress": (409, "Another close is running"),
    "payload-too-large": (413, "Payload too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation": (422, "Invalid request body"),
    "card-data": (422, "Card data refused"),
    "idempotency-mismatch": (422, "Idempotency-Key reused with a different body"),
    "internal": (500, "Internal error"),
    "not-accepting": (503, "Not accepting sales"),
}


class Refused(Exception):
    """Carries a problem out of a request helper to the endpoint wrapper."""

    def __init__(
        self,
        name: str,
        detail: str,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(name)
        self.name = name
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})
        self.status = status


def field_error(field: str, message: str) -> Refused:
    """A 4xx naming one field; the problem type follows from where the field sits."""
    return Refused("validation", f"{field}: {message}", [{"field": field, "message": message}])


def problem_document(
    name: str,
    detail: str,
    instance: str | None = None,
    errors: Sequence[Mapping[str, str]] = (),
    status: int | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    known_status, title = PROBLEM_TYPES.get(name, (status or 400, name.replace("-", " ")))
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + name,
        "title": title,
        "status": status or known_status,
        "detail": detail,
    }
    if instance is not None:
        doc["instance"] = instance
    doc["errors"] = [dict(e) for e in errors]
    doc.update({k: v for k, v in extensions.items() if v is not None})
    return doc


def problem(
    name: str,
    detail: str,
    instance: str | None = None,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
    **extensions: Any,
) -> Response:
    """An ``application/problem+json`` response."""
    doc = problem_document(name, detail, instance, errors, status, **extensions)
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(),
        status_code=doc["status"],
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers) if headers else None,
    )


def refused_response(refused: Refused, instance: str | None = None) -> Response:
    return problem(
        refused.name,
        refused.detail,
        instance,
        refused.errors,
        refused.headers,
        refused.status,
    )
