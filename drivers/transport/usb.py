"""Native USB transport through pyusb: ``usb://VVVV:PPPP[?serial=…&interface=N]``.

Opening finds the device (optionally by serial number), detaches a kernel
driver such as ``usblp`` where the backend supports it (the usual "resource
busy" cause), selects the configuration, claims the interface and finds the
bulk OUT and IN endpoints from the descriptors. Writes go out in paced chunks,
each with a timeout, so long jobs do not hit one giant transfer timeout.

pyusb errors are mapped here by errno (or libusb code):

    ENODEV 19 / LIBUSB_ERROR_NO_DEVICE -4, EIO, no device found → DeviceUnplugged
    EBUSY 16 / LIBUSB_ERROR_BUSY -6                            → DeviceBusy
    EACCES 13 / LIBUSB_ERROR_ACCESS -3                         → DevicePermissionDenied
    ETIMEDOUT 110 / LIBUSB_ERROR_TIMEOUT -7                    → DeviceTimeout
    NoBackendError                                             → DeviceError (install libusb)

This module must never let a pyusb exception escape, never pass a timeout of
0 to pyusb (libusb reads that as "wait forever"), and never interpret bytes.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from ..errors import (
    DeviceBusy,
    DeviceError,
    DevicePermissionDenied,
    DeviceTimeout,
    DeviceUnplugged,
    UnsupportedURL,
)
from .base import Transport

WRITE_TIMEOUT_S = 5.0
CHUNK_BYTES = 4096
CHUNK_PAUSE_S = 0.0
_MIN_TIMEOUT_MS = 1

_LIBUSB_ACCESS, _LIBUSB_NO_DEVICE, _LIBUSB_BUSY, _LIBUSB_TIMEOUT, _LIBUSB_PIPE = -3, -4, -6, -7, -9
_LIBUSB_IO = -1


@dataclass(frozen=True)
class UsbAddress:
    """What a ``usb://`` URL selects."""

    vendor_id: int
    product_id: int
    serial: str | None = None
    interface: int = 0

    @property
    def vid_pid(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"

    def describe(self) -> str:
        extra = f" with serial {self.serial!r}" if self.serial else ""
        return f"USB device {self.vid_pid}{extra} (interface {self.interface})"


def parse_usb_url(url: str) -> UsbAddress:
    """Parse ``usb://VVVV:PPPP[?serial=…&interface=N]`` (hex ids) or raise UnsupportedURL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "usb":
        raise UnsupportedURL("not a usb:// URL", url=url)
    ids = (parts.netloc or parts.path.lstrip("/")).split(":")
    try:
        vendor_id, product_id = (int(x, 16) for x in ids)
    except ValueError:
        raise UnsupportedURL(
            "expected usb://VVVV:PPPP with hexadecimal vendor and product ids, e.g. usb://04b8:0202",
            url=url,
        ) from None
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"serial", "interface"}
    if unknown:
        raise UnsupportedURL(
            f"unknown usb:// parameter(s) {sorted(unknown)}; allowed: serial, interface", url=url
        )
    interface = query.get("interface", ["0"])[0]
    if not interface.isdigit():
        raise UnsupportedURL(f"interface must be a number, got {interface!r}", url=url)
    serial = query.get("serial", [None])[0] or None
    return UsbAddress(vendor_id, product_id, serial, int(interface))


def udev_rule(address: UsbAddress) -> str:
    return (
        f'SUBSYSTEM=="usb", ATTRS{{idVendor}}=="{address.vendor_id:04x}", '
        f'ATTRS{{idProduct}}=="{address.product_id:04x}", MODE="0660", GROUP="plugdev" '
        "in /etc/udev/rules.d/99-posedge.rules (then `udevadm control --reload` and replug; "
        "the user must be in group plugdev)"
    )


def _codes(exc: BaseException) -> set[int]:
    codes = {getattr(exc, "errno", None), getattr(exc, "backend_error_code", None)}
    return {c for c in codes if isinstance(c, int)}


def map_usb_error(exc: BaseException, url: str, address: UsbAddress | None = None) -> DeviceError:
    """Translate a pyusb exception into the drivers error tree."""
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, usb.core.NoBackendError):
        return DeviceError(
            "no USB backend: libusb is missing; install it (apt install libusb-1.0-0)", url=url
        )
    codes = _codes(exc)
    if isinstance(exc, usb.core.USBTimeoutError) or codes & {errno.ETIMEDOUT, _LIBUSB_TIMEOUT}:
        return DeviceTimeout("USB transfer timed out; the device is not answering", url=url)
    if codes & {errno.EACCES, _LIBUSB_ACCESS}:
        rule = udev_rule(address) if address else "a udev rule for the device"
        return DevicePermissionDenied(f"permission denied; install {rule}", url=url)
    if codes & {errno.EBUSY, _LIBUSB_BUSY}:
        return DeviceBusy(
            "interface is busy: a kernel driver (usblp) or another process has claimed it; "
            "stop the other program, or unload usblp (`modprobe -r usblp`)",
            url=url,
        )
    if codes & {errno.EPIPE, _LIBUSB_PIPE}:
        return DeviceError("USB endpoint stalled; power-cycle the device", url=url)
    return DeviceUnplugged(f"USB device disconnected ({exc}); check the cable", url=url)


def _timeout_ms(timeout_s: float) -> int:
    return max(_MIN_TIMEOUT_MS, round(timeout_s * 1000))


def _is_bulk(direction: int) -> Any:
    def match(ep: Any) -> bool:
        return bool(
            usb.util.endpoint_direction(ep.bEndpointAddress) == direction
            and usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
        )

    return match


class UsbTransport(Transport):
    """A :class:`Transport` over the bulk endpoints of one USB interface."""

    def __init__(
        self,
        url: str,
        *,
        backend: object | None = None,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        chunk_bytes: int = CHUNK_BYTES,
        chunk_pause_s: float = CHUNK_PAUSE_S,
    ) -> None:
        self.url = url
        self.address = parse_usb_url(url)
        self.write_timeout_s = write_timeout_s
        self.chunk_bytes = max(1, chunk_bytes)
        self.chunk_pause_s = chunk_pause_s
        self._backend = backend
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending = bytearray()
        self._dev: Any = None
        self._ep_out: Any = None
        self._ep_in: Any = None
        try:
            self._setup()
        except (usb.core.USBError, usb.core.NoBackendError, NotImplementedError) as exc:
            self._dispose()
            raise map_usb_error(exc, url, self.address) from None
        except BaseException:
            self._dispose()
            raise

    # ---- opening ----------------------------------------------------------
    def _find(self) -> Any:
        found = usb.core.find(
            find_all=True,
            idVendor=self.address.vendor_id,
            idProduct=self.address.product_id,
            backend=self._backend,
        )
        for dev in found:
            if self.address.serial is None or self._serial_of(dev) == self.address.serial:
                return dev
        raise DeviceUnplugged(
            f"no {self.address.describe()} found; check the cable and power "
            "and run `posedge devices`",
            url=self.url,
        )

    @staticmethod
    def _serial_of(dev: Any) -> str | None:
        try:
            return str(dev.serial_number) if dev.serial_number is not None else None
        except (usb.core.USBError, ValueError):
            return None

    def _setup(self) -> None:
        dev = self._dev = self._find()
        self._detach_kernel_driver(dev)
        try:
            cfg = dev.get_active_configuration()
        except usb.core.USBError:
            dev.set_configuration()
            cfg = dev.get_active_configuration()
        try:
            intf = cfg[(self.address.interface, 0)]
        except (IndexError, KeyError, usb.core.USBError):
            raise DeviceError(
                f"{self.address.describe()} has no interface {self.address.interface}",
                url=self.url,
            ) from None
        usb.util.claim_interface(dev, self.address.interface)
        self._ep_out = usb.util.find_descriptor(intf, custom_match=_is_bulk(usb.util.ENDPOINT_OUT))
        self._ep_in = usb.util.find_descriptor(intf, custom_match=_is_bulk(usb.util.ENDPOINT_IN))
        if self._ep_out is None:
            raise DeviceError(
                f"interface {self.address.interface} has no bulk OUT endpoint; "
                "is this the right device/interface?",
                url=self.url,
            )

    def _detach_kernel_driver(self, dev: Any) -> None:
        try:
            if dev.is_kernel_driver_active(self.address.interface):
                dev.detach_kernel_driver(self.address.interface)
        except NotImplementedError:
            pass  # backend (e.g. macOS, Windows) cannot tell; claiming will say if busy

    # ---- I/O --------------------------------------------------------------
    def _require_open(self) -> Any:
        if self._dev is None:
            raise DeviceUnplugged("transport is closed", url=self.url)
        return self._dev

    def write(self, data: bytes) -> None:
        dev = self._require_open()
        view = memoryview(bytes(data))
        with self._write_lock:
            try:
                while view:
                    chunk = view[: self.chunk_bytes]
                    sent = int(dev.write(self._ep_out, chunk, _timeout_ms(self.write_timeout_s)))
                    view = view[sent:]
                    if view and self.chunk_pause_s > 0:
                        time.sleep(self.chunk_pause_s)
            except (usb.core.USBError, ValueError) as exc:
                raise map_usb_error(exc, self.url, self.address) from None

    def read(self, size: int, timeout_s: float) -> bytes:
        dev = self._require_open()
        if self._ep_in is None:
            raise DeviceError(
                "this USB device has no bulk IN endpoint; it cannot report status", url=self.url
            )
        with self._read_lock:
            if not self._pending:
                self._pending += self._read_packet(dev, timeout_s)
            out = bytes(self._pending[:size])
            del self._pending[:size]
            return out

    def _read_packet(self, dev: Any, timeout_s: float) -> bytes:
        size = max(int(self._ep_in.wMaxPacketSize or 64), 64)
        try:
            return bytes(dev.read(self._ep_in, size, _timeout_ms(timeout_s)))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            mapped = map_usb_error(exc, self.url, self.address)
            if isinstance(mapped, DeviceTimeout):
                return b""
            raise mapped from None

    def flush_input(self) -> None:
        dev = self._require_open()
        with self._read_lock:
            self._pending.clear()
            if self._ep_in is None:
                return
            while self._read_packet(dev, 0.001):
                pass

    def close(self) -> None:
        self._dispose()

    def _dispose(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        with contextlib.suppress(usb.core.USBError, ValueError, NotImplementedError):
            usb.util.release_interface(dev, self.address.interface)
        with contextlib.suppress(usb.core.USBError, ValueError):
            usb.util.dispose_resources(dev)

    @property
    def is_open(self) -> bool:
        return self._dev is not None
