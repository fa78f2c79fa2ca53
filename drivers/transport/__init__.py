"""Open a :class:`Transport` from a device URL: the registry keyed by URL scheme.

Supported forms (DESIGN §3):

- any pyserial URL: ``/dev/ttyUSB0``, ``/dev/serial/by-id/…``, ``socket://host:port``,
  ``rfc2217://host:port``, ``loop://`` → :class:`SerialTransport`
- ``usb://VVVV:PPPP[?serial=…&interface=N]`` → :class:`UsbTransport`
- ``sim://printer``, ``sim://reader`` (optionally ``?faults=name,name``) → the
  in-process simulator, a plug-in (see :mod:`posedge.drivers.transport.sim`)

Schemes the drivers do not implement come from plug-ins: the entry point group
``posedge.transports`` maps a scheme to a :data:`TransportFactory`, loaded the first
time a URL of that scheme is opened. The simulator registers ``sim`` there, so
tests and users choose it by configuration, never by patching, and the drivers
never import the simulator. This module must never import pyusb, a plug-in or a
transport implementation at import time, and never guess a scheme it does not
know: unknown schemes raise :class:`UnsupportedURL`.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import cast

from ..errors import UnsupportedURL
from .base import Transport
from .serial import SerialParams

__all__ = [
    "SerialParams",
    "Transport",
    "TransportFactory",
    "TransportOptions",
    "open_transport",
    "register_scheme",
    "supported_schemes",
]

SUPPORTED_FORMS = (
    "/dev/ttyUSB0 or /dev/serial/by-id/… (serial device path)",
    "socket://host:port, rfc2217://host:port, loop:// (pyserial URLs)",
    "usb://VVVV:PPPP[?serial=…&interface=N] (native USB, hex ids)",
    "sim://printer, sim://reader[?faults=name,name] (in-process simulator)",
)

PYSERIAL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep")

TRANSPORT_ENTRY_POINTS = "posedge.transports"
"""Entry point group of transport plug-ins: name = URL scheme, value = a TransportFactory."""

PLUGIN_SCHEMES = {
    "sim": "the posedge simulator (package posedge.simulator, part of the posedge "
    "distribution: pip install posedge)",
}
"""Schemes known to come from a plug-in → what to install when it is missing."""


@dataclass(frozen=True)
class TransportOptions:
    """Settings a factory may use; each transport ignores those not meant for it."""

    serial: SerialParams | None = None
    usb_backend: object | None = None


TransportFactory = Callable[[str, TransportOptions], Transport]

_FACTORIES: dict[str, TransportFactory] = {}
_plugin_lock = threading.Lock()


def register_scheme(scheme: str, factory: TransportFactory) -> None:
    """Route URLs ``scheme://…`` to ``factory(url, options)``. ``""`` means a plain path."""
    _FACTORIES[scheme.lower()] = factory


def supported_schemes() -> list[str]:
    """Built-in and registered schemes and those of installed plug-ins (not loaded)."""
    plugins = {entry.name.lower() for entry in entry_points(group=TRANSPORT_ENTRY_POINTS)}
    return sorted(set(_FACTORIES) | plugins)


def _factory(scheme: str, url: str) -> TransportFactory:
    """The factory of ``scheme``, loading its plug-in on first use."""
    factory = _FACTORIES.get(scheme)
    if factory is not None:
        return factory
    with _plugin_lock:
        factory = _FACTORIES.get(scheme)
        if factory is None:
            factory = _load_plugin(scheme, url)
            _FACTORIES[scheme] = factory
        return factory


def _load_plugin(scheme: str, url: str) -> TransportFactory:
    found = [e for e in entry_points(group=TRANSPORT_ENTRY_POINTS) if e.name.lower() == scheme]
    missing = PLUGIN_SCHEMES.get(scheme)
    if not found:
        if missing is None:
            raise UnsupportedURL(_unsupported_message(f"scheme {scheme!r}"), url=url)
        raise UnsupportedURL(
            f"{scheme}:// URLs need {missing}, which provides the {scheme!r} transport in the "
            f"{TRANSPORT_ENTRY_POINTS!r} entry point group; it is not installed",
            url=url,
        )
    try:
        loaded: object = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise UnsupportedURL(
            f"the {scheme}:// transport plug-in {found[0].value} cannot be loaded ({exc}); "
            f"reinstall {missing or 'the package that provides it'}",
            url=url,
        ) from None
    if not callable(loaded):
        raise UnsupportedURL(
            f"the {scheme}:// transport plug-in {found[0].value} is not a transport factory",
            url=url,
        )
    return cast(TransportFactory, loaded)


def scheme_of(url: str) -> str:
    """The URL scheme, or ``""`` for a plain device path."""
    if "://" not in url:
        return ""
    return urllib.parse.urlsplit(url).scheme.lower()


def open_transport(
    url: str,
    *,
    serial: SerialParams | None = None,
    usb_backend: object | None = None,
) -> Transport:
    """Open the device at ``url``; raises only :mod:`posedge.drivers.errors` exceptions."""
    url = url.strip()
    if not url:
        raise UnsupportedURL(_unsupported_message("an empty device URL"))
    factory = _factory(scheme_of(url), url)
    return factory(url, TransportOptions(serial=serial, usb_backend=usb_backend))


def _unsupported_message(what: str) -> str:
    forms = "; ".join(SUPPORTED_FORMS)
    return f"{what} is not supported; use one of: {forms}"


def _open_serial(url: str, options: TransportOptions) -> Transport:
    from .serial import SerialTransport

    return SerialTransport(url, options.serial)


def _open_usb(url: str, options: TransportOptions) -> Transport:
    from .usb import UsbTransport

    return UsbTransport(url, backend=options.usb_backend)


register_scheme("", _open_serial)
for _scheme in PYSERIAL_SCHEMES:
    register_scheme(_scheme, _open_serial)
register_scheme("usb", _open_usb)
