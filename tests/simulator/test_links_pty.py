"""PtyLink specifics: raw mode, symlink lifecycle across unplug/replug, routing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posedge.drivers.errors import DeviceUnplugged
from posedge.drivers.transport import open_transport
from posedge.simulator.links.pty import PtyLink
from posedge.simulator.links.tcp import TcpLink

from ..drivers.transport_fixtures import TEST_PARAMS, EchoDevice


def test_slave_is_raw_no_echo_no_crlf_translation() -> None:
    device = EchoDevice()
    device.apply_fault("no_response")
    with PtyLink(device) as link, open_transport(link.path, serial=TEST_PARAMS) as transport:
        transport.write(b"a\nb\r")
        assert transport.read(16, 0.2) == b""  # no tty echo
        assert device.wait_until(lambda: len(device.received) >= 4, 2.0)
    assert device.received == b"a\nb\r"


def test_symlink_follows_replug(tmp_path: Path) -> None:
    device = EchoDevice()
    symlink = tmp_path / "printer"
    with PtyLink(device, symlink) as link:
        first = os.readlink(symlink)
        assert first == link.slave_path and link.path == str(symlink)
        device.unplug()
        assert not symlink.exists() and not symlink.is_symlink()
        with pytest.raises(DeviceUnplugged, match="no such device"):
            open_transport(str(symlink), serial=TEST_PARAMS)
        device.replug()
        assert os.readlink(symlink) == link.slave_path
        with open_transport(str(symlink), serial=TEST_PARAMS) as transport:
            transport.write(b"back")
            assert transport.read_exactly(4, 2.0) == b"back"
    assert not symlink.is_symlink()


def test_replies_go_to_the_link_the_host_used_last(tmp_path: Path) -> None:
    device = EchoDevice()
    with PtyLink(device) as pty, TcpLink(device) as tcp:
        for url in (tcp.url, pty.path, tcp.url, pty.path):
            with open_transport(url, serial=TEST_PARAMS) as transport:
                transport.write(b"\x10\x04\x01")
                assert transport.read_exactly(3, 2.0) == b"\x10\x04\x01", url
