"""The PAN-token key: random, held only in this process's memory, replaced every UTC day.

A PAN token (``pan_token``: HMAC-SHA256 of the PAN, 64 hex) is journaled next to
the masked PAN (first 6 and last 4 digits) so that the agent and the back office
can tell "the same card as before" (repeated declines, a duplicate swipe). Six
hidden digits are 10^6 guesses, 10^5 after Luhn: anyone holding the token key
recovers the full number from a token in well under a second. So the key must
be somewhere a stolen state directory, journal export or backup is not — it is
never written anywhere: it is created with :func:`secrets.token_bytes` on first
use in the process, kept only in memory, and replaced (the old one dropped) at
the first card read of each new UTC day. Tokens therefore match for the same
card within one process lifetime and one UTC calendar day; a restart or
midnight UTC starts a new key. docs/card-data.md has the threat model.

This module must never write, log, print, journal, export or put in a ``repr``
or an error the key, and nothing here may derive it from a file.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

TOKEN_KEY_BYTES = 32


def _utc_today() -> date:
    return datetime.now(UTC).date()


class PanTokenKey:
    """Callable key source for :class:`posedge.drivers.cardreader.CardReader`.

    ``key()`` returns the key of the current window (the UTC date from
    ``today``), making a new random key when the date has changed. Thread-safe.
    """

    def __init__(self, today: Callable[[], date] = _utc_today) -> None:
        self._today = today
        self._lock = threading.Lock()
        self._window: date | None = None
        self._key = b""

    def __call__(self) -> bytes:
        now = self._today()
        with self._lock:
            if now != self._window:
                self._key = secrets.token_bytes(TOKEN_KEY_BYTES)
                self._window = now
            return self._key

    @property
    def window(self) -> date | None:
        """The UTC date the current key belongs to (None before the first card)."""
        return self._window

    def __repr__(self) -> str:
        return f"PanTokenKey(window={self._window})"


_PROCESS_KEY = PanTokenKey()


def pan_token_key() -> PanTokenKey:
    """The process-wide PAN-token key source.

    One per process, so a reader reopened after an unplug or a reload keeps
    producing the same tokens for the same card within the day.
    """
    return _PROCESS_KEY
