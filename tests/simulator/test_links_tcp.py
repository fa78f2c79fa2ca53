"""TcpLink specifics: refused while unplugged, same port after replug, one host at a time."""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

import pytest

from posedge.drivers.errors import DeviceUnplugged
from posedge.drivers.transport import open_transport
from posedge.simulator.links import tcp
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


def _holder(port: int) -> socket.socket:
    """A socket on the link's port, as a host's connection that reached itself holds it."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEADDR: exclusive
    held.bind(("127.0.0.1", port))
    return held


def test_replug_waits_for_a_port_held_for_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    device = EchoDevice()
    refused = threading.Event()
    real = tcp._Server

    def server(*args: Any) -> Any:
        try:
            return real(*args)
        except OSError:
            refused.set()
            raise

    monkeypatch.setattr(tcp, "_Server", server)
    with TcpLink(device) as link:
        device.unplug()
        held = _holder(link.port)
        replugged = threading.Thread(target=device.replug)
        replugged.start()
        assert refused.wait(5.0)  # the bind met the held port ...
        held.close()  # ... which is let go: the next try gets it
        replugged.join(10.0)
        assert not replugged.is_alive()
        with open_transport(link.url, serial=TEST_PARAMS) as transport:
            transport.write(b"ok")
            assert transport.read_exactly(2, 2.0) == b"ok"


def test_replug_gives_up_on_a_port_kept_by_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "REBIND_S", 0.05)
    device = EchoDevice()
    with TcpLink(device) as link:
        device.unplug()
        held = _holder(link.port)
        try:
            with pytest.raises(OSError) as refused:
                device.replug()
            assert refused.value.errno == errno.EADDRINUSE
        finally:
            held.close()
