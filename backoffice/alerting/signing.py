"""The webhook signature: HMAC-SHA256 under the receiver's secret over ``timestamp.body``.

Header ``Posedge-Signature: t=<unix seconds>,v1=<hex digest>`` (Stripe's layout): the
receiver recomputes ``HMAC-SHA256(secret, f"{t}.".encode() + raw_body)``, compares in
constant time, and refuses a timestamp older than its tolerance (a replayed request).
:func:`verify` is that recipe (docs/alerts.md shows it standalone).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Posedge-Signature"
ID_HEADER = "Posedge-Notification-Id"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str,
    value: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a ``Posedge-Signature`` header; returns its timestamp or raises SignatureError."""
    if not value:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in value.split(","):
        key, sep, text = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(text)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()):
        raise SignatureError(f"{SIGNATURE_HEADER} has no t=<unix seconds>")
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"signed at {timestamp}, more than {tolerance_s:g}s from now")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("no v1 signature matches the body under this secret")
    return timestamp
