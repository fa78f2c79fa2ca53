"""``posedge run``: the daemon's life from exec to exit, as systemd sees it.

1. take the state-dir lock (a second daemon is refused; a crash leaves no lock);
2. start the :class:`~posedge.agent.service.Agent` (journal, recovery, devices,
   sync) and the till API;
3. ``READY=1`` — only now — then supervise: ``WATCHDOG=1`` only while the event
   loop and every critical task make progress, ``STATUS=`` kept current;
4. SIGHUP reloads the configuration (an invalid file is rejected with a logged
   reason and an alert; the old one stays in force), SIGTERM/SIGINT stop:
   ``STOPPING=1``, no new sales, the sale in flight finished or parked, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .alerts import AlertBook
from .api.app import add_status_block, begin_drain, create_app
from .api.bearer import load_or_create_token
from .api.server import ApiServer, resolve_api_paths
from .config import Config, LoadedConfig
from .daemon import Notifier, StateDirLock, WatchdogSupervisor, install_signal_handlers
from .daemon.signals import ignore_dump_signal
from .diagnostics.routes import add_diagnostics_routes
from .diagnostics.service import DumpService
from .errors import ConfigError
from .health.routes import add_health_routes
from .logs import configure_logging
from .service import Agent

if TYPE_CHECKING:
    from .metrics import MetricsServer

log = logging.getLogger("posedge.run")

ALERT_CONFIG = "config_invalid"
STOP_TIMEOUT_S = 20.0
# Longest a healthy task may go without beating (each beats at least every few seconds).
HEARTBEAT_MAX_STALE_S = {"sales": 30.0, "devices": 45.0, "sync-upload": 120.0,
                         "sync-heartbeat": 30.0}  # fmt: skip
TEST_STALE_ENV = "POSEDGE_TEST_HEARTBEAT_STALE_S"
"""Test hook: ``name=seconds[,name=seconds]`` shortens those heartbeats' allowed staleness,
so a test that stalls one (``POSEDGE_TEST_STALL``) sees pings stop in seconds, not minutes."""


def heartbeat_max_stale(env: Mapping[str, str] | None = None) -> dict[str, float]:
    """:data:`HEARTBEAT_MAX_STALE_S` with the :data:`TEST_STALE_ENV` overrides applied."""
    limits = dict(HEARTBEAT_MAX_STALE_S)
    spec = (os.environ if env is None else env).get(TEST_STALE_ENV, "")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in limits or not seconds > 0:
            raise ConfigError(
                f"{TEST_STALE_ENV}: {item!r} is not NAME=SECONDS with NAME one of "
                f"{', '.join(limits)} and SECONDS > 0"
            )
        limits[name] = seconds
    return limits


@dataclass
class RunOptions:
    state_dir: Path
    simulate: bool = False
    api_listen: str | None = None
    announce: Callable[[dict[str, Any]], None] | None = None
    """Called once when ready with where the API is (the CLI prints it)."""
    card_delay_s: float = 0.3
    """Simulation only: seconds until the simulated reader presents a card."""
    backoffice_url: str | None = None
    """``--backoffice``: overrides ``sync.url`` (also across reloads); with ``simulate`` no
    embedded back office is started."""


class Daemon:
    def __init__(self, loaded: LoadedConfig, load: Callable[[], LoadedConfig], opts: RunOptions):
        self.loaded = loaded
        self.load = load
        self.opts = opts
        self.notifier = Notifier.from_env()
        self.agent: Agent | None = None
        self.api: ApiServer | None = None
        self.metrics: MetricsServer | None = None
        self.stop_event = asyncio.Event()
        self.supervisor = WatchdogSupervisor.from_env(
            notifier=self.notifier, status_provider=self.status_line
        )
        self.heartbeat_limits = heartbeat_max_stale()
        self.dumps = DumpService(lambda: self.agent, opts.state_dir)
        """SIGUSR1 and ``GET /v1/devices/dump`` (docs/diagnostics.md)."""
        self.started_s = time.monotonic()

    # ------------------------------------------------------------ status
    def status_line(self) -> str:
        return self.agent.status_line() if self.agent is not None else "starting"

    def daemon_status(self) -> dict[str, Any]:
        """``/v1/status``'s ``daemon`` block: who runs, since when, which back office, and
        whether the watchdog supervisor still ticks and finds every critical task making
        progress (``posedge doctor``'s ``daemon.watchdog`` check reads it)."""
        supervisor = self.supervisor
        verdict = supervisor.last_verdict
        now = time.monotonic()
        agent = self.agent
        return {
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_s, 3),
            "backoffice": agent.config.sync.url if agent is not None else None,
            "watchdog": {
                "systemd": supervisor.interval_s is not None,
                "tick_s": supervisor.tick_s,
                "last_check_age_s": round(now - verdict.at_s, 3) if verdict else None,
                "healthy": verdict.healthy if verdict else None,
                "reason": verdict.reason() if verdict else None,
                "stuck": list(verdict.stuck) if verdict else [],
                "loop_lag_s": round(verdict.loop_lag_s, 3) if verdict else None,
            },
        }

    # ------------------------------------------------------------ run
    async def run(self) -> int:
        supervise = asyncio.create_task(self.supervisor.run(), name="posedge-watchdog")
        handlers = install_signal_handlers(
            stop=self.stop_event.set,
            force_stop=self.force_stop,
            reload=self.reload,
            dump=self.dumps.request_file,
        )
        try:
            await self._start()
            self.notifier.ready(self.status_line())
            log.info("ready", extra={"status": self.status_line()})
            await self.stop_event.wait()
            self.notifier.stopping("stopping")
            log.info("stopping")
            await self._stop()
            return 0
        finally:
            handlers.remove()
            supervise.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervise
            self.notifier.close()

    async def _start(self) -> None:
        config = self.loaded.config
        opts = self.opts
        self.agent = Agent(
            config,
            opts.state_dir,
            simulate=opts.simulate,
            card_delay_s=opts.card_delay_s,
            backoffice_url=opts.backoffice_url,
        )
        # Before the agent starts: a metrics listener that cannot bind is a configuration
        # error (exit 2) before the journal is opened. Imported here: only the daemon needs it.
        from .metrics import start_metrics

        self.metrics = await start_metrics(self.agent, config.metrics)
        await self.agent.start()
        self._register_heartbeats()
        engine = self.agent.engine
        assert engine is not None
        config = self.agent.config
        token = load_or_create_token(config, opts.state_dir)
        app = create_app(engine, token=token, currencies=config.sales.currencies)
        add_diagnostics_routes(app, self.dumps)
        add_status_block(app, "daemon", self.daemon_status)
        add_health_routes(app, self.agent)
        if opts.simulate:
            from .simroutes import add_simulator_routes

            add_simulator_routes(app, self.agent)
        paths = resolve_api_paths(config, opts.state_dir)
        self.api = ApiServer(
            app,
            paths.socket,
            opts.api_listen or config.api.listen,
            allow_non_loopback=config.api.allow_non_loopback,
        )
        await self.api.start()
        if opts.announce is not None:
            opts.announce(
                {
                    "socket": str(paths.socket),
                    "tcp": self.api.tcp_url,
                    "token_file": str(paths.token_file),
                    "state_dir": str(opts.state_dir),
                    "backoffice": config.sync.url,
                    "simulate": opts.simulate,
                    "metrics": self.metrics.url if self.metrics is not None else None,
                }
            )

    def _register_heartbeats(self) -> None:
        agent = self.agent
        assert agent is not None and agent.engine is not None
        register = self.supervisor.register
        limits = self.heartbeat_limits
        agent.engine.beat = register("sales", limits["sales"]).beat
        agent.device_beat = register("devices", limits["devices"]).beat
        if agent.runner is not None:
            agent.runner.upload_beat = register("sync-upload", limits["sync-upload"]).beat
            agent.runner.heartbeat_beat = register("sync-heartbeat", limits["sync-heartbeat"]).beat

    async def _stop(self) -> None:
        if self.api is not None:
            begin_drain(self.api.app)
            await self.api.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.dumps.close()
        if self.agent is not None:
            await self.agent.stop(STOP_TIMEOUT_S)

    def force_stop(self) -> None:
        """A second SIGTERM: stop waiting for the sale in flight (it is journaled; the next
        start's recovery finishes it)."""
        log.warning("second stop signal: not waiting for the sale in flight")
        if self.agent is not None and self.agent.engine is not None:
            self.agent.engine.force_stop()

    # ------------------------------------------------------------ reload
    async def reload(self) -> None:
        """SIGHUP: load the configuration again; keep the old one if the new is invalid."""
        self.notifier.reloading("reloading configuration")
        agent = self.agent
        try:
            try:
                loaded = self.load()
            except ConfigError as exc:
                log.error("configuration reload rejected; the old configuration stays",
                          extra={"error": str(exc)})  # fmt: skip
                if agent is not None and agent.journal is not None:
                    AlertBook(agent.journal).raise_(ALERT_CONFIG, str(exc)[:500])
                return
            if agent is not None:
                changed = agent.apply_config(loaded.config)
                if agent.journal is not None:
                    AlertBook(agent.journal).clear(ALERT_CONFIG)
                log.info("configuration reloaded", extra={"changed": changed})
                configure_logging(loaded.config.log.level)
            self.loaded = loaded
        finally:
            self.notifier.ready(self.status_line())


def run_daemon(loaded: LoadedConfig, load: Callable[[], LoadedConfig], opts: RunOptions) -> int:
    """Run until stopped; the exit code."""
    ignore_dump_signal()  # SIGUSR1 must not kill us before its handler is installed
    with StateDirLock.for_state_dir(opts.state_dir):
        return asyncio.run(Daemon(loaded, load, opts).run())


__all__ = ["Config", "Daemon", "RunOptions", "run_daemon"]
