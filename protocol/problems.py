"""RFC 9457 problem documents of the sync protocol (docs/sync-protocol.md, "Problem types").

The one list of problem types both sides use: the back office answers with
:func:`problem_document`, the agent and the fleet simulator read ``type`` to
decide what to do. Pure: no I/O. A problem document must never carry request
contents (card data, tokens).
"""

from __future__ import annotations

from typing import Any

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
    # Enrolment and signed history (docs/sync-protocol.md).
    "enrolment-code-unknown": (403, "Unknown enrolment code"),
    "enrolment-code-used": (403, "Enrolment code already used"),
    "enrolment-code-expired": (403, "Enrolment code expired"),
    "terminal-revoked": (403, "Terminal revoked"),
    "signature-required": (401, "Signature required"),
    "signature-invalid": (403, "Invalid signature"),
    "nonce-reused": (409, "Nonce already used"),
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


def problem_kind(type_uri: str | None) -> str | None:
    """The kind (``sequence-gap``, …) of a problem ``type`` URI, or None if it is not ours."""
    if type_uri and type_uri.startswith(PROBLEM_BASE):
        kind = type_uri[len(PROBLEM_BASE) :]
        return kind if kind in PROBLEM_TYPES else None
    return None
