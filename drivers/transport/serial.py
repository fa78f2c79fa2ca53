"""Serial transport: every pyserial URL, with timeouts always set.

Plain device paths (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``) and pyserial
URLs (``socket://``, ``rfc2217://``, ``loop://``) open through
:func:`serial.serial_for_url`. pyserial and OS errors are mapped here, at the
boundary, to the :mod:`posedge.drivers.errors` tree:

    missing node, EIO, peer gone        → DeviceUnplugged
    EBUSY, lock held by another process → DeviceBusy (names the holder)
    EACCES / EPERM                      → DevicePermissionDenied (names the group)
    SerialTimeoutException              → DeviceTimeout

This module must never let a pyserial exception escape, never call modem-line
functions (they raise ENOTTY on a pseudo-terminal) and never interpret bytes.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import serial

from ..errors import (
    DeviceBusy,
    DeviceError,
    DevicePermissionDenied,
    DeviceTimeout,
    DeviceUnplugged,
    UnsupportedURL,
)
from .base import Transport

FlowControl = Literal["none", "rtscts", "xonxoff", "dsrdtr"]
FLOW_CONTROLS: tuple[str, ...] = ("none", "rtscts", "xonxoff", "dsrdtr")
_PARITIES = {"N", "E", "O", "M", "S"}

_PYSERIAL_ERRORS = (serial.SerialException, OSError, termios.error)
"""What pyserial raises; termios.error (from tcdrain/tcsetattr) is not an OSError."""
_BUSY_ERRNOS = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class SerialParams:
    """Line settings for a serial device (config keys under ``printer.serial`` etc.)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    flow_control: FlowControl = "none"
    timeout_s: float = 1.0
    write_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, got {self.baudrate}")
        if self.bytesize not in (5, 6, 7, 8):
            raise ValueError(f"bytesize must be 5..8, got {self.bytesize}")
        if self.parity not in _PARITIES:
            raise ValueError(f"parity must be one of {sorted(_PARITIES)}, got {self.parity!r}")
        if self.stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, got {self.stopbits}")
        if self.flow_control not in FLOW_CONTROLS:
            raise ValueError(
                f"flow_control must be one of {', '.join(FLOW_CONTROLS)}, got {self.flow_control!r}"
            )
        if self.timeout_s <= 0 or self.write_timeout_s <= 0:
            raise ValueError("timeout_s and write_timeout_s must be positive (never infinite)")

    def pyserial_kwargs(self) -> dict[str, Any]:
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "rtscts": self.flow_control == "rtscts",
            "xonxoff": self.flow_control == "xonxoff",
            "dsrdtr": self.flow_control == "dsrdtr",
            "timeout": self.timeout_s,
            "write_timeout": self.write_timeout_s,
        }


def is_local_path(url: str) -> bool:
    """True for a device node path (``/dev/…``), False for a pyserial ``scheme://`` URL."""
    return "://" not in url


