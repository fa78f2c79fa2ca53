"""Waiting between attempts: full-jitter exponential backoff that honours Retry-After.

Backoff is tenacity's ``wait_random_exponential`` (uniform between 0 and
``min(cap, initial × 2^attempt)``, the "full jitter" of the AWS architecture
blog). A server's ``Retry-After`` (seconds or an HTTP date) replaces it for
that attempt, capped so a broken server cannot park the agent for days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, wait_random_exponential
from tenacity.wait import wait_base

from .errors import BackofficeRejected, SyncError


class wait_retry_after_or_jitter(wait_base):
    """Retry-After when the server sent one (capped), else full-jitter backoff.

    Permanent rejections wait ``permanent_s``: the data is kept and retried slowly.
    """

    def __init__(
        self, initial_s: float, cap_s: float, retry_after_cap_s: float, permanent_s: float
    ) -> None:
        self.jitter = wait_random_exponential(multiplier=initial_s, max=cap_s)
        self.retry_after_cap_s = retry_after_cap_s
        self.permanent_s = permanent_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, BackofficeRejected):
            return self.permanent_s
        if isinstance(exc, SyncError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.retry_after_cap_s)
        return float(self.jitter(retry_state))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP date. None when absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)
