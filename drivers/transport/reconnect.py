"""Hot-plug recovery: a transport that reopens its device after an unplug.

:class:`ReconnectingTransport` wraps a factory that opens the real transport.
When the inner transport raises :class:`DeviceUnplugged` it is closed and the
error is re-raised at once (so a print job knows it failed). Calls made while
disconnected fail fast with :class:`DeviceUnplugged`, except when a reconnect
attempt is due: then the factory is tried, and on success the call goes
through. Attempts are spaced by exponential backoff, capped, with jitter, so a
missing device costs almost nothing.

This module must never sleep inside ``read``/``write`` waiting for a device
(callers decide whether to wait, e.g. with :meth:`wait_connected`), and never
retry the caller's I/O by itself: bytes may have reached the device.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import DeviceError, DeviceUnplugged, UnsupportedURL
from .base import Transport

INITIAL_BACKOFF_S = 0.1
MAX_BACKOFF_S = 30.0
JITTER_FRACTION = 0.25

StateListener = Callable[[bool, DeviceError | None], None]
"""Called with (connected, last_error) on every connect and disconnect."""

T = TypeVar("T")


class ReconnectingTransport(Transport):
    """A :class:`Transport` that survives unplug/replug of its device."""

    def __init__(
        self,
        factory: Callable[[], Transport],
        url: str,
        *,
        initial_backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        jitter: float = JITTER_FRACTION,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        on_state_change: StateListener | None = None,
    ) -> None:
        self.url = url
        self._factory = factory
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._jitter = jitter
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._listener = on_state_change
        self._lock = threading.RLock()
        self._inner: Transport | None = None
        self._closed = False
        self._failures = 0
        self._next_attempt_at = clock()
        self.reconnects = 0
        self.last_error: DeviceError | None = None
        with contextlib.suppress(DeviceUnplugged):
            self._connect(initial=True)  # absent at start: retried on the backoff schedule

    # ---- state --------------------------------------------------------------
    @property
    def connected(self) -> bool:
        with self._lock:
            return self._inner is not None

    @property
    def is_open(self) -> bool:
        return self.connected

    @property
    def next_attempt_in_s(self) -> float:
        """Seconds until a reconnect attempt is allowed (0 when connected or due)."""
        with self._lock:
            if self._inner is not None:
                return 0.0
            return max(0.0, self._next_attempt_at - self._clock())

    def backoff_s(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failed attempts (capped, jittered)."""
        base = min(self._max_backoff_s, self._initial_backoff_s * 2.0 ** max(0, failures - 1))
        return base * (1.0 - self._jitter * self._rng())

    # ---- connecting ---------------------------------------------------------
    def _connect(self, *, initial: bool = False) -> Transport:
        """Open the inner transport now; on failure schedule the next attempt and raise."""
        try:
            inner = self._factory()
        except UnsupportedURL:
            raise
        except DeviceError as exc:
            self._failures += 1
            self._next_attempt_at = self._clock() + self.backoff_s(self._failures)
            self.last_error = exc
            if initial:
                self._notify(False, exc)
            raise DeviceUnplugged(
                f"device not available ({exc.message}); "
                f"next attempt in {self.next_attempt_in_s:.2g}s",
                url=self.url,
            ) from exc
        self._inner = inner
        self._failures = 0
        if not initial:
            self.reconnects += 1
        self._notify(True, None)
        return inner

    def _current(self) -> Transport:
        with self._lock:
            if self._closed:
                raise DeviceUnplugged("transport is closed", url=self.url)
            if self._inner is not None:
                return self._inner
            if self._clock() < self._next_attempt_at:
                raise DeviceUnplugged(
                    f"device disconnected ({self._last_message()}); "
                    f"next reconnect attempt in {self.next_attempt_in_s:.2g}s",
                    url=self.url,
                )
            return self._connect()

    def reconnect_now(self) -> bool:
        """Try to open the device at once, ignoring the backoff schedule."""
        with self._lock:
            if self._closed:
                return False
            if self._inner is not None:
                return True
            self._next_attempt_at = self._clock()
            try:
                self._connect()
            except DeviceUnplugged:
                return False
            return True

    def wait_connected(self, timeout_s: float) -> bool:
        """Retry on the backoff schedule until connected or ``timeout_s`` passes."""
        deadline = self._clock() + timeout_s
        while True:
            try:
                self._current()
                return True
            except DeviceUnplugged:
                if self._closed:
                    return False
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(remaining, max(self.next_attempt_in_s, 0.001)))

    def _lost(self, inner: Transport, exc: DeviceUnplugged) -> None:
        with self._lock:
            if self._inner is not inner:
                return  # another thread already handled this unplug
            self._inner = None
            self.last_error = exc
            self._failures = 0
            self._next_attempt_at = self._clock() + self.backoff_s(1)
        inner.close()
        self._notify(False, exc)

    def _last_message(self) -> str:
        return self.last_error.message if self.last_error else "not connected"

    def _notify(self, connected: bool, error: DeviceError | None) -> None:
        if self._listener is not None:
            self._listener(connected, error)

    # ---- Transport ----------------------------------------------------------
    def _call(self, op: Callable[[Transport], T]) -> T:
        inner = self._current()
        try:
            return op(inner)
        except DeviceUnplugged as exc:
            self._lost(inner, exc)
            raise

    def write(self, data: bytes) -> None:
        self._call(lambda t: t.write(data))

    def read(self, size: int, timeout_s: float) -> bytes:
        return self._call(lambda t: t.read(size, timeout_s))

    def flush_input(self) -> None:
        self._call(lambda t: t.flush_input())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()
