"""A pyusb backend presenting simulated USB devices, so real pyusb code runs.

:class:`SimUsbBackend` subclasses ``usb.backend.IBackend``; pass it as
``backend=`` to ``usb.core.find`` (or to ``open_transport(..., usb_backend=)``).
Each :class:`SimUsbDevice` wraps a :class:`VirtualDevice` behind one
configuration with one vendor-specific interface holding a bulk OUT and a
bulk IN endpoint, plus manufacturer/product/serial string descriptors. The
default identity is an Epson TM-T88V receipt printer (04b8:0202).

Behaves as libusb does, including on error paths:
- interface/alternate/endpoint indexes past the last raise ``IndexError``
  (pyusb iterates until it sees one);
- timeouts are milliseconds and 0 means "wait forever";
- a read with no data raises ``USBTimeoutError(msg, -7, ETIMEDOUT)``;
- an unplugged device is no longer enumerated, and every call on an existing
  handle raises ``USBError(msg, -4, ENODEV)``; after replug it re-enumerates
  at a new address and old handles stay dead;
- an attached kernel driver (``usblp``) makes ``claim_interface`` fail with
  EBUSY until ``detach_kernel_driver``.

This module must never be used outside tests and ``posedge simulate``.
"""

from __future__ import annotations

import array
import errno
import itertools
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core

from ..core import VirtualDevice

EP_OUT_ADDRESS = 0x01
EP_IN_ADDRESS = 0x82
BULK = 0x02
MAX_PACKET_BYTES = 64
LANGID_EN_US = 0x0409
GET_DESCRIPTOR = 0x06
STRING_DESCRIPTOR = 0x03
_LIBUSB_NO_DEVICE, _LIBUSB_BUSY, _LIBUSB_TIMEOUT, _LIBUSB_NOT_FOUND = -4, -6, -7, -5
_INFINITE_POLL_S = 0.05

_addresses = itertools.count(2)


def _no_device() -> usb.core.USBError:
    return usb.core.USBError(
        "No such device (it may have been disconnected)", _LIBUSB_NO_DEVICE, errno.ENODEV
    )


@dataclass
class SimUsbDevice:
    """The object ``enumerate_devices`` yields: identity, USB state and the virtual device."""

    device: VirtualDevice
    vendor_id: int = 0x04B8
    product_id: int = 0x0202
    manufacturer: str = "EPSON"
    product: str = "TM-T88V"
    serial: str = "SIM0001"
    kernel_driver: bool = False
    """Whether a kernel driver (usblp) attaches on every plug-in."""
    bus: int = 1
    address: int = field(default_factory=lambda: next(_addresses))
    generation: int = 0
    configuration: int = 0
    kernel_driver_active: bool = False
    claimed: dict[int, int] = field(default_factory=dict)
    """Interface number → id of the handle that claimed it."""

    def __post_init__(self) -> None:
        self.kernel_driver_active = self.kernel_driver
        self.device.add_plug_listener(self._on_plug)

    def _on_plug(self, plugged: bool) -> None:
        self.generation += 1
        if plugged:  # re-enumerates: new address, unconfigured, kernel driver back
            self.address = next(_addresses)
            self.configuration = 0
            self.claimed.clear()
            self.kernel_driver_active = self.kernel_driver

    def strings(self) -> dict[int, str]:
        return {1: self.manufacturer, 2: self.product, 3: self.serial}


@dataclass
class _Handle:
    dev: SimUsbDevice
    generation: int


