"""The ``sim://NAME`` scheme's registry of named live in-process devices.

``sim://printer`` reaches the device registered under ``"printer"``. Tests and
``posedge simulate devices`` / ``run --simulate`` register their own instances
with :func:`register_sim_device` so the driver and the test share one device.
``?faults=a,b:key=value`` applies faults by name when the transport is opened.

The transport itself (the in-process link, the default virtual printer and
reader created on first use, the fault specs) is a plug-in: the simulator
registers the ``sim`` scheme in the ``posedge.transports`` entry point group
(see :mod:`posedge.drivers.transport`), and the drivers never import it.
Production code that never opens a ``sim://`` URL never loads it. This module
must never be used to reach real hardware.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import UnsupportedURL


class VirtualDevice(Protocol):
    """What the registry needs of a simulated device (the simulator's ``VirtualDevice``)."""

    kind: str

    @property
    def plugged(self) -> bool: ...

    def apply_fault(self, name: str, **params: Any) -> None: ...


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


def sim_device(
    name: str, defaults: Mapping[str, Callable[[], VirtualDevice]] | None = None
) -> VirtualDevice:
    """The live device named ``name``; else ``defaults[name]()``, registered under ``name``
    on first use; :class:`UnsupportedURL` naming the known devices when neither exists."""
    defaults = defaults or {}
    with _lock:
        device = _devices.get(name)
        if device is None:
            create = defaults.get(name)
            if create is None:
                known = ", ".join(f"sim://{n}" for n in sorted(set(defaults) | set(_devices)))
                raise UnsupportedURL(f"no simulated device named {name!r}; known: {known}")
            device = _devices[name] = create()
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
