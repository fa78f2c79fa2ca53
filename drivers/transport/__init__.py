"""Open a :class:`Transport` from a device URL: the registry keyed by URL scheme.

Supported forms (DESIGN §3):

- any pyserial URL: ``/dev/ttyUSB0``, ``/dev/serial/by-id/…``, ``socket://host:port``,
  ``rfc2217://host:port``, ``loop://`` → :class:`SerialTransport`
- ``usb://VVVV:PPPP[?serial=…&interface=N]`` → :class:`UsbTransport`
- ``sim://printer``, ``sim://reader`` (optionally ``?faults=name,name``) → the
  in-process simulator (see :mod:`posedge.drivers.transport.sim`)

``sim://`` is registered like any real scheme, so tests and users choose it by
configuration, never by patching. This module must never import pyusb, the
simulator or a transport implementation at import time, and never guess a
scheme it does not know: unknown schemes raise :class:`UnsupportedURL`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TransportOptions:
    """Settings a factory may use; each transport ignores those not meant for it."""

    serial: SerialParams | None = None
    usb_backend: object | None = None


TransportFactory = Callable[[str, TransportOptions], Transport]

_FACTORIES: dict[str, TransportFactory] = {}


def register_scheme(scheme: str, factory: TransportFactory) -> None:
    """Route URLs ``scheme://…`` to ``factory(url, options)``. ``""`` means a plain path."""
    _FACTORIES[scheme.lower()] = factory


def supported_schemes() -> list[str]:
    return sorted(_FACTORIES)


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
    factory = _FACTORIES.get(scheme_of(url))
    if factory is None:
        raise UnsupportedURL(_unsupported_message(f"scheme {scheme_of(url)!r}"), url=url)
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


def _open_sim(url: str, options: TransportOptions) -> Transport:
    from .sim import open_sim_transport

    return open_sim_transport(url)


register_scheme("", _open_serial)
for _scheme in PYSERIAL_SCHEMES:
    register_scheme(_scheme, _open_serial)
register_scheme("usb", _open_usb)
register_scheme("sim", _open_sim)
