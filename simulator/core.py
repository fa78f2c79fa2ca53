"""The device side of every simulated link, and the byte-level faults.

A :class:`VirtualDevice` receives the bytes the host (the driver) writes via
:meth:`VirtualDevice.receive` and queues its replies with
:meth:`VirtualDevice.send`. Links (pseudo-terminal, TCP, pyusb backend,
in-process) move bytes between a transport and the device; they pull replies
with :meth:`VirtualDevice.take` and watch :attr:`VirtualDevice.plugged`.

Byte-level faults live here so every device and every link gets them:
``no_response`` (replies are swallowed), ``slow_response`` (replies are held
for ``delay_s``), ``garbage`` (junk bytes precede the next reply),
``split`` (replies come out in chunks of ``chunk`` bytes with ``gap_s``
between them) and unplug/replug. Device-specific faults (paper out, bad LRC,
...) belong to the device subclasses.

Never used by production code paths except through the ``sim://`` transport.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PlugListener = Callable[[bool], None]


@dataclass
class ByteFaults:
    """Byte-level faults, changeable at run time (thread-safe through the device lock)."""

    no_response: bool = False
    slow_response_s: float = 0.0
    garbage: bytes = b""
    garbage_repeat: bool = False
    split_chunk: int = 0
    split_gap_s: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "no_response": self.no_response,
            "slow_response_s": self.slow_response_s,
            "garbage": self.garbage.hex(),
            "split_chunk": self.split_chunk,
        }


@dataclass
class _Pending:
    data: bytes
    ready_at: float


class VirtualDevice(abc.ABC):
    """Base of the simulated printer and card reader."""

    kind: str = "device"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._outbox: list[_Pending] = []
        self._plugged = True
        self._listeners: list[PlugListener] = []
        self.faults = ByteFaults()
        self.received_total = 0

    # ---- host → device -------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes the host wrote. Ignored while unplugged (they went nowhere)."""
        if not data:
            return
        with self._cond:
            if not self._plugged:
                return
            self.received_total += len(data)
        self.on_bytes(bytes(data))

    @abc.abstractmethod
    def on_bytes(self, data: bytes) -> None:
        """Interpret host bytes; reply with :meth:`send`."""

    # ---- device → host -------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue a reply, applying the byte-level faults."""
        with self._cond:
            if not self._plugged or self.faults.no_response or not data:
                return
            if self.faults.garbage:
                data = self.faults.garbage + data
                if not self.faults.garbage_repeat:
                    self.faults.garbage = b""
            ready = time.monotonic() + self.faults.slow_response_s
            chunk = self.faults.split_chunk
            if chunk > 0:
                for offset in range(0, len(data), chunk):
                    self._outbox.append(_Pending(data[offset : offset + chunk], ready))
                    ready += self.faults.split_gap_s
            else:
                self._outbox.append(_Pending(data, ready))
            self._cond.notify_all()

    def take(self, max_bytes: int, timeout_s: float) -> bytes:
        """Up to ``max_bytes`` of reply bytes that are due; b"" after ``timeout_s``.

        One pending chunk at most per call, so split replies stay split.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                if self._outbox and self._outbox[0].ready_at <= now:
                    head = self._outbox[0]
                    out = head.data[:max_bytes]
                    if len(out) == len(head.data):
                        self._outbox.pop(0)
                    else:
                        head.data = head.data[max_bytes:]
                    return out
                if now >= deadline:
                    return b""
                wake = deadline
                if self._outbox:
                    wake = min(wake, self._outbox[0].ready_at)
                self._cond.wait(max(0.0, wake - now))

    def pending_output(self) -> int:
        with self._cond:
            return sum(len(p.data) for p in self._outbox)

    def clear_output(self) -> None:
        with self._cond:
            self._outbox.clear()

    # ---- plug state ----------------------------------------------------
    @property
    def plugged(self) -> bool:
        return self._plugged

    def add_plug_listener(self, listener: PlugListener) -> None:
        self._listeners.append(listener)

    def remove_plug_listener(self, listener: PlugListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def unplug(self) -> None:
        self._set_plugged(False)

    def replug(self) -> None:
        self._set_plugged(True)

    def _set_plugged(self, plugged: bool) -> None:
        with self._cond:
            if self._plugged == plugged:
                return
            self._plugged = plugged
            self._outbox.clear()
            self._cond.notify_all()
        for listener in list(self._listeners):
            listener(plugged)

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` holds (checked on every device event)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def notify_changed(self) -> None:
        """Subclasses call this after a state change so waiters re-check."""
        with self._cond:
            self._cond.notify_all()

    # ---- faults by name (run time commands and scenario files) ---------
    def apply_fault(self, name: str, **params: Any) -> None:
        """Apply a byte-level fault by name; subclasses extend with their own."""
        with self._cond:
            if name == "no_response":
                self.faults.no_response = bool(params.get("on", True))
            elif name == "slow_response":
                self.faults.slow_response_s = float(params.get("delay_s", 0.5))
            elif name == "garbage":
                self.faults.garbage = bytes.fromhex(str(params.get("hex", "ff00a5")))
                self.faults.garbage_repeat = bool(params.get("repeat", False))
            elif name == "split":
                self.faults.split_chunk = int(params.get("chunk", 1))
                self.faults.split_gap_s = float(params.get("gap_s", 0.005))
            elif name == "clear":
                self.faults = ByteFaults()
            elif name in ("unplug", "replug"):
                pass  # handled below, outside the lock (listeners may take it)
            else:
                raise ValueError(f"unknown fault {name!r} for {self.kind}")
        if name == "unplug":
            self.unplug()
        elif name == "replug":
            self.replug()
