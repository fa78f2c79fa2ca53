"""The running agent: one asyncio process composing journal, devices, sales, sync, API.

Start order (DESIGN §4 write-ahead, issue 6 readiness): open the journal
(integrity-checked) → journal ``agent.started`` → open devices → recover
every sale left mid-flight → start sync and heartbeats → listen on the API.
Only then is the agent ready. Stop order is the reverse: the API stops
taking requests, the sale in flight is finished or parked (journaled), sync
flushes what it can, devices close, ``agent.stopped`` is journaled.

``simulate=True`` swaps in the simulated printer and reader (in-process
``sim://``) and an embedded reference back office whose database lives in
the state directory — the whole product on one machine, for demos and tests.
With an external back office (``backoffice_url``, i.e. ``run --backoffice``,
or a ``sync.url`` set in the configuration) the simulated devices talk to that
one instead and no embedded back office is started. The simulated world is a
plug-in the simulator provides (:mod:`posedge.agent.simulation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from posedge.drivers.cardreader import CardReader
from posedge.drivers.errors import DeviceError
from posedge.drivers.printer import ReceiptPrinter

from .alerts import AlertBook
from .close.daemon import CloseScheduler, DaemonCloses
from .config import Config, parse_duration
from .devices import open_printer, open_reader
from .enrolment import Enrolment, apply_enrolment, check_enrolment, read_enrolment
from .errors import ConfigError
from .health.monitor import HealthMonitor
from .journal import Journal, JournalError
from .sales.authorizer import Authorizer
from .sales.engine import SaleEngine
from .simulation import SimulatedWorld, start_simulated_world
from .sync import BackofficeClient, SyncService, terminal_id
from .sync.client import agent_version, read_token
from .sync.runner import SyncRunner

log = logging.getLogger("posedge.agent")

RETENTION_EVERY_S = 3600.0


def with_backoffice(config: Config, backoffice_url: str) -> Config:
    """The configuration with ``sync.url`` replaced (``run --backoffice``)."""
    return config.model_copy(
        update={"sync": config.sync.model_copy(update={"url": backoffice_url})}
    )


def simulated_config(config: Config, backoffice_url: str) -> Config:
    """The configuration with devices and back office pointed at the simulation."""
    return config.model_copy(
        update={
            "printer": config.printer.model_copy(update={"url": "sim://printer"}),
            "reader": config.reader.model_copy(update={"url": "sim://reader",
                                                       "protocol": "magtek"}),
            "sync": config.sync.model_copy(update={"url": backoffice_url}),
        }
    )  # fmt: skip


class Agent:
    """Everything ``posedge run`` runs. Use :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        *,
        simulate: bool = False,
        card_delay_s: float = 0.3,
        backoffice_url: str | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.simulate = simulate
        self.backoffice_url = backoffice_url
        """The back office this agent talks to whatever the configuration says (``run
        --backoffice``). Simulating, it is fixed at start: this, else a ``sync.url`` from the
        configuration, else the embedded back office's address. A reload keeps it."""
        self.card_delay_s = card_delay_s
        """Simulation only: how soon the virtual reader presents a card once armed."""
        self.world: SimulatedWorld | None = None
        self.journal: Journal | None = None
        self.printer: ReceiptPrinter | None = None
        self.reader: CardReader | None = None
        self.engine: SaleEngine | None = None
        self.sync: SyncService | None = None
        self.runner: SyncRunner | None = None
        self.client: BackofficeClient | None = None
        self.started_at = 0.0
        self.health: HealthMonitor | None = None
        """Device polling, the health checks and their alerts (None before :meth:`start`)."""
        self._maintenance: asyncio.Task[None] | None = None
        self.closes: DaemonCloses | None = None
        self.close_schedule: CloseScheduler | None = None
        self.device_beat: Callable[[], None] = lambda: None
        self.enrolment: Enrolment | None = None
        """``<state dir>/enrolment.json``, read once at start: the terminal id, back office
        and token file where the configuration leaves them unset (re-enrolling needs a
        restart; ``posedge enroll`` refuses while the daemon runs)."""

    # ------------------------------------------------------------ start
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.enrolment = read_enrolment(self.state_dir)
        check_enrolment(self.config, self.enrolment)
        self.config = apply_enrolment(self.config, self.enrolment)
        if self.simulate:
            external = self.backoffice_url or self.config.sync.url
            self.world = await asyncio.to_thread(
                start_simulated_world,
                self.state_dir,
                card_delay_s=self.card_delay_s,
                embedded_backoffice=external is None,
            )
            if external is None:
                assert self.world.backoffice is not None
                external = str(self.world.backoffice.url)
            self.backoffice_url = external
        self.config = self._pinned(self.config)
        config = self.config
        self.journal = Journal.open(self.state_dir, busy_timeout_s=config.journal.busy_timeout_s)
        self.journal.append(
            "agent.started",
            {"version": agent_version(), "pid": os.getpid(), "simulate": self.simulate},
        )
        self.printer, self.reader = self._open_devices()
        authorizer = None
        if config.sync.url:
            self.client = BackofficeClient(
                config.sync.url,
                terminal_id(config.terminal.id, self.state_dir),
                config.sync,
                token=read_token(config.sync.token_file),
            )
            authorizer = Authorizer(self.client, parse_duration(config.sales.authorization_timeout))
            self.sync = SyncService(self.journal, self.client, config.sync,
                                    state_dir=self.state_dir)  # fmt: skip
        self.engine = SaleEngine(
            journal=self.journal,
            config=config,
            state_dir=self.state_dir,
            reader=self.reader,
            printer=self.printer,
            authorizer=authorizer,
            alerts=AlertBook(self.journal),
        )
        await self.engine.start()
        self._start_closes()
        if self.sync is not None:
            self.runner = SyncRunner(self.sync, heartbeat_extra=self.heartbeat_extra)
            self.runner.start()
        self.engine.health_status = lambda: self.health.status_block() if self.health else {}
        self.engine.reader_retry_after_s = max(1, round(config.health.number("poll_interval")))
        self.health = HealthMonitor(self)
        self.health.beat = lambda: self.device_beat()
        await self.health.start()  # polls the devices first: READY's STATUS tells their state
        self._maintenance = asyncio.create_task(self._retention(), name="posedge-retention")

    def _start_closes(self) -> None:
        """The end-of-day close (docs/close.md): the till API's /v1/close and ``[close] at``
        (a missed schedule is closed by the scheduler's first turn, now)."""
        from .close.closer import Closer, calendar_of

        assert self.journal is not None and self.engine is not None
        closer = Closer(
            self.journal,
            lambda: self.config,
            terminal=terminal_id(self.config.terminal.id, self.state_dir),
            printer=lambda: self.printer,
        )
        self.closes = DaemonCloses(closer, self.engine.printer_lock)
        self.engine.closes = self.closes  # where /v1/close finds it
        self.close_schedule = CloseScheduler(self.closes, lambda: calendar_of(self.config))
        self.close_schedule.start()

    def _open_devices(self) -> tuple[ReceiptPrinter | None, CardReader | None]:
        config = self.config
        printer = reader = None
        if config.printer.url:
            try:
                printer = open_printer(config, self.state_dir, reconnect=True)
            except DeviceError as exc:
                log.error("printer unavailable at start", extra={"error": str(exc)})
        if config.reader.url:
            try:
                reader = open_reader(config, self.state_dir, reconnect=True)
            except DeviceError as exc:
                log.error("card reader unavailable at start", extra={"error": str(exc)})
        return printer, reader

    # ------------------------------------------------------------ health
    async def _retention(self) -> None:
        """Hourly: replace the acknowledged prefix older than journal.retention by a checkpoint."""
        while True:
            journal = self.journal
            if journal is not None:
                try:
                    checkpoint = await asyncio.to_thread(
                        journal.prune, self.config.journal.retention_s
                    )
                except JournalError as exc:
                    log.warning("journal retention failed", extra={"error": str(exc)})
                else:
                    if checkpoint is not None:
                        log.info("journal pruned", extra={"through_seq": checkpoint.seq})
            await asyncio.sleep(RETENTION_EVERY_S)

    async def poll_devices_once(self) -> None:
        """Poll printer and reader now (the health monitor does it on its schedule)."""
        if self.health is not None:
            await self.health.poll_devices_once()

    def heartbeat_extra(self) -> dict[str, Any]:
        engine = self.engine
        if engine is None:
            return {}
        extra: dict[str, Any] = {
            "devices": engine.device_status,
            "offline_exposure": engine.exposure.as_dict(),
            "in_doubt_count": len(engine.reversals),
        }
        if self.health is not None:
            extra["health"] = self.health.status_block()
        return extra

    def apply_config(self, new: Config) -> list[str]:
        """Apply a reloaded configuration; journal what changed. Returns changed sections.

        Sales, offline limits, logging and health thresholds apply at once; device, sync, API and
        journal settings need a restart (journaled as ``restart_required``).
        """
        old = self.config
        new = self._pinned(new)
        changed = [
            name for name in type(new).model_fields if getattr(old, name) != getattr(new, name)
        ]
        live = {"sales", "offline", "log", "health", "close"}  # the monitor reads [health] each run
        restart = [name for name in changed if name not in live]
        if self.engine is not None:
            self.engine.apply_config(new)
        self.config = new
        if self.journal is not None and changed:
            self.journal.append("config.changed", {"changed": changed, "restart_required": restart})
        self._reload_token(new)
        return changed

    def _reload_token(self, config: Config) -> None:
        """Read the bearer token again (a fixed or rotated token needs no restart) and retry
        at once what the back office refused."""
        if self.client is None:
            return
        try:
            token = read_token(config.sync.token_file)
        except ConfigError as exc:
            log.error("token not reloaded; the old one stays", extra={"error": str(exc)})
            return
        self.client.set_token(token)
        if self.sync is not None:
            self.sync.retry_now()
        if self.engine is not None:
            self.engine.reversals.wake()
            self.engine.forwards.wake()

    def _pinned(self, config: Config) -> Config:
        """``config`` with what the command line and the enrolment fixed: simulated devices,
        the back office; terminal id, back office and token file of an enrolled terminal."""
        config = apply_enrolment(config, self.enrolment)
        url = self.backoffice_url
        if self.simulate and url is not None:
            return simulated_config(config, url)
        return config if url is None else with_backoffice(config, url)

    def status_line(self) -> str:
        """One human line for systemd's STATUS=."""
        engine = self.engine
        if engine is None or self.journal is None:
            return "starting"
        parts = ["ready" if engine.accepting else "stopping"]
        for name in ("printer", "reader"):
            state = engine.device_status.get(name, {}).get("state", "unknown")
            parts.append(f"{name} {state}")
        parts.append(f"backlog {self.journal.backlog()[0]}")
        parts.append(f"in-doubt {len(engine.reversals)}")
        return " · ".join(parts)

    # ------------------------------------------------------------ stop
    async def stop(self, timeout_s: float = 20.0) -> None:
        if self.health is not None:
            await self.health.stop()
        if self.close_schedule is not None:
            await self.close_schedule.stop()
        for task in (self._maintenance,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.engine is not None:
            await self.engine.stop(timeout_s=timeout_s / 2)
        if self.runner is not None:
            await asyncio.to_thread(self.runner.stop, 2.0)
        if self.client is not None:
            self.client.close()
        for device in (self.printer, self.reader):
            if device is not None:
                with contextlib.suppress(DeviceError):
                    device.close()
        if self.journal is not None:
            self.journal.append("agent.stopped", {"pid": os.getpid()})
            self.journal.close()
        if self.world is not None:
            await asyncio.to_thread(self.world.close)
