"""Running the back office on uvicorn: foreground (CLI) or a background thread.

:class:`BackofficeServer` is a context manager for tests and demos::

    with BackofficeServer("bo.sqlite3") as bo:      # port 0: any free port
        httpx.get(f"{bo.url}/healthz")
        bo.restart()                                 # same port, same database

``db`` is a SQLite path or a ``postgresql://`` URL (:mod:`.db`); on PostgreSQL
several servers may share one database (replicas).

``wrap`` puts an outer ASGI layer around the app (the simulator's fault
injection, :mod:`posedge.simulator.backoffice`).

This module must never log tokens or request bodies (uvicorn's access log
records method, path and status only).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .app import BackofficeConfig, create_app
from .db import DEFAULT_POOL_SIZE, parse_target
from .store import BackofficeStore

if TYPE_CHECKING:
    from .alerting.config import AlertConfig
    from .alerting.loop import AlertLoop
    from .alerting.process import AlertProcess

log = logging.getLogger("posedge.backoffice")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

OPEN_MODE_WARNING = (
    "OPEN MODE: no --tokens file, so any terminal is accepted without a token and the "
    "admin API (/admin/policy) is on. Use only on loopback for tests and demos."
)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (with proto 0
    # it does not, and every keep-alive reply stalls ~40 ms on delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn_config(app: object, log_level: str, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http="httptools",
        loop="asyncio",
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        log_config=None,
        timeout_keep_alive=30,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency on Linux), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """The outermost layer: a client that goes away before its request is answered (a
    terminal's timeout, a restarted agent, Ctrl-C) is routine, logged at info — not an
    internal error with a traceback from uvicorn. There is nobody left to answer."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            log.info(
                "client disconnected before the reply",
                extra={"method": scope.get("method"), "path": scope.get("path")},
            )

    return guarded


class BackofficeServer:
    """The back office in a background thread, restartable on the same port and database."""

    def __init__(
        self,
        db: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        config: BackofficeConfig | None = None,
        log_level: str = "warning",
        store: BackofficeStore | None = None,
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.db = parse_target(db)
        self.pool_size = pool_size
        self.wrap = wrap
        self.host = host
        self.port = port
        self.config = config or BackofficeConfig()
        self.log_level = log_level
        self._own_store = store is None
        self.store = store
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self._alerts: AlertLoop | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackofficeServer:
        if self.running:
            raise RuntimeError(f"the back office is already running at {self.url}")
        if self.store is None:
            self.store = BackofficeStore(self.db, pool_size=self.pool_size, serving=True)
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        app = create_app(self.store, self.config)
        if self.wrap is not None:
            app = self.wrap(app)
        app = quiet_disconnects(app)
        self._server = uvicorn.Server(_uvicorn_config(app, self.log_level, access_log=False))
        # uvicorn installs signal handlers only in the main thread: none here.
        self._error = None
        self._thread = threading.Thread(
            target=self._run, name=f"backoffice:{self.port}", daemon=True
        )
        self._thread.start()
        self._alerts = start_alert_loop(self.store, self.config)
        started = threading.Event()

        def wait_started() -> None:
            while self._server is not None and not self._server.started:
                if self._thread is None or not self._thread.is_alive():
                    break
                started.wait(0.005)

        wait_started()
        if self._server is None or not self._server.started:
            error = self._error
            self.stop()
            raise RuntimeError(f"the back office did not start on {self.url}: {error!r}")
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # pragma: no cover - reported by start()
            self._error = exc

    def stop(self) -> None:
        """Stop serving; open connections are closed. The database stays open for restart."""
        if self._alerts is not None:
            self._alerts.stop()
            self._alerts = None
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():  # pragma: no cover
                raise RuntimeError(f"the back office at {self.url} did not stop in time")
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same database (and wrapper)."""
        self.stop()
        if self._own_store and self.store is not None:
            self.store.close()
            self.store = None
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_store and self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> BackofficeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_alert_loop(store: BackofficeStore, config: BackofficeConfig) -> AlertLoop | None:
    """The alert evaluation loop (backoffice/alerting) when ``alert_interval_s`` > 0."""
    if config.alert_interval_s <= 0:
        return None
    from .alerting.loop import AlertLoop

    return AlertLoop(store, _alert_config(config)).start()


def _alert_config(config: BackofficeConfig) -> AlertConfig:
    from .alerting.config import AlertConfig
    from .silence import SilenceConfig

    silence = SilenceConfig(calendars=dict(config.calendars))
    return AlertConfig(interval_s=config.alert_interval_s, silence=silence)


def start_alert_process(db: Path | str, config: BackofficeConfig) -> AlertProcess | None:
    """``serve``'s alert loop, in a child process on the same database
    (:mod:`posedge.backoffice.alerting.process`) when ``alert_interval_s`` > 0."""
    if config.alert_interval_s <= 0:
        return None
    from .alerting.process import AlertProcess

    return AlertProcess(db, _alert_config(config)).start()


def reload_calendars(alerts: AlertLoop | AlertProcess, path: Path) -> bool:
    """SIGHUP: read the calendars file again; the next round uses it. A bad file is
    logged (file, store, key) and the calendars in use are kept. True when reloaded."""
    from dataclasses import replace

    from .silence import CalendarError, load_calendars

    try:
        calendars = load_calendars(path)
    except CalendarError as exc:
        log.error("calendars not reloaded, the previous ones stay in use: %s", exc)
        return False
    config = alerts.config
    alerts.reload(replace(config, silence=replace(config.silence, calendars=calendars)))
    # A warning, so it shows at the default level: an operator's SIGHUP wants an answer.
    log.warning("calendars reloaded", extra={"file": str(path), "stores": len(calendars)})
    return True


def serve_forever(
    db: Path | str,
    host: str,
    port: int,
    config: BackofficeConfig,
    log_level: str = "info",
    announce: bool = True,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> None:
    """Run in the foreground until SIGINT/SIGTERM (uvicorn installs the handlers)."""
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    try:
        store = BackofficeStore(db, pool_size=pool_size, serving=True)
    except BaseException:
        sock.close()
        raise
    with store:
        app = create_app(store, config)
        if wrap is not None:
            app = wrap(app)
        app = quiet_disconnects(app)
        server = uvicorn.Server(_uvicorn_config(app, log_level, access_log=True))
        if config.open_mode:
            log.warning(OPEN_MODE_WARNING)
            print(f"WARNING: {OPEN_MODE_WARNING}", file=sys.stderr, flush=True)
        if announce:
            shown = f"[{host}]" if ":" in host else host
            mode = (
                "open mode" if config.open_mode else f"{len(config.tokens or {})} terminal tokens"
            )
            print(
                f"posedge back office listening on http://{shown}:{bound} "
                f"(db {store.display}, {mode}, "
                f"admin API {'on' if config.admin_enabled else 'off'})",
                flush=True,
            )
        # uvicorn captures SIGINT/SIGTERM while serving, then re-raises them to the handlers
        # that were installed before: make those no-ops so a stop request exits 0.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: None)
        alerts = start_alert_process(db, config)
        hup = config.calendars_file
        main = threading.current_thread() is threading.main_thread()
        if alerts is not None and hup is not None and main and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reload_calendars(alerts, hup))
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(server.serve(sockets=[sock]))
        finally:
            if alerts is not None:
                alerts.stop()
            sock.close()
