"""Serving the till API with uvicorn inside the daemon's event loop.

:class:`ApiServer` binds a Unix socket (mode 0660, group ``posedge-till`` when
that group exists — the till's own group, never the group that owns the card
reader and printer nodes; a stale file left by a crash is removed, a socket
another live process listens on is refused) and optionally a TCP address
(loopback only unless explicitly allowed; the API has no TLS, so with
``api.allow_non_loopback`` every start logs a warning that the bearer token and
sale data cross the network in cleartext)::

    server = ApiServer(app, paths.socket, tcp="127.0.0.1:0")
    await server.start()          # returns once listening; server.tcp_port is bound
    ...
    await server.stop()           # long-polls answer at once, then a graceful close

It never installs signal handlers (the daemon owns SIGTERM/SIGINT), never
sets up an event loop, and never logs requests, bodies or tokens (uvicorn's
access log is off).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from posedge.agent.config import ApiConfig, Config
from posedge.agent.errors import ConfigError

from .app import begin_drain
from .bearer import token_path

log = logging.getLogger("posedge.api")

SOCKET_FILE_NAME = "api.sock"
SOCKET_MODE = 0o660
SOCKET_GROUP = "posedge-till"
"""The till application's group (systemd/posedge.sysusers.conf). The socket is given to it
when it exists; the service is a member (SupplementaryGroups= in posedge.service)."""
LISTEN_BACKLOG = 128
GRACEFUL_STOP_S = 5.0
"""How long stop() lets open requests finish before cancelling them."""
PROBE_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 30
_MAX_UNIX_PATH_BYTES = 107  # sun_path is 108 bytes with the terminating NUL


class ApiSocketInUse(ConfigError):
    """Another live process listens on the API socket (a second agent?)."""


@dataclass(frozen=True)
class ApiPaths:
    socket: Path
    """The Unix socket the till connects to."""
    token_file: Path
    """Where the bearer token is read from (created there when api.token_file is unset)."""
    listen: str | None
    """Optional TCP HOST:PORT (api.listen)."""


def resolve_api_paths(
    config: Config | ApiConfig, state_dir: Path, env: Mapping[str, str] | None = None
) -> ApiPaths:
    """``api.socket``, else ``$RUNTIME_DIRECTORY/api.sock``, else ``<state dir>/api.sock``."""
    env = os.environ if env is None else env
    api = config.api if isinstance(config, Config) else config
    if api.socket:
        sock = Path(api.socket)
    elif env.get("RUNTIME_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        sock = Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_FILE_NAME
    else:
        sock = state_dir / SOCKET_FILE_NAME
    return ApiPaths(socket=sock, token_file=token_path(api, state_dir), listen=api.listen)


def check_listen_address(listen: str, allow_non_loopback: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); refuses non-loopback hosts."""
    where = "api.listen / --api-listen"
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    digits = port_text.isascii() and port_text.isdigit()
    if not sep or not host or not digits or not 0 <= int(port_text) < 65536:
        raise ConfigError(f"{where} = {listen!r}: not HOST:PORT; write e.g. 127.0.0.1:8765")
    port = int(port_text)
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConfigError(f"{where} = {listen!r}: cannot resolve {host}: {exc}") from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    if not allow_non_loopback and not all(a.is_loopback for a in addresses):
        raise ConfigError(
            f"{where} = {listen!r}: not a loopback address; the till API would be reachable "
            "from the network. Use 127.0.0.1 or ::1, or set api.allow_non_loopback = true "
            "if that is really wanted (the bearer token is then the only protection)"
        )
    return host, port


