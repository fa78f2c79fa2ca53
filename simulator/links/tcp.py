"""TCP link: a :class:`VirtualDevice` reachable as ``socket://host:port``.

Another process (or pyserial's ``socket://`` handler) connects to the server;
one host connection is served at a time, a new one replaces the old, as a
network printer does. Replies go to the current connection only; with no
host connected they are dropped (after a short grace for a pending accept).

Unplugging the device drops the connection (the host sees EOF) and closes the
listening socket, so new connections are refused until replug, which listens
again on the same port.

This module must never be used outside tests and ``posedge simulate``, and
never interprets the bytes it carries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time

from ..core import VirtualDevice
from . import routing
from .plugged import PluggedLink
from .routing import POLL_S, READ_CHUNK_BYTES

ACCEPT_GRACE_S = 0.5
REBIND_S = 2.0
REBIND_RETRY_S = 0.01


class _Server:
    """One plug-in of the device: a listening socket, its connection and two pump threads."""

    def __init__(self, device: VirtualDevice, host: str, port: int) -> None:
        self.device = device
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.listener.listen(4)
        except OSError:
            self.listener.close()
            raise
        self.port: int = self.listener.getsockname()[1]
        self._conn: socket.socket | None = None
        self._conn_lock = threading.Lock()
        self._has_conn = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, name="tcp-serve", daemon=True)]
        for thread in self._threads:
            thread.start()
        routing.attach(device, self, self._send)

    def _serve(self) -> None:
        while not self._stop.is_set():
            watched: list[socket.socket | int] = [self.listener, self._wake_r]
            conn = self._conn
            if conn is not None:
                watched.append(conn)
            ready, _, _ = select.select(watched, [], [], POLL_S)
            if self._wake_r in ready:
                return
            if self.listener in ready:
                self._accept()
            if conn is not None and conn in ready:
                self._read_from(conn)

    def _accept(self) -> None:
        new, _ = self.listener.accept()
        new.setblocking(False)
        new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._conn_lock:
            old, self._conn = self._conn, new
            self._has_conn.set()
        routing.claim(self.device, self)
        if old is not None:
            old.close()

    def _read_from(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            routing.claim(self.device, self)
            self.device.receive(data)
            return
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
                self._has_conn.clear()
        conn.close()

    def _send(self, data: bytes) -> None:
        self._has_conn.wait(ACCEPT_GRACE_S)  # a host that just connected may not be accepted yet
        with self._conn_lock:
            conn = self._conn
        if conn is None:
            return  # nobody connected: the reply goes nowhere, as on a real network
        routing.write_all(data, conn.send, conn, self._stop, self._wake_r)

    def stop(self) -> None:
        routing.halt(self.device, self, self._stop, self._wake_w, self._threads)
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _listen(device: VirtualDevice, host: str, port: int) -> _Server:
    """A server on ``port`` again after an unplug. A host that kept reconnecting meanwhile
    can hold the port for a moment: on loopback a connect to an unbound ephemeral port
    may be given that very port as its source and reach itself (the driver refuses and
    closes such a connection at once). The bind is tried again for up to
    :data:`REBIND_S` while the port is in use."""
    deadline = time.monotonic() + REBIND_S
    while True:
        try:
            return _Server(device, host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0 or time.monotonic() > deadline:
                raise
        time.sleep(REBIND_RETRY_S)


class TcpLink(PluggedLink):
    """A virtual device served on ``host:port`` (``port=0`` picks a free one)."""

    def __init__(self, device: VirtualDevice, host: str = "127.0.0.1", port: int = 0) -> None:
        if not device.plugged and port == 0:
            raise ValueError("a TcpLink for an unplugged device needs an explicit port")
        super().__init__(device)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._follow_plug()

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def _plug_in(self) -> None:
        with self._lock:
            if self._closed or self._server is not None:
                return
            self._server = _listen(self.device, self.host, self.port)
            self.port = self._server.port

    def _pull_out(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
