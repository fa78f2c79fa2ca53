"""open_transport routes URLs by scheme; sim:// reaches named live devices."""

from __future__ import annotations

import pytest

from posedge.drivers.errors import DeviceUnplugged, UnsupportedURL
from posedge.drivers.transport import (
    TransportOptions,
    open_transport,
    register_scheme,
    supported_schemes,
)
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.serial import SerialTransport
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device

from .transport_fixtures import EchoDevice


def test_loop_url_goes_to_serial() -> None:
    with open_transport("loop://") as transport:
        assert isinstance(transport, SerialTransport)
        transport.write(b"abc")
        assert transport.read_exactly(3, 1.0) == b"abc"


def test_unknown_scheme_lists_supported_forms() -> None:
    with pytest.raises(UnsupportedURL) as info:
        open_transport("ftp://printer")
    message = str(info.value)
    for form in ("/dev/ttyUSB0", "socket://", "usb://VVVV:PPPP", "sim://printer"):
        assert form in message


def test_empty_url_is_unsupported() -> None:
    with pytest.raises(UnsupportedURL):
        open_transport("  ")


def test_register_scheme_adds_a_transport() -> None:
    opened: list[tuple[str, TransportOptions]] = []

    def factory(url: str, options: TransportOptions) -> Transport:
        opened.append((url, options))
        return open_transport("loop://")

    register_scheme("test-scheme", factory)
    assert "test-scheme" in supported_schemes()
    open_transport("test-scheme://x").close()
    assert opened[0][0] == "test-scheme://x"


def test_sim_url_reaches_registered_device_and_applies_faults() -> None:
    device = EchoDevice()
    register_sim_device("echo-reg", device)
    try:
        with open_transport("sim://echo-reg?faults=garbage:hex=aa,slow_response:delay_s=0") as t:
            t.write(b"hi")
            assert t.read_exactly(3, 1.0) == b"\xaahi"
        device.unplug()
        with pytest.raises(DeviceUnplugged):
            open_transport("sim://echo-reg")
    finally:
        unregister_sim_device("echo-reg")


def test_sim_unknown_device_or_fault() -> None:
    with pytest.raises(UnsupportedURL, match="no simulated device named 'toaster'"):
        open_transport("sim://toaster")
    register_sim_device("echo-bad", EchoDevice())
    try:
        with pytest.raises(UnsupportedURL, match="bad fault 'melt'"):
            open_transport("sim://echo-bad?faults=melt")
        with pytest.raises(UnsupportedURL, match="allowed: faults"):
            open_transport("sim://echo-bad?fault=split")
    finally:
        unregister_sim_device("echo-bad")
