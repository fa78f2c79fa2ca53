"""TcpLink specifics: refused while unplugged, same port after replug, one host at a time."""

from __future__ import annotations

import socket

import pytest

from posedge.drivers.errors import DeviceUnplugged
from posedge.drivers.transport import open_transport
from posedge.simulator.links.tcp import TcpLink

from ..drivers.transport_fixtures import TEST_PARAMS, EchoDevice


def test_refuses_while_unplugged_and_returns_on_same_port() -> None:
    device = EchoDevice()
    with TcpLink(device) as link:
        url = link.url
        device.unplug()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", link.port), timeout=1).close()
        with pytest.raises(DeviceUnplugged):
            open_transport(url, serial=TEST_PARAMS)
        device.replug()
        assert link.url == url
        with open_transport(url, serial=TEST_PARAMS) as transport:
            transport.write(b"ok")
            assert transport.read_exactly(2, 2.0) == b"ok"


def test_new_connection_replaces_old() -> None:
    device = EchoDevice()
    with TcpLink(device) as link:
        old = open_transport(link.url, serial=TEST_PARAMS)
        try:
            old.write(b"1")
            assert old.read_exactly(1, 2.0) == b"1"
            with open_transport(link.url, serial=TEST_PARAMS) as new:
                new.write(b"2")
                assert new.read_exactly(1, 2.0) == b"2"
                with pytest.raises(DeviceUnplugged):
                    old.read(1, 2.0)
        finally:
            old.close()
