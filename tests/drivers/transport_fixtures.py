"""Shared test helpers: an echo device and one opener per link kind.

Imported by the transport and link tests (no conftest, so each test module
states what it uses). Every opener yields a callable that opens a fresh
:class:`Transport` to the same device, so reconnect tests can reopen it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from posedge.drivers.transport import open_transport
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.serial import SerialParams, SerialTransport
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.drivers.transport.usb import UsbTransport
from posedge.simulator.core import VirtualDevice
from posedge.simulator.links.pty import PtyLink
from posedge.simulator.links.tcp import TcpLink
from posedge.simulator.links.usb_backend import SimUsbBackend

LINK_KINDS = ("pty", "tcp", "usb", "inprocess")
TEST_PARAMS = SerialParams(baudrate=9600, timeout_s=1.0, write_timeout_s=1.0)
_names = itertools.count()

Opener = Callable[[], Transport]


class EchoDevice(VirtualDevice):
    """Echoes every byte; optionally unplugs itself after ``unplug_after`` bytes."""

    kind = "echo"

    def __init__(self, unplug_after: int | None = None) -> None:
        super().__init__()
        self.received = bytearray()
        self.unplug_after = unplug_after

    def on_bytes(self, data: bytes) -> None:
        self.received += data
        if self.unplug_after is not None and len(self.received) >= self.unplug_after:
            self.unplug()
            return
        self.send(data)


@contextmanager
def link_opener(kind: str, device: VirtualDevice, tmp_path: Path) -> Iterator[Opener]:
    """Serve ``device`` over link ``kind``; yield a function opening a transport to it."""
    if kind == "pty":
        with PtyLink(device, symlink=tmp_path / "ttySIM") as pty:
            yield lambda: SerialTransport(pty.path, TEST_PARAMS)
    elif kind == "tcp":
        with TcpLink(device) as tcp:
            yield lambda: SerialTransport(tcp.url, TEST_PARAMS)
    elif kind == "usb":
        backend = SimUsbBackend()
        backend.add_device(device)
        yield lambda: UsbTransport("usb://04b8:0202", backend=backend)
    elif kind == "inprocess":
        name = f"test-echo-{next(_names)}"
        register_sim_device(name, device)
        try:
            yield lambda: open_transport(f"sim://{name}")
        finally:
            unregister_sim_device(name)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Poll ``predicate`` until true or the deadline passes (for state with no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class FakeClock:
    """A monotonic clock tests advance by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
