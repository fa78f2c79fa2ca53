"""The drivers layer's error tree. pyserial and pyusb exceptions stop here.

    DeviceError(OSError)
    ├── DeviceUnplugged            the device is gone (cable pulled, powered off)
    ├── DeviceBusy                 another process or kernel driver holds it
    ├── DevicePermissionDenied     the user may not open it (group / udev rule)
    ├── DeviceTimeout(TimeoutError) no answer in time
    ├── DeviceNotReady             present, but refuses work (paper out, cover open)
    ├── ProtocolError(ValueError)  bytes that do not follow the protocol
    │   └── TrackDataError         card track data that fails ISO 7813 checks
    └── UnsupportedURL(ValueError) a device URL no transport understands

Each error carries the device URL it concerns (``url``) and a message that says
what to do. Messages never contain card data.
"""

from __future__ import annotations


class DeviceError(OSError):
    """Base of every error raised by ``posedge.drivers``."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return f"{self.url}: {self.message}" if self.url else self.message


class DeviceUnplugged(DeviceError):
    """The device disappeared; transports reconnect with backoff when it returns."""


class DeviceBusy(DeviceError):
    """Another process or a kernel driver holds the device."""


class DevicePermissionDenied(DeviceError):
    """The current user may not open the device."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer within the timeout."""


class DeviceNotReady(DeviceError):
    """The device is present but cannot do the work (paper out, cover open, ...)."""


class ProtocolError(DeviceError, ValueError):
    """Bytes on the wire do not follow the protocol."""


class TrackDataError(ProtocolError):
    """Magnetic-stripe track data failed ISO 7813 validation."""


class UnsupportedURL(DeviceError, ValueError):
    """No transport understands the device URL."""