def bind_unix_socket(path: Path, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0660, replacing only a stale one.

    Its group is ``group`` (default :data:`SOCKET_GROUP`) when that group exists, else the
    process's own group.
    """
    if len(os.fsencode(path)) > _MAX_UNIX_PATH_BYTES:
        raise ConfigError(
            f"api.socket = {str(path)!r}: over {_MAX_UNIX_PATH_BYTES} bytes, too long for a "
            "Unix socket; choose a shorter path"
        )
    _remove_stale_socket(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        # Nobody can connect before listen(), so mode and group are right before the first
        # client.
        os.chmod(path, SOCKET_MODE)
        _give_to_group(path, SOCKET_GROUP if group is None else group)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"api.socket = {str(path)!r}: cannot listen there: {exc.strerror}"
        ) from None
    return sock


def _give_to_group(path: Path, group: str) -> None:
    """chgrp the socket to the till's group if it exists; a member may, root may."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.debug("no group %s: the till API socket keeps the process's group", group)
        return
    if os.stat(path).st_gid == gid:
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        log.warning(
            "cannot give the till API socket %s to group %s: this process is not a member; "
            "the till cannot connect — add SupplementaryGroups=%s to the service",
            path,
            group,
            group,
            extra={"socket": str(path), "group": group},
        )


def _remove_stale_socket(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(
            f"api.socket = {str(path)!r}: a file that is not a socket is in the way; "
            "move it or choose another api.socket"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(
                f"api.socket = {str(path)!r}: cannot tell whether another process listens "
                f"there ({exc.strerror}); stop it or remove the file"
            ) from None
    else:
        raise ApiSocketInUse(
            f"api.socket = {str(path)!r}: another process is listening there (another "
            "posedge agent?); stop it or choose another api.socket"
        )
    finally:
        probe.close()
    log.info("removing the stale API socket %s left by an earlier run", path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def bind_tcp_socket(host: str, port: int, where: str = "api.listen") -> socket.socket:
    """A listening non-blocking TCP socket on ``host:port`` (the till API's, the metrics'),
    or a ConfigError naming the setting ``where``."""
    try:
        literal = ipaddress.ip_address(host)
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
    except ValueError:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except OSError as exc:
            raise ConfigError(f"{where}: cannot resolve {host}: {exc}") from None
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (with proto 0
    # it does not, and every keep-alive reply stalls ~40 ms on delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{where} = '{host}:{port}': cannot listen there: {exc.strerror}; choose another "
            "port or stop what holds it"
        ) from None
    return sock


def embedded_config(
    app: Any, log_level: str, graceful_stop_s: float, keep_alive_s: float = 5.0
) -> uvicorn.Config:
    """uvicorn's settings for a listener inside the daemon (the till API's, the metrics'):
    the daemon's loop and logging, no lifespan, websockets, proxy headers or access log."""
    return uvicorn.Config(
        app,
        http="httptools",
        ws="none",
        loop="none",
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=int(keep_alive_s),
        timeout_graceful_shutdown=int(max(1, graceful_stop_s)),
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling (the daemon owns SIGTERM/SIGINT), reporting when it
    listens: the till API's listeners and the metrics listener."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon owns SIGTERM/SIGINT

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class ApiServer:
    """The till API on a Unix socket and optionally TCP, as tasks in the running loop."""

    def __init__(
        self,
        app: Starlette,
        socket_path: Path | str | None,
        tcp: str | None = None,
        *,
        allow_non_loopback: bool = False,
        graceful_stop_s: float = GRACEFUL_STOP_S,
        log_level: str = "warning",
    ) -> None:
        if socket_path is None and tcp is None:
            raise ConfigError("the till API needs api.socket or api.listen")
        self.app = app
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.tcp_address = check_listen_address(tcp, allow_non_loopback) if tcp else None
        self.allow_non_loopback = allow_non_loopback
        self.tcp_port: int | None = None
        """The bound TCP port (the real one when port 0 was asked for)."""
        self.graceful_stop_s = graceful_stop_s
        self.log_level = log_level
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket_inode: tuple[int, int] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def tcp_url(self) -> str | None:
        if self.tcp_address is None or self.tcp_port is None:
            return None
        host = self.tcp_address[0]
        return (
            f"http://[{host}]:{self.tcp_port}" if ":" in host else f"http://{host}:{self.tcp_port}"
        )

    def _warn_if_exposed(self) -> None:
        """api.allow_non_loopback without TLS: warn on every start, naming the risk."""
        if not self.allow_non_loopback or self.tcp_address is None:
            return
        host, port = self.tcp_address
        log.warning(
            "the till API listens on %s:%s without TLS (api.allow_non_loopback = true): the "
            "bearer token and sale data cross the network in cleartext, readable by anyone "
            "on the path, who could then use the token; keep api.listen on 127.0.0.1, or "
            "put a TLS proxy in front and listen on loopback only",
            host,
            port,
            extra={"listen": f"{host}:{port}", "tls": False, "risk": "cleartext"},
        )

    async def start(self) -> None:
        """Bind and serve; returns once listening. Raises ConfigError when it cannot bind."""
        if self.running:
            raise RuntimeError("the till API server is already running")
        self._warn_if_exposed()
        sockets: list[socket.socket] = []
        try:
            if self.socket_path is not None:
                sockets.append(bind_unix_socket(self.socket_path))
                info = self.socket_path.stat()
                self._socket_inode = (info.st_dev, info.st_ino)
            if self.tcp_address is not None:
                tcp = bind_tcp_socket(*self.tcp_address)
                sockets.append(tcp)
                self.tcp_port = int(tcp.getsockname()[1])
        except BaseException:
            for sock in sockets:
                sock.close()
            self._unlink_socket()
            raise
        server = EmbeddedServer(
            embedded_config(self.app, self.log_level, self.graceful_stop_s, KEEP_ALIVE_S)
        )
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=sockets), name="till-api")
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            for sock in sockets:
                sock.close()
            self._unlink_socket()
            error = self._task.exception()
            self._task = self._server = None
            raise RuntimeError(f"the till API did not start: {error!r}") from error

    async def stop(self) -> None:
        """End long-polls, stop accepting, let open requests finish, remove the socket file."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        begin_drain(self.app)
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), self.graceful_stop_s + 5.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._server = self._task = None
            self._unlink_socket()

    def _unlink_socket(self) -> None:
        """Remove the socket file only if it is still the one this server bound."""
        if self.socket_path is None or self._socket_inode is None:
            return
        with contextlib.suppress(OSError):
            info = self.socket_path.lstat()
            if (info.st_dev, info.st_ino) == self._socket_inode:
                self.socket_path.unlink()
        self._socket_inode = None
