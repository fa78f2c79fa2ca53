"""The ``sim://NAME`` scheme: named live simulated devices, reached in process.

``sim://printer`` attaches an :class:`InProcessTransport` to the device
registered under ``"printer"``; when none is registered, a default
:class:`VirtualPrinter` (``"reader"``: :class:`VirtualReader`) is created on
first use. Tests and ``posedge simulate devices`` / ``run --simulate``
register their own instances with :func:`register_sim_device` so the driver
and the test share one device. ``?faults=a,b:key=value`` applies faults by
name when the transport is opened.

The simulator is imported lazily: production code that never opens a
``sim://`` URL never imports it. This module must never be used to reach real
hardware.
"""

from __future__ import annotations

import importlib
import threading
import urllib.parse
from typing import Any, Protocol

from ..errors import UnsupportedURL
from .base import Transport


class VirtualDevice(Protocol):
    """What this module needs of a :class:`posedge.simulator.core.VirtualDevice`."""

    kind: str

    @property
    def plugged(self) -> bool: ...

    def apply_fault(self, name: str, **params: Any) -> None: ...


DEFAULT_DEVICE_CLASSES: dict[str, tuple[str, str]] = {
    "printer": ("posedge.simulator.printer", "VirtualPrinter"),
    "reader": ("posedge.simulator.reader", "VirtualReader"),
}

_lock = threading.Lock()
_devices: dict[str, VirtualDevice] = {}


def register_sim_device(name: str, device: VirtualDevice) -> None:
    """Make ``sim://name`` reach ``device`` (replacing any earlier one)."""
    with _lock:
        _devices[name] = device


def unregister_sim_device(name: str) -> None:
    with _lock:
        _devices.pop(name, None)


def registered_sim_devices() -> dict[str, VirtualDevice]:
    with _lock:
        return dict(_devices)


def sim_device(name: str) -> VirtualDevice:
    """The live device named ``name``, creating the default one on first use."""
    with _lock:
        device = _devices.get(name)
        if device is None:
            device = _devices[name] = _create_default(name)
        return device


def _create_default(name: str) -> VirtualDevice:
    if name not in DEFAULT_DEVICE_CLASSES:
        known = ", ".join(f"sim://{n}" for n in sorted(set(DEFAULT_DEVICE_CLASSES) | set(_devices)))
        raise UnsupportedURL(f"no simulated device named {name!r}; known: {known}")
    module_name, class_name = DEFAULT_DEVICE_CLASSES[name]
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedURL(
            f"the simulated {name} is not available ({module_name}.{class_name}: {exc})"
        ) from None
    device: VirtualDevice = cls()
    return device


def parse_sim_url(url: str) -> tuple[str, list[str]]:
    """``sim://NAME?faults=a,b`` → (NAME, [fault specs])."""
    parts = urllib.parse.urlsplit(url)
    name = parts.netloc or parts.path.strip("/")
    if parts.scheme != "sim" or not name:
        raise UnsupportedURL("expected sim://NAME, e.g. sim://printer", url=url)
    query = urllib.parse.parse_qs(parts.query)
    unknown = set(query) - {"faults"}
    if unknown:
        raise UnsupportedURL(
            f"unknown sim:// parameter(s) {sorted(unknown)}; allowed: faults", url=url
        )
    faults = [f for spec in query.get("faults", []) for f in spec.split(",") if f.strip()]
    return name, faults


def open_sim_transport(url: str) -> Transport:
    inprocess = importlib.import_module("posedge.simulator.links.inprocess")
    scenarios = importlib.import_module("posedge.simulator.scenarios")
    name, faults = parse_sim_url(url)
    try:
        device = sim_device(name)
    except UnsupportedURL as exc:
        raise UnsupportedURL(exc.message, url=url) from None
    for spec in faults:
        fault, params = scenarios.parse_fault_spec(spec)
        try:
            device.apply_fault(fault, **params)
        except (ValueError, TypeError) as exc:
            raise UnsupportedURL(f"bad fault {spec!r} in URL: {exc}", url=url) from None
    transport: Transport = inprocess.InProcessTransport(device, url)
    return transport
