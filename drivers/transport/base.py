"""The transport contract: bytes in, bytes out, nothing about framing.

A transport is opened from a device URL by :func:`posedge.drivers.transport.open_transport`.
It never interprets the bytes it carries and raises only
:mod:`posedge.drivers.errors` exceptions.
"""

from __future__ import annotations

import abc
from types import TracebackType


class Transport(abc.ABC):
    """A byte pipe to one device."""

    url: str

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Write all of ``data`` or raise (DeviceTimeout, DeviceUnplugged, ...)."""

    @abc.abstractmethod
    def read(self, size: int, timeout_s: float) -> bytes:
        """Return 1..size bytes as soon as any arrive, or b"" when ``timeout_s`` passes."""

    @abc.abstractmethod
    def flush_input(self) -> None:
        """Discard bytes already received and not yet read (stale replies)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. Idempotent."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True while the transport believes the device is attached."""

    def read_exactly(self, size: int, timeout_s: float) -> bytes:
        """Read ``size`` bytes within ``timeout_s`` in total; raise DeviceTimeout if short."""
        import time

        from ..errors import DeviceTimeout

        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while len(buf) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(
                    f"expected {size} bytes, got {len(buf)} within {timeout_s:.3g}s",
                    url=self.url,
                )
            buf += self.read(size - len(buf), remaining)
        return bytes(buf)

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