class SimUsbBackend(usb.backend.IBackend):  # type: ignore[misc]
    """A pyusb backend whose devices are virtual."""

    def __init__(self) -> None:
        super().__init__()
        self._devices: list[SimUsbDevice] = []
        self._lock = threading.Lock()

    def add_device(self, device: VirtualDevice, **identity: Any) -> SimUsbDevice:
        """Attach ``device`` as a USB device (identity: vendor_id, product_id, product, ...)."""
        sim = SimUsbDevice(device, **identity)
        with self._lock:
            self._devices.append(sim)
        return sim

    # ---- enumeration and descriptors ---------------------------------------
    def enumerate_devices(self) -> Any:
        with self._lock:
            devices = list(self._devices)
        return (d for d in devices if d.device.plugged)

    def get_device_descriptor(self, dev: SimUsbDevice) -> Any:
        return SimpleNamespace(
            bLength=18, bDescriptorType=0x01, bcdUSB=0x0200,
            bDeviceClass=0, bDeviceSubClass=0, bDeviceProtocol=0, bMaxPacketSize0=64,
            idVendor=dev.vendor_id, idProduct=dev.product_id, bcdDevice=0x0100,
            iManufacturer=1, iProduct=2, iSerialNumber=3, bNumConfigurations=1,
            bus=dev.bus, address=dev.address, port_number=1, port_numbers=(1,), speed=2,
        )  # fmt: skip

    def get_configuration_descriptor(self, dev: SimUsbDevice, config: int) -> Any:
        if config != 0:
            raise IndexError("configuration index out of range")
        return SimpleNamespace(
            bLength=9, bDescriptorType=0x02, wTotalLength=9 + 9 + 7 + 7, bNumInterfaces=1,
            bConfigurationValue=1, iConfiguration=0, bmAttributes=0xC0, bMaxPower=50,
            extra_descriptors=[],
        )  # fmt: skip

    def get_interface_descriptor(self, dev: SimUsbDevice, intf: int, alt: int, config: int) -> Any:
        if config != 0 or intf != 0 or alt != 0:
            raise IndexError("interface index out of range")
        return SimpleNamespace(
            bLength=9, bDescriptorType=0x04, bInterfaceNumber=0, bAlternateSetting=0,
            bNumEndpoints=2, bInterfaceClass=0x07, bInterfaceSubClass=0x01,
            bInterfaceProtocol=0x02, iInterface=0, extra_descriptors=[],
        )  # fmt: skip

    def get_endpoint_descriptor(
        self, dev: SimUsbDevice, ep: int, intf: int, alt: int, config: int
    ) -> Any:
        if config != 0 or intf != 0 or alt != 0 or ep not in (0, 1):
            raise IndexError("endpoint index out of range")
        return SimpleNamespace(
            bLength=7, bDescriptorType=0x05,
            bEndpointAddress=EP_OUT_ADDRESS if ep == 0 else EP_IN_ADDRESS,
            bmAttributes=BULK, wMaxPacketSize=MAX_PACKET_BYTES, bInterval=0,
            bRefresh=0, bSynchAddress=0, extra_descriptors=[],
        )  # fmt: skip

    # ---- handles and state ----------------------------------------------------
    def open_device(self, dev: SimUsbDevice) -> _Handle:
        if not dev.device.plugged:
            raise _no_device()
        return _Handle(dev, dev.generation)

    def close_device(self, dev_handle: _Handle) -> None:
        dev = dev_handle.dev
        for intf, holder in list(dev.claimed.items()):
            if holder == id(dev_handle):
                del dev.claimed[intf]

    def _live(self, handle: _Handle) -> SimUsbDevice:
        if handle.generation != handle.dev.generation or not handle.dev.device.plugged:
            raise _no_device()
        return handle.dev

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._live(dev_handle).configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        return self._live(dev_handle).configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._live(dev_handle)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev = self._live(dev_handle)
        holder = dev.claimed.get(intf, id(dev_handle))
        if dev.kernel_driver_active or holder != id(dev_handle):
            raise usb.core.USBError("Resource busy", _LIBUSB_BUSY, errno.EBUSY)
        dev.claimed[intf] = id(dev_handle)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev = self._live(dev_handle)
        if dev.claimed.get(intf) == id(dev_handle):
            del dev.claimed[intf]

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return self._live(dev_handle).kernel_driver_active

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        dev = self._live(dev_handle)
        if not dev.kernel_driver_active:
            raise usb.core.USBError("Entity not found", _LIBUSB_NOT_FOUND, errno.ENOENT)
        dev.kernel_driver_active = False

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._live(dev_handle).kernel_driver_active = True

    def reset_device(self, dev_handle: _Handle) -> None:
        self._live(dev_handle)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._live(dev_handle)

    # ---- transfers -------------------------------------------------------------
    def bulk_write(
        self, dev_handle: _Handle, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        dev = self._live(dev_handle)
        dev.device.receive(bytes(data))
        return len(data)

    def bulk_read(
        self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        dev = self._live(dev_handle)
        data = self._take(dev, len(buff), timeout)
        buff[: len(data)] = array.array("B", data)
        return len(data)

    def _take(self, dev: SimUsbDevice, size: int, timeout_ms: int) -> bytes:
        generation = dev.generation
        deadline = None if timeout_ms == 0 else time.monotonic() + timeout_ms / 1000
        while True:
            remaining = _INFINITE_POLL_S if deadline is None else deadline - time.monotonic()
            data = dev.device.take(size, max(0.0, min(remaining, _INFINITE_POLL_S)))
            if data:
                return data
            if dev.generation != generation or not dev.device.plugged:
                raise _no_device()
            if deadline is not None and time.monotonic() >= deadline:
                raise usb.core.USBTimeoutError(
                    "Operation timed out", _LIBUSB_TIMEOUT, errno.ETIMEDOUT
                )

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        dev = self._live(dev_handle)
        if bRequest != GET_DESCRIPTOR or (wValue >> 8) != STRING_DESCRIPTOR:
            return 0
        payload = _string_descriptor(dev, wValue & 0xFF)
        count = min(len(payload), len(data))
        data[:count] = array.array("B", payload[:count])
        return count


def _string_descriptor(dev: SimUsbDevice, index: int) -> bytes:
    if index == 0:
        body = LANGID_EN_US.to_bytes(2, "little")
    else:
        text = dev.strings().get(index)
        if text is None:
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
        body = text.encode("utf-16-le")
    return bytes([2 + len(body), STRING_DESCRIPTOR]) + body
