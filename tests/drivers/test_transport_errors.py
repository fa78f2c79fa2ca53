"""pyserial, pyusb and OS errors map to the drivers error tree, with advice."""

from __future__ import annotations

import errno
import grp
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
import usb.core

from posedge.drivers.errors import (
    DeviceBusy,
    DeviceError,
    DevicePermissionDenied,
    DeviceTimeout,
    DeviceUnplugged,
)
from posedge.drivers.transport import open_transport
from posedge.drivers.transport.serial import (
    SerialParams,
    SerialTransport,
    find_holders,
    map_serial_error,
)
from posedge.drivers.transport.usb import UsbAddress, map_usb_error


@pytest.fixture
def bare_pty() -> Iterator[str]:
    """A raw pty nobody drains: the slave's buffer fills up."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_missing_device_is_unplugged() -> None:
    with pytest.raises(DeviceUnplugged, match=r"no such device.*posedge devices"):
        open_transport("/dev/serial/by-id/usb-posedge-does-not-exist")


def test_refused_socket_is_unplugged() -> None:
    with pytest.raises(DeviceUnplugged):
        open_transport("socket://127.0.0.1:1", serial=SerialParams(timeout_s=0.5))


def test_busy_port_names_holder_process(bare_pty: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, bare_pty],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with pytest.raises(DeviceBusy) as info:
            SerialTransport(bare_pty)
        assert f"pid {holder.pid} (python" in str(info.value)
    finally:
        holder.communicate("")
    assert holder.returncode == 0


HOLD_PORT = """
import sys, serial
port = serial.Serial(sys.argv[1], exclusive=True, timeout=1)
print("ready", flush=True)
sys.stdin.read()
port.close()
"""


def test_find_holders_sees_own_fd(bare_pty: str) -> None:
    fd = os.open(bare_pty, os.O_RDWR | os.O_NOCTTY)
    try:
        assert (os.getpid(), Path(f"/proc/{os.getpid()}/comm").read_text().strip()) in (
            find_holders(bare_pty)
        )
    finally:
        os.close(fd)


def test_write_timeout_is_device_timeout(bare_pty: str) -> None:
    transport = SerialTransport(bare_pty, SerialParams(write_timeout_s=0.2))
    with transport, pytest.raises(DeviceTimeout, match="not accepting data"):
        for _ in range(100):
            transport.write(b"\x00" * 65536)


def test_permission_denied_names_the_group(tmp_path: Path) -> None:
    node = tmp_path / "ttyUSB9"
    node.touch()
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    os.chown(node, -1, group.gr_gid)
    exc = serial.SerialException(
        errno.EACCES, f"could not open port {node}: [Errno 13] Permission denied: '{node}'"
    )
    mapped = map_serial_error(exc, str(node), opening=True)
    assert isinstance(mapped, DevicePermissionDenied)
    assert f"group '{group.gr_name}'" in mapped.message
    assert "usermod -aG" in mapped.message


def test_permission_denied_on_root_group_suggests_udev_rule(tmp_path: Path) -> None:
    node = tmp_path / "ttyACM0"
    node.touch()
    os.chown(node, -1, 0)
    mapped = map_serial_error(PermissionError(errno.EACCES, "denied"), str(node), opening=True)
    assert isinstance(mapped, DevicePermissionDenied)
    assert "udev rule" in mapped.message


def test_read_failure_is_unplugged() -> None:
    exc = serial.SerialException("device reports readiness to read but returned no data")
    assert isinstance(map_serial_error(exc, "/dev/ttyUSB0"), DeviceUnplugged)


ADDRESS = UsbAddress(0x04B8, 0x0202)


@pytest.mark.parametrize(
    ("exc", "expected", "advice"),
    [
        (usb.core.USBError("No such device", -4, errno.ENODEV), DeviceUnplugged, "cable"),
        (usb.core.USBError("No such device", 19), DeviceUnplugged, "cable"),
        (usb.core.USBError("Resource busy", -6, errno.EBUSY), DeviceBusy, "usblp"),
        (usb.core.USBError("Access denied", -3, errno.EACCES), DevicePermissionDenied, "04b8"),
        (usb.core.USBTimeoutError("Operation timed out", -7, 110), DeviceTimeout, "not answering"),
        (usb.core.USBError("Input/Output Error", -1, errno.EIO), DeviceUnplugged, "cable"),
        (usb.core.NoBackendError("No backend available"), DeviceError, "libusb"),
    ],
)
def test_usb_error_mapping(exc: Exception, expected: type[DeviceError], advice: str) -> None:
    mapped = map_usb_error(exc, "usb://04b8:0202", ADDRESS)
    assert type(mapped) is expected
    assert advice in mapped.message
    assert mapped.url == "usb://04b8:0202"


def test_permission_message_contains_udev_rule() -> None:
    mapped = map_usb_error(usb.core.USBError("Access denied", -3, 13), "usb://04b8:0202", ADDRESS)
    assert 'ATTRS{idVendor}=="04b8"' in mapped.message
    assert 'ATTRS{idProduct}=="0202"' in mapped.message


def test_a_socket_connected_to_itself_is_refused_and_closed() -> None:
    """A connect to a local port with no listener can reach itself (TCP simultaneous
    open, here made on purpose); such a "device" would echo every command."""
    import socket as socket_module

    from posedge.drivers.transport.serial import refuse_self_connection

    class Port:  # what pyserial's socket:// port object holds
        def __init__(self, sock: socket_module.socket) -> None:
            self._socket = sock
            self.is_open = True

        def close(self) -> None:
            self._socket.close()
            self.is_open = False

    sock = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.connect(sock.getsockname())  # nobody listens: the socket connects to itself
    port = Port(sock)
    with pytest.raises(DeviceUnplugged, match="reached itself") as info:
        refuse_self_connection(port, "socket://127.0.0.1:1")
    assert info.value.url == "socket://127.0.0.1:1"
    assert not port.is_open and sock.fileno() == -1  # closed: the address is free again

    other = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
    listener = socket_module.create_server(("127.0.0.1", 0))
    with other, listener:
        other.connect(listener.getsockname())
        refuse_self_connection(Port(other), "socket://ok")  # a real peer: nothing raised
