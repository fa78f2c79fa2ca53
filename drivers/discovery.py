"""Find attached serial ports and USB devices, recognise POS models, check access.

Used by ``posedge devices`` so a technician sees, for every port and USB
device: its VID:PID and product, the known printer/reader model it matches,
the URL to put in the config, and whether the current user can open it (and
if not, the group to join or the udev rule to install).

This module only looks: it must never open, claim, write to or reset a
device, and never fails because libusb is missing (that is reported instead).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import serial.tools.list_ports
import usb.core

from .transport.serial import permission_hint
from .transport.usb import UsbAddress, udev_rule

DeviceKind = Literal["printer", "reader", "usb-serial"]
LIBUSB_MISSING = (
    "libusb is missing, so USB devices cannot be listed; install it "
    "(Debian/Ubuntu: apt install libusb-1.0-0)"
)


@dataclass(frozen=True)
class KnownModel:
    vendor_id: int
    product_id: int | None
    """None: any product of this vendor (a weaker match)."""
    kind: DeviceKind
    name: str


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(0x04B8, 0x0202, "printer", "Epson TM-T88IV/TM-T88V (TM series)"),
    KnownModel(0x04B8, 0x0E03, "printer", "Epson TM-T20"),
    KnownModel(0x04B8, 0x0E15, "printer", "Epson TM-T20II"),
    KnownModel(0x04B8, 0x0E28, "printer", "Epson TM-T88VI/TM-m30 (TM series)"),
    KnownModel(0x04B8, None, "printer", "Epson TM series printer"),
    KnownModel(0x0519, None, "printer", "Star Micronics printer (TSP/mC-Print series)"),
    KnownModel(0x1504, None, "printer", "Bixolon printer (SRP series)"),
    KnownModel(0x1D90, None, "printer", "Citizen printer (CT-S series)"),
    KnownModel(0x0DD4, None, "printer", "Custom Engineering printer"),
    KnownModel(0x0416, 0x5011, "printer", "generic ESC/POS printer (POS-58/80)"),
    KnownModel(0x0FE6, 0x811E, "printer", "generic ESC/POS printer (ICS Advent)"),
    KnownModel(0x0801, 0x0001, "reader", "MagTek USB swipe reader (HID)"),
    KnownModel(0x0801, 0x0002, "reader", "MagTek Mini Swipe Reader (keyboard)"),
    KnownModel(0x0801, None, "reader", "MagTek card reader"),
    KnownModel(0x0ACD, None, "reader", "ID TECH card reader (MiniMag/SecureMag)"),
    KnownModel(0x0403, 0x6001, "usb-serial", "FTDI FT232 USB-serial adapter"),
    KnownModel(0x067B, 0x2303, "usb-serial", "Prolific PL2303 USB-serial adapter"),
    KnownModel(0x10C4, 0xEA60, "usb-serial", "Silicon Labs CP210x USB-serial adapter"),
    KnownModel(0x1A86, 0x7523, "usb-serial", "WCH CH340 USB-serial adapter"),
)


def match_model(vendor_id: int | None, product_id: int | None) -> KnownModel | None:
    """The known model for VID:PID: an exact match first, else a vendor-wide one."""
    if vendor_id is None:
        return None
    vendor = [m for m in KNOWN_MODELS if m.vendor_id == vendor_id]
    exact = [m for m in vendor if m.product_id == product_id]
    generic = [m for m in vendor if m.product_id is None]
    for candidates in (exact, generic):
        if candidates:
            return candidates[0]
    return None


@dataclass(frozen=True)
class Access:
    ok: bool | None
    """None when there is no device node to check (e.g. a simulated USB device)."""
    node: str | None
    advice: str | None = None


@dataclass(frozen=True)
class FoundDevice:
    bus: Literal["serial", "usb"]
    url: str
    vendor_id: int | None
    product_id: int | None
    product: str | None
    manufacturer: str | None
    serial_number: str | None
    model: KnownModel | None
    access: Access

    @property
    def vid_pid(self) -> str | None:
        if self.vendor_id is None or self.product_id is None:
            return None
        return f"{self.vendor_id:04x}:{self.product_id:04x}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vid_pid"] = self.vid_pid
        data["model"] = asdict(self.model) if self.model else None
        return data


@dataclass
class Discovery:
    serial: list[FoundDevice] = field(default_factory=list)
    usb: list[FoundDevice] = field(default_factory=list)
    usb_problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": [d.as_dict() for d in self.serial],
            "usb": [d.as_dict() for d in self.usb],
            "usb_problem": self.usb_problem,
        }


def check_access(node: str | None, advice_if_denied: str) -> Access:
    """Whether the current user may open ``node`` read-write, and what to do if not."""
    if node is None or not os.path.exists(node):
        return Access(ok=None, node=node)
    if os.access(node, os.R_OK | os.W_OK):
        return Access(ok=True, node=node)
    return Access(ok=False, node=node, advice=advice_if_denied)


def list_serial_ports() -> list[FoundDevice]:
    found = []
    for port in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        found.append(
            FoundDevice(
                bus="serial",
                url=port.device,
                vendor_id=port.vid,
                product_id=port.pid,
                product=port.product or _useful(port.description),
                manufacturer=port.manufacturer,
                serial_number=port.serial_number,
                model=match_model(port.vid, port.pid),
                access=check_access(port.device, permission_hint(port.device)),
            )
        )
    return found


def _useful(text: str | None) -> str | None:
    return text if text and text != "n/a" else None


def list_usb_devices(backend: object | None = None) -> tuple[list[FoundDevice], str | None]:
    """USB devices seen through pyusb, or ([], why not) when libusb is missing."""
    try:
        devices = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.NoBackendError:
        return [], LIBUSB_MISSING
    return [_describe_usb(dev) for dev in devices], None


def _describe_usb(dev: Any) -> FoundDevice:
    vid, pid = int(dev.idVendor), int(dev.idProduct)
    serial_number = _usb_string(dev, "serial_number")
    url = f"usb://{vid:04x}:{pid:04x}" + (f"?serial={serial_number}" if serial_number else "")
    node = None
    if dev.bus is not None and dev.address is not None:
        node = f"/dev/bus/usb/{int(dev.bus):03d}/{int(dev.address):03d}"
    return FoundDevice(
        bus="usb",
        url=url,
        vendor_id=vid,
        product_id=pid,
        product=_usb_string(dev, "product"),
        manufacturer=_usb_string(dev, "manufacturer"),
        serial_number=serial_number,
        model=match_model(vid, pid),
        access=check_access(node, f"install {udev_rule(UsbAddress(vid, pid))}"),
    )


def _usb_string(dev: Any, attribute: str) -> str | None:
    """A string descriptor, or None when it cannot be read (no permission, none given)."""
    try:
        value = getattr(dev, attribute)
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None
    return str(value) if value else None


def discover(usb_backend: object | None = None) -> Discovery:
    usb_devices, problem = list_usb_devices(usb_backend)
    return Discovery(serial=list_serial_ports(), usb=usb_devices, usb_problem=problem)
