"""RFC 9457 problem details for every error the reference back office answers.

The ``type`` URIs are the ones listed in docs/sync-protocol.md ("Problem
types"). This module builds responses only; it must never put request
contents (card data, tokens) into a problem document.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

PROBLEM_BASE = "https://posedge.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# kind -> (status, title)
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "missing-idempotency-key": (400, "Missing Idempotency-Key"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "sequence-gap": (409, "Sequence gap"),
    "chain-mismatch": (409, "Chain mismatch"),
    "conflict": (409, "Conflict"),
    "in-progress": (409, "Request in progress"),
    "payload-too-large": (413, "Payload too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation": (422, "Invalid request body"),
    "idempotency-mismatch": (422, "Idempotency key reused with a different body"),
    "rate-limited": (429, "Too many requests"),
    "internal": (500, "Internal server error"),
    "unavailable": (503, "Service unavailable"),
}


def problem_document(kind: str, detail: str, instance: str, **extensions: Any) -> dict[str, Any]:
    status, title = PROBLEM_TYPES[kind]
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    doc.update({k: v for k, v in extensions.items() if v is not None})
    return doc


def problem(
    kind: str,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A ``application/problem+json`` response of the given problem type."""
    doc = problem_document(kind, detail, instance, **extensions)
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(),
        status_code=doc["status"],
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )
