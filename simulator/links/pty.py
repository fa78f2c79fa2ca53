"""Pseudo-terminal link: real pyserial code talks to a :class:`VirtualDevice`.

The link owns the master side of a pty pair; a thread pumps host bytes from
the master to ``device.receive``, and the device's replies arrive through
:mod:`.routing` (one reply pump per device, shared by all its links).
The slave is put in raw mode at once (otherwise the tty layer echoes and
translates CR/LF) and the link keeps its own slave fd open, so reads on the
master never fail just because no driver has the port open.

Unplugging the device closes the master (pyserial then sees ``SerialException``
on read and EIO on write, as with a pulled USB-serial adapter) and removes the
symlink; replugging creates a new pty and re-points the symlink atomically
(``os.replace``), so a driver pointed at the symlink can reconnect.

This module must never be used outside tests and ``posedge simulate``, and
never interprets the bytes it carries.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from pathlib import Path

from ..core import VirtualDevice
from . import routing
from .plugged import PluggedLink
from .routing import POLL_S, READ_CHUNK_BYTES


class _PtyPair:
    """One plug-in of the device: a pty pair, its pump threads and their stop signal."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self.slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._pump_in, name="pty-in", daemon=True)]
        for thread in self._threads:
            thread.start()
        routing.attach(device, self, self._write_all)

    def _pump_in(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self._wake_r], [], [], POLL_S)
            if self._wake_r in ready:
                return
            if not ready:
                continue
            try:
                data = os.read(self.master, READ_CHUNK_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                return
            routing.claim(self.device, self)
            self.device.receive(data)

    def _write_all(self, data: bytes) -> None:
        routing.write_all(
            data, lambda view: os.write(self.master, view), self.master, self._stop, self._wake_r
        )

    def stop(self) -> None:
        """Stop the pumps, then close the master (the host sees an unplug)."""
        routing.halt(self.device, self, self._stop, self._wake_w, self._threads)
        for fd in (self.master, self.slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyLink(PluggedLink):
    """A virtual device reachable as a serial port (``path``)."""

    def __init__(self, device: VirtualDevice, symlink: Path | None = None) -> None:
        super().__init__(device)
        self.symlink = symlink
        self._pair: _PtyPair | None = None
        self._last_slave_path = ""
        self._follow_plug()

    @property
    def slave_path(self) -> str:
        """The current pty slave (``/dev/pts/N``); changes on every replug."""
        return self._last_slave_path

    @property
    def path(self) -> str:
        """Where a driver opens the device: the symlink if one was asked for, else the slave."""
        return str(self.symlink) if self.symlink is not None else self._last_slave_path

    def _plug_in(self) -> None:
        with self._lock:
            if self._closed or self._pair is not None:
                return
            self._pair = _PtyPair(self.device)
            self._last_slave_path = self._pair.slave_path
            if self.symlink is not None:
                _point_symlink(self.symlink, self._pair.slave_path)

    def _pull_out(self) -> None:
        with self._lock:
            pair, self._pair = self._pair, None
            if self.symlink is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.symlink.unlink()
        if pair is not None:
            pair.stop()


def _point_symlink(symlink: Path, target: str) -> None:
    """Atomically make ``symlink`` point at ``target`` (never a moment without a link)."""
    tmp = symlink.with_name(f".{symlink.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, symlink)
