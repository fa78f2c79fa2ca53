"""How a command finds the running daemon and asks it: ``posedge doctor`` and ``posedge status``.

Whether a daemon runs is the state directory's lock (:mod:`posedge.agent.daemon.lockfile`):
the daemon holds an exclusive ``flock`` on ``daemon.lock`` for its whole life, and the
kernel drops it however the daemon dies. :func:`daemon_pid` probes it with a *shared*,
non-blocking ``flock`` on a read-only descriptor, released at once: it never writes the
file, never waits, and a daemon starting in that instant of overlap is refused with
"already running" and restarted by systemd (the probe holds the lock for microseconds).

:class:`DaemonLink` reads the till API's address and bearer token the way the till does
(``api.socket``, else the daemon's own ``$RUNTIME_DIRECTORY/api.sock`` read from
``/proc/PID/environ``, else ``<state dir>/api.sock``; ``api.token_file`` or
``<state dir>/api-token``) and GETs JSON from it. Errors (exit codes per DESIGN §3):

    PeerUnreachable          exit 4  no daemon, no token file, no answer, not JSON
    ConfigError              exit 2  this user may not read the daemon lock: cannot tell

This module must never open devices or the journal, never log the token, and never take
the daemon lock for longer than the probe.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..daemon.lockfile import LOCK_FILE_NAME, StateDirLock
from ..errors import ConfigError, PeerUnreachable

CHECKS_PATH = "/v1/health/checks"
"""The daemon runs its health checks on request here (:mod:`.routes`)."""
DAEMON_TIMEOUT_S = 5.0
"""How long the daemon may take to answer one request (its loop answers in milliseconds)."""


def daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding ``state_dir``'s lock; ``None`` when none runs.

    A daemon that holds the lock but has not yet recorded its pid is reported as ``0``.
    """
    path = Path(state_dir) / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except PermissionError:
        raise ConfigError(
            f"cannot tell whether a posedge daemon runs: {path}: permission denied; run this "
            "as the service user (sudo -u posedge posedge …) or as root"
        ) from None
    except OSError:
        return None  # no lock file (never started here), or a link (no daemon would take it)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return StateDirLock(path).holder_pid() or 0
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _daemon_environment(pid: int) -> dict[str, str]:
    """Our environment with the daemon's ``RUNTIME_DIRECTORY`` (from ``/proc/PID/environ``,
    readable by its user and root): under systemd the socket is in ``/run/posedge``, which a
    technician's shell does not name. Ours alone when it cannot be read."""
    env = dict(os.environ)
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes() if pid > 0 else b""
    except OSError:
        return env
    for item in raw.split(b"\0"):
        key, _, value = item.partition(b"=")
        if key == b"RUNTIME_DIRECTORY":
            env["RUNTIME_DIRECTORY"] = value.decode("utf-8", "replace")
            break
    else:
        env.pop("RUNTIME_DIRECTORY", None)  # the daemon has none: the state dir's socket
    return env


@dataclass
class DaemonLink:
    """The running daemon's till API, reached as the till reaches it."""

    socket: Path
    token: str
    pid: int
    state_dir: Path

    @classmethod
    def connect(cls, config: Any, state_dir: Path) -> DaemonLink:
        """Find the daemon of ``state_dir``; :class:`PeerUnreachable` when none runs."""
        pid = daemon_pid(state_dir)
        if pid is None:
            raise PeerUnreachable(
                f"no posedge daemon is running on state directory {state_dir}: start it "
                "(systemctl start posedge, or posedge run) or pass the --state-dir it uses"
            )
        from ..api.server import resolve_api_paths

        paths = resolve_api_paths(config, state_dir, _daemon_environment(pid))
        try:
            token = Path(paths.token_file).read_text("utf-8").strip()
        except OSError as exc:
            raise PeerUnreachable(
                f"the daemon (pid {pid}) runs, but its API token {paths.token_file} cannot be "
                f"read ({exc.strerror}); run this as the posedge user"
            ) from None
        return cls(Path(paths.socket), token, pid, state_dir)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float = DAEMON_TIMEOUT_S,
        stuck_hint: str = "it may be stuck; see its log (journalctl -u posedge) and restart it",
    ) -> Any:
        """One request to the daemon's API (the ``httpx.Response``, whatever its status);
        PeerUnreachable when it does not answer (``stuck_hint`` ends the timeout's message)."""
        import httpx  # here: `posedge --help` never pays for it

        where = f"the daemon (pid {self.pid}) on {self.socket}"
        try:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=str(self.socket)),
                base_url="http://posedge",
                timeout=timeout_s,
            ) as http:
                return http.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {self.token}"}
                )
        except httpx.TimeoutException:
            raise PeerUnreachable(
                f"{where} did not answer {path} within {timeout_s:g}s: {stuck_hint}"
            ) from None
        except httpx.TransportError as exc:
            raise PeerUnreachable(
                f"{where} does not answer ({type(exc).__name__}); it may still be starting, "
                "or api.socket differs from the daemon's: pass the same --config"
            ) from None

    def get(
        self, path: str, timeout_s: float = DAEMON_TIMEOUT_S, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """GET ``path`` from the daemon's API: the JSON object it answers (``None`` for a
        404 with ``missing_ok``: a daemon that predates the endpoint)."""
        where = f"the daemon (pid {self.pid}) on {self.socket}"
        reply = self.request("GET", path, timeout_s=timeout_s)
        if reply.status_code == 404 and missing_ok:
            return None
        if reply.status_code != 200:
            raise PeerUnreachable(
                f"{where} answered {path} with HTTP {reply.status_code}"
                + (": the API token was refused" if reply.status_code == 401 else "")
            )
        try:
            doc = reply.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise PeerUnreachable(f"{where} answered {path} with something that is not JSON")
        return doc

    def status(self) -> dict[str, Any]:
        doc = self.get("/v1/status")
        assert doc is not None
        return doc


__all__ = ["CHECKS_PATH", "DAEMON_TIMEOUT_S", "DaemonLink", "daemon_pid"]
