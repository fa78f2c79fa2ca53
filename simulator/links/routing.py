"""One reply pump per device, routing replies to the link the host last used.

``posedge simulate devices`` serves each device on a pty and on TCP at once.
If every link pulled replies itself, a reply could be taken by a link whose
host is gone. Instead links :func:`attach` a sink; a single thread per device
takes replies and hands each to the owning link: the one that last called
:func:`claim` (host bytes or a new host connection arrived), else the link
attached first.

This module must never hold a strong reference to a device after its last
link detaches, and never drops a reply while some link is attached.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable

from ..core import VirtualDevice

Sink = Callable[[bytes], None]
READ_CHUNK_BYTES = 4096
POLL_S = 0.1


class _Router:
    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.sinks: dict[int, Sink] = {}
        self.owner: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"replies-{device.kind}", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            data = self.device.take(READ_CHUNK_BYTES, POLL_S)
            if data:
                sink = self._sink()
                if sink is not None:
                    sink(data)

    def _sink(self) -> Sink | None:
        with _lock:
            if self.owner in self.sinks:
                return self.sinks[self.owner]
            return next(iter(self.sinks.values()), None)


_lock = threading.Lock()
_routers: dict[int, _Router] = {}


def attach(device: VirtualDevice, link: object, sink: Sink) -> None:
    """Start delivering ``device``'s replies to ``sink`` (when ``link`` owns the device)."""
    with _lock:
        router = _routers.get(id(device))
        if router is None:
            router = _routers[id(device)] = _Router(device)
            router.thread.start()
        router.sinks[id(link)] = sink


def detach(device: VirtualDevice, link: object) -> None:
    """Stop delivering to ``link``; the last detach stops the device's pump."""
    with _lock:
        router = _routers.get(id(device))
        if router is None:
            return
        router.sinks.pop(id(link), None)
        if router.owner == id(link):
            router.owner = None
        if router.sinks:
            return
        del _routers[id(device)]
    router.stop.set()
    if router.thread is not threading.current_thread():
        router.thread.join()


def claim(device: VirtualDevice, link: object) -> None:
    """Route ``device``'s replies to ``link`` from now on."""
    with _lock:
        router = _routers.get(id(device))
        if router is not None:
            router.owner = id(link)


# ---- helpers every link's pump threads share ------------------------------------
Waitable = int | socket.socket


def write_all(
    data: bytes,
    write: Callable[[memoryview], int],
    target: Waitable,
    stop: threading.Event,
    wake: int,
) -> None:
    """Write all of ``data`` through a non-blocking ``target``; give up on stop or error."""
    view = memoryview(data)
    while view and not stop.is_set():
        _, writable, _ = select.select([wake], [target], [], POLL_S)
        if stop.is_set():
            return
        if not writable:
            continue
        try:
            view = view[write(view) :]
        except BlockingIOError:
            continue
        except OSError:
            return


def halt(
    device: VirtualDevice,
    link: object,
    stop: threading.Event,
    wake_w: int,
    threads: list[threading.Thread],
) -> None:
    """Stop a link's pump threads: signal, wake their select, detach, join."""
    stop.set()
    os.write(wake_w, b"x")
    detach(device, link)
    current = threading.current_thread()
    for thread in threads:
        if thread is not current:
            thread.join()
