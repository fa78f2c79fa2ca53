"""What is known of a device's identity from its URL, without talking to it.

* ``usb://VVVV:PPPP[?serial=…]``: the vendor and product ids (and the serial number the
  URL selects), the known model those ids match;
* a serial device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``): the USB descriptors
  the kernel reports for the port (vid:pid, manufacturer, product, serial number), read
  from sysfs by pyserial's port listing — the port is never opened;
* ``sim://NAME``: the identity the simulated device carries (a replayed dump's);
* anything else (``socket://``, ``rfc2217://``): nothing is known.

This module must never open, claim or write to a device, and never raise a pyserial or
pyusb error (an unknown identity is an empty one).
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from posedge.drivers.discovery import list_serial_ports, match_model
from posedge.drivers.errors import DeviceError
from posedge.drivers.transport.serial import is_local_path
from posedge.drivers.transport.sim import registered_sim_devices
from posedge.drivers.transport.usb import parse_usb_url

log = logging.getLogger("posedge.diagnostics")

IDENTITY_KEYS = ("model", "manufacturer", "product", "firmware", "serial_number", "vid_pid")
"""The identity fields of a dump (each a string or null), plus ``source``."""


def empty_identity(source: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(IDENTITY_KEYS)
    out["source"] = source
    return out


def device_identity(url: str | None) -> dict[str, Any]:
    """The identity known for ``url``: :data:`IDENTITY_KEYS` plus ``source`` (where from)."""
    if not url:
        return empty_identity()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    try:
        if scheme == "usb":
            return _usb_identity(url)
        if scheme == "sim":
            return _sim_identity(url)
        if not scheme or is_local_path(url):
            return _serial_identity(url)
    except (DeviceError, OSError, ValueError) as exc:  # an unknown identity is no error
        log.debug("no identity for a device", extra={"error": str(exc)})
    return empty_identity()


def _usb_identity(url: str) -> dict[str, Any]:
    address = parse_usb_url(url)
    model = match_model(address.vendor_id, address.product_id)
    out = empty_identity("usb url")
    out.update(
        model=model.name if model else None,
        serial_number=address.serial,
        vid_pid=address.vid_pid,
    )
    return out


def _serial_identity(url: str) -> dict[str, Any]:
    target = os.path.realpath(url)
    for port in list_serial_ports():
        if os.path.realpath(port.url) != target:
            continue
        out = empty_identity("serial port")
        out.update(
            model=port.model.name if port.model else None,
            manufacturer=port.manufacturer,
            product=port.product,
            serial_number=port.serial_number,
            vid_pid=port.vid_pid,
        )
        return out
    return empty_identity()


def _sim_identity(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    name = parts.netloc or parts.path.strip("/")
    device = registered_sim_devices().get(name)
    carried = getattr(device, "identity", None)
    if not isinstance(carried, Mapping):
        return empty_identity()
    out = empty_identity("simulator")
    for key in IDENTITY_KEYS:
        value = carried.get(key)
        out[key] = str(value) if value is not None else None
    return out
