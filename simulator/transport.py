"""The ``sim://NAME`` transport: the simulator's plug-in for the drivers' URL registry.

Registered in the ``posedge.transports`` entry point group under ``sim`` (see
pyproject), so :func:`posedge.drivers.transport.open_transport` loads it the
first time a ``sim://`` URL is opened and the drivers never import the
simulator. ``sim://printer`` attaches an :class:`InProcessTransport` to the
device registered under ``"printer"`` (:mod:`posedge.drivers.transport.sim`);
when none is registered, a default :class:`VirtualPrinter` (``"reader"``:
:class:`VirtualReader`) is created on first use. ``?faults=a,b:key=value``
applies faults by name when the transport is opened.
"""

from __future__ import annotations

from collections.abc import Callable

from posedge.drivers.errors import UnsupportedURL
from posedge.drivers.transport import TransportOptions
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.sim import VirtualDevice as RegisteredDevice
from posedge.drivers.transport.sim import parse_sim_url, sim_device

from .core import VirtualDevice
from .links.inprocess import InProcessTransport
from .scenarios import parse_fault_spec


def _printer() -> RegisteredDevice:
    from .printer import VirtualPrinter

    return VirtualPrinter()


def _reader() -> RegisteredDevice:
    from .reader import VirtualReader

    return VirtualReader()


DEFAULT_DEVICES: dict[str, Callable[[], RegisteredDevice]] = {
    "printer": _printer,
    "reader": _reader,
}
"""``sim://NAME`` → the device created on first use when none is registered under NAME."""


def open_sim_transport(url: str, options: TransportOptions | None = None) -> Transport:
    """The ``posedge.transports`` factory of ``sim``: ``options`` do not apply in process."""
    name, faults = parse_sim_url(url)
    try:
        device = sim_device(name, DEFAULT_DEVICES)
    except UnsupportedURL as exc:
        raise UnsupportedURL(exc.message, url=url) from None
    if not isinstance(device, VirtualDevice):
        raise UnsupportedURL(
            f"sim://{name} is a {type(device).__name__}, not a simulator VirtualDevice", url=url
        )
    for spec in faults:
        try:
            fault, params = parse_fault_spec(spec)
            device.apply_fault(fault, **params)
        except (ValueError, TypeError) as exc:  # ScenarioError is a ValueError
            raise UnsupportedURL(f"bad fault {spec!r} in URL: {exc}", url=url) from None
    return InProcessTransport(device, url)