def errno_of(exc: BaseException) -> int | None:
    """The first errno found on ``exc`` or the exceptions it was raised from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(current, termios.error) and current.args:
            code = current.args[0]
        if isinstance(code, int):
            return code
        current = current.__cause__ or current.__context__
    return None


def find_holders(path: str) -> list[tuple[int, str]]:
    """Processes (pid, command name) with ``path`` open, found by scanning /proc/*/fd."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return []
    holders: list[tuple[int, str]] = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        if any(_link_target(fd) == target for fd in fds):
            holders.append((pid, _command_name(proc)))
    return holders


def _link_target(fd: Path) -> str | None:
    try:
        return os.readlink(fd)
    except OSError:
        return None


def _command_name(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return "?"


def permission_hint(path: str) -> str:
    """What fixes a permission problem on ``path``: the group to join, else a udev rule."""
    user = os.environ.get("USER") or str(os.getuid())
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = None
    if group and group != "root":
        return (
            f"add the user to group '{group}' (sudo usermod -aG {group} {user}), then log in again"
        )
    return (
        "install a udev rule giving your user or a group access, e.g. "
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="VVVV", MODE="0660", GROUP="dialout" '
        "in /etc/udev/rules.d/99-posedge.rules, then replug the device"
    )


def busy_message(path: str) -> str:
    holders = find_holders(path) if is_local_path(path) else []
    if not holders:
        return (
            "device is busy (another process or a kernel driver holds it); "
            "stop the other program (e.g. ModemManager, a second posedge, screen/minicom)"
        )
    who = ", ".join(f"pid {pid} ({name})" for pid, name in holders)
    return f"device is busy: held by {who}; stop that process and retry"


def map_serial_error(exc: BaseException, url: str, *, opening: bool = False) -> DeviceError:
    """Translate a pyserial or OS exception into the drivers error tree."""
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, serial.SerialTimeoutException):
        return DeviceTimeout(
            "write timed out: the device is not accepting data (flow control, "
            "buffer full, or it is offline)",
            url=url,
        )
    code = errno_of(exc)
    if code in _DENIED_ERRNOS:
        return DevicePermissionDenied(f"permission denied; {permission_hint(url)}", url=url)
    if code == errno.EBUSY or (opening and code in _BUSY_ERRNOS):
        return DeviceBusy(busy_message(url), url=url)
    if opening and code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceUnplugged(
            f"no such device ({exc}); check the cable and power, and run `posedge devices`",
            url=url,
        )
    return DeviceUnplugged(
        f"device disconnected or not reachable ({exc}); it will be reopened when it returns",
        url=url,
    )


class SerialTransport(Transport):
    """A :class:`Transport` over any pyserial URL. Thread-safe for one reader and one writer."""

    def __init__(self, url: str, params: SerialParams | None = None) -> None:
        self.url = url
        self.params = params or SerialParams()
        self._lock = threading.Lock()
        self._timeout_s: float = self.params.timeout_s
        self._port: Any = self._open()

    def _open(self) -> Any:
        kwargs = self.params.pyserial_kwargs()
        if is_local_path(self.url):
            kwargs["exclusive"] = True
        try:
            port = serial.serial_for_url(self.url, **kwargs)
        except _PYSERIAL_ERRORS as exc:
            raise map_serial_error(exc, self.url, opening=True) from None
        except ValueError as exc:
            raise UnsupportedURL(f"pyserial cannot open this URL: {exc}", url=self.url) from None
        refuse_self_connection(port, self.url)
        return port

    def _require_open(self) -> Any:
        if self._port is None:
            raise DeviceUnplugged("transport is closed", url=self.url)
        return self._port

    def write(self, data: bytes) -> None:
        port = self._require_open()
        try:
            port.write(bytes(data))
            port.flush()
        except _PYSERIAL_ERRORS as exc:
            raise map_serial_error(exc, self.url) from None

    def read(self, size: int, timeout_s: float) -> bytes:
        port = self._require_open()
        try:
            self._set_read_timeout(port, timeout_s)
            first: bytes = port.read(1)
            if not first or size <= 1:
                return first
            waiting = min(int(port.in_waiting), size - 1)
            rest: bytes = port.read(waiting) if waiting else b""
            return first + rest
        except _PYSERIAL_ERRORS as exc:
            raise map_serial_error(exc, self.url) from None

    def _set_read_timeout(self, port: Any, timeout_s: float) -> None:
        timeout_s = max(timeout_s, 0.0)
        if timeout_s != self._timeout_s:
            port.timeout = timeout_s
            self._timeout_s = timeout_s

    def flush_input(self) -> None:
        port = self._require_open()
        try:
            port.reset_input_buffer()
        except _PYSERIAL_ERRORS as exc:
            raise map_serial_error(exc, self.url) from None

    def close(self) -> None:
        with self._lock:
            port, self._port = self._port, None
        if port is not None:
            _close_port(port)

    @property
    def is_open(self) -> bool:
        return self._port is not None and bool(self._port.is_open)


def refuse_self_connection(port: Any, url: str) -> None:
    """A ``socket://`` connect to a local port nobody listens on can connect to itself:
    Linux may pick that very port as the source (TCP simultaneous open). The port would
    then echo every command and pass for a device, and hold the address the device
    listens on when it returns. Closed and refused as unreachable."""
    sock = getattr(port, "_socket", None)
    if not isinstance(sock, socket.socket):
        return
    try:
        itself = sock.getsockname() == sock.getpeername()
    except OSError:
        return
    if itself:
        _close_port(port)
        raise DeviceUnplugged(
            "nothing listens at this address (the connection reached itself); "
            "it will be reopened when the device returns",
            url=url,
        )


def _close_port(port: Any) -> None:
    """Close a pyserial port without its known leaks and stalls.

    pyserial's ``socket://`` close skips ``socket.close()`` when ``shutdown``
    fails (peer already gone: a ResourceWarning leak) and then sleeps 0.3 s;
    close that socket here first.
    """
    sock = getattr(port, "_socket", None)
    if type(port).__module__.endswith("protocol_socket") and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        port._socket = None
        port.is_open = False
        return
    with contextlib.suppress(*_PYSERIAL_ERRORS):
        port.close()
