"""Attempt and reversal ids, and the body fingerprint idempotency compares (docs/sync-protocol.md).

A sale ``txn`` has at most two authorization attempts, ``{txn}:online`` and
``{txn}:forward``; a reversal names one attempt and its id is
``{attempt}:reversal``. Each id is also the ``Idempotency-Key`` of its request.
Two bodies sent with the same key are the same request exactly when their
:func:`fingerprint` agrees; for authorizations it is taken without ``card``
(never kept) and without ``attempt`` (it equals the key), see
:data:`AUTHORIZATION_UNFINGERPRINTED`. Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ONLINE = "online"
FORWARD = "forward"
REVERSAL = "reversal"

# Authorization body fields left out of its fingerprint.
AUTHORIZATION_UNFINGERPRINTED = frozenset({"card", "attempt"})


def online_attempt(txn: str) -> str:
    """The id (and Idempotency-Key) of a sale's online authorization attempt."""
    return f"{txn}:{ONLINE}"


def forward_attempt(txn: str) -> str:
    """The id (and Idempotency-Key) of a sale's forward attempt (offline-approved, sent later)."""
    return f"{txn}:{FORWARD}"


def reversal_id(attempt: str) -> str:
    """The id (and Idempotency-Key) of the reversal of ``attempt``."""
    return f"{attempt}:{REVERSAL}"


def canonical_json(doc: dict[str, Any]) -> bytes:
    """``doc`` as canonical JSON bytes: sorted keys, no spaces, UTF-8 as is. A request
    journaled once and sent as these bytes is re-sent byte for byte."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``doc`` as canonical JSON: sorted keys, no spaces, UTF-8 as is.

    Callers leave out what the comparison must ignore (for an authorization,
    :data:`AUTHORIZATION_UNFINGERPRINTED`); ``doc`` must never hold card data
    when the result is stored.
    """
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def authorization_fingerprint(doc: dict[str, Any]) -> str:
    """The fingerprint of an authorization body (without ``card`` and ``attempt``)."""
    return fingerprint({k: v for k, v in doc.items() if k not in AUTHORIZATION_UNFINGERPRINTED})
