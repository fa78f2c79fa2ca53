"""RFC 9457 problem responses of the back office (types: :mod:`posedge.protocol.problems`).

This module builds responses only; it must never put request contents (card
data, tokens) into a problem document.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from posedge.protocol.problems import (
    PROBLEM_BASE,
    PROBLEM_MEDIA_TYPE,
    PROBLEM_TYPES,
    problem_document,
)

__all__ = ["PROBLEM_BASE", "PROBLEM_MEDIA_TYPE", "PROBLEM_TYPES", "problem", "problem_document"]


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
