"""The systemd notify protocol (sd_notify(3)), implemented directly.

systemd passes ``NOTIFY_SOCKET`` (an absolute path, or ``@name`` for a Linux
abstract socket); the service sends newline-separated ``KEY=value``
assignments as one datagram on an ``AF_UNIX``/``SOCK_DGRAM`` socket. The
kernel attaches our credentials, which is how systemd checks
``NotifyAccess=main``. No libsystemd is needed.

:class:`Notifier` is a no-op when ``NOTIFY_SOCKET`` is unset (a foreground run
or tests), so callers never branch on "are we under systemd".

This module must never raise into its caller because a send failed (systemd
being away must not crash a till; the first failure of a streak is logged),
never block the event loop for long (sends have a short timeout), and never
let a status text inject another assignment (newlines are flattened).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("posedge.daemon.notify")

SEND_TIMEOUT_S = 0.5
_MAX_STATUS_CHARS = 512


def _address(value: str) -> str | None:
    """``/run/systemd/notify`` as is, ``@name`` → ``"\\0name"``; anything else → None."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def _one_line(text: str) -> str:
    """A STATUS= value: one line, bounded, so it cannot smuggle in ``READY=1``."""
    flat = " ".join(text.split())
    return flat[:_MAX_STATUS_CHARS]


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages; every method is a no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        """The socket address as passed to ``sendto`` (abstract names start with NUL)."""
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None)
        address = _address(raw)
        if address is None:
            log.warning(
                "NOTIFY_SOCKET=%r is neither an absolute path nor @abstract; "
                "systemd notifications are off",
                raw,
            )
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True when it was delivered."""
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot notify systemd: %s; continuing without notifications until "
                    "a send succeeds",
                    exc,
                    extra={"notify_socket": self.address.replace("\0", "@")},
                )
            self._failing = True
            return False
        if self._failing:
            log.info("systemd notifications work again")
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: startup (or a reload) is complete and the service is usable."""
        extra = [f"STATUS={_one_line(status)}"] if status is not None else []
        return self.send("READY=1", *extra)

    def status(self, text: str) -> bool:
        """STATUS=: the one-line summary ``systemctl status`` shows."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: keep-alive; send only while the service is really healthy."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown has begun."""
        extra = [f"STATUS={_one_line(status)}"] if status is not None else []
        return self.send("STOPPING=1", *extra)

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC= (required since systemd 253); send READY=1 after."""
        extra = [f"STATUS={_one_line(status)}"] if status is not None else []
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *extra)

    def extend_timeout(self, usec: int) -> bool:
        """EXTEND_TIMEOUT_USEC=: ask for more start/stop time (from now, not cumulative)."""
        if usec <= 0:
            raise ValueError(f"extend_timeout needs a positive number of microseconds, not {usec}")
        return self.send(f"EXTEND_TIMEOUT_USEC={int(usec)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or None when off.

    None when ``WATCHDOG_USEC`` is unset, not a positive integer, or when
    ``WATCHDOG_PID`` is set and names another process (the variables were
    inherited from a parent, so the watchdog is not ours).
    """
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog pings are off", raw)
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            owner_pid = int(owner)
        except ValueError:
            return None
        if owner_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 1_000_000 / 2
