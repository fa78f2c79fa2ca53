"""In-process link: a :class:`Transport` whose far end is a :class:`VirtualDevice`.

The lightest link: no threads, no file descriptors. The ``sim://`` transport
scheme is built on it. Unplugging the device makes every call raise
:class:`DeviceUnplugged`, exactly as a real transport reports a pulled cable.
"""

from __future__ import annotations

from posedge.drivers.errors import DeviceUnplugged
from posedge.drivers.transport.base import Transport

from ..core import VirtualDevice


class InProcessTransport(Transport):
    def __init__(self, device: VirtualDevice, url: str) -> None:
        self.device = device
        self.url = url
        self._closed = False
        if not device.plugged:
            raise DeviceUnplugged("simulated device is unplugged", url=url)

    def _check(self) -> None:
        if self._closed:
            raise DeviceUnplugged("transport is closed", url=self.url)
        if not self.device.plugged:
            raise DeviceUnplugged("simulated device was unplugged", url=self.url)

    def write(self, data: bytes) -> None:
        self._check()
        self.device.receive(bytes(data))

    def read(self, size: int, timeout_s: float) -> bytes:
        self._check()
        data = self.device.take(size, timeout_s)
        if not data:
            self._check()
        return data

    def flush_input(self) -> None:
        self._check()
        self.device.clear_output()

    def close(self) -> None:
        self._closed = True

    @property
    def is_open(self) -> bool:
        return not self._closed and self.device.plugged
