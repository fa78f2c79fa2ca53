"""Recent swipe outcomes: the evidence behind ``reader.errors`` (read-error rate).

The sale engine records one outcome per swipe the reader delivered (read, or unreadable);
timeouts and cancellations are not swipes. Only booleans are kept: never card data.
Thread-safe (the engine records on the event loop, checks read from worker threads).
"""

from __future__ import annotations

import threading
from collections import deque

MAX_KEPT = 10_000


class SwipeOutcomes:
    def __init__(self, keep: int = 1000) -> None:
        self._outcomes: deque[bool] = deque(maxlen=max(1, min(keep, MAX_KEPT)))
        self._lock = threading.Lock()
        self.total = 0
        self.failed_total = 0

    def record(self, ok: bool) -> None:
        with self._lock:
            self._outcomes.append(ok)
            self.total += 1
            self.failed_total += 0 if ok else 1

    def recent(self, window: int) -> tuple[int, int]:
        """(failed, swipes) among the last ``window`` swipes."""
        with self._lock:
            last = list(self._outcomes)[-window:] if window > 0 else []
        return sum(1 for ok in last if not ok), len(last)
