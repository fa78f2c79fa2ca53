"""Device dumps from the running daemon: SIGUSR1 writes a file, the till API serves one.

The daemon's printer and reader are queried through its own open device objects, under
the same rules the sale engine follows: the printer only while holding the engine's
printer lock (never in the middle of a receipt; after :data:`PRINTER_WAIT_S` the dump
says the printer was busy instead), the framed reader not at all while a sale is
reading a card (its state is then ``busy``). Device I/O runs in a worker thread, never
on the event loop.

SIGUSR1 → :meth:`DumpService.request_file`: a dump is written to
``<state dir>/dumps/devices-<UTC timestamp>.json`` and its path logged. Signals that
arrive while one is being written are coalesced into exactly one more dump. A failing
dump is logged, never raised: a diagnostics request must not stop a selling terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posedge.drivers.errors import DeviceError

from .dump import (
    DEVICE_KINDS,
    build_dump,
    journal_device_errors,
    not_configured,
    now_iso,
    probe_printer,
    probe_reader,
    unreachable,
    unreachable_devices,
)
from .files import KEEP_DUMPS, write_dump

if TYPE_CHECKING:
    from ..service import Agent

log = logging.getLogger("posedge.diagnostics")

PRINTER_WAIT_S = 10.0
"""How long a dump waits for a receipt in progress to finish before reporting 'busy'."""
READER_WAIT_S = 5.0


class DumpService:
    """Collects dumps from the agent ``agent()`` returns (None while it starts)."""

    def __init__(
        self, agent: Callable[[], Agent | None], state_dir: Path, *, keep: int = KEEP_DUMPS
    ) -> None:
        self._agent = agent
        self.state_dir = state_dir
        self.keep = keep
        self._lock = asyncio.Lock()
        self._queued = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.written: list[Path] = []
        """Files written by this daemon, oldest first (tests and logs)."""

    # ---- SIGUSR1 ---------------------------------------------------------------
    def request_file(self) -> None:
        """Write a dump file soon (on the running loop); coalesces bursts of requests."""
        if self._closed:
            log.info("SIGUSR1 ignored: stopping (devices are being closed)")
            return
        if self._queued:
            log.info("SIGUSR1: a device dump is already queued")
            return
        self._queued = True
        log.info("SIGUSR1 received: writing a device dump")
        task = asyncio.get_running_loop().create_task(self._write_file(), name="posedge-dump")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_file(self) -> None:
        async with self._lock:
            self._queued = False
            try:
                doc = await self.collect("signal")
                path = await asyncio.to_thread(write_dump, self.state_dir, doc, keep=self.keep)
            except Exception as exc:
                log.exception("device dump failed", extra={"error": str(exc)[:300]})
                return
            self.written.append(path)
            log.info(
                "device dump written to %s",
                path,
                extra={"path": str(path), "unreachable": unreachable_devices(doc)},
            )

    async def close(self) -> None:
        """Let a dump in progress finish (they are short); later requests are refused."""
        self._closed = True
        tasks = list(self._tasks)
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=PRINTER_WAIT_S + READER_WAIT_S)
        for task in tasks:
            task.cancel()

    # ---- collecting ---------------------------------------------------------------
    async def collect(self, reason: str) -> dict[str, Any]:
        """The dump document, made now from the daemon's open devices."""
        from ..sync.client import agent_version

        async with _maybe(self._lock, reason):
            agent = self._agent()
            if agent is None or agent.engine is None:
                return build_dump(self._starting(agent), reason=reason, source="daemon",
                                  version=agent_version())  # fmt: skip
            devices = {"printer": await self._printer(agent),
                       "reader": await self._reader(agent)}  # fmt: skip
            journal_errors = None
            if agent.journal is not None:
                journal_errors = await asyncio.to_thread(journal_device_errors, agent.journal)
            uptime = asyncio.get_running_loop().time() - agent.started_at
            return build_dump(devices, reason=reason, source="daemon", version=agent_version(),
                              uptime_s=uptime, journal_errors=journal_errors)  # fmt: skip

    def _starting(self, agent: Agent | None) -> dict[str, dict[str, Any]]:
        out = {}
        for kind in DEVICE_KINDS:
            entry = not_configured(kind)
            url = getattr(agent.config, kind).url if agent is not None else None
            if url:
                entry.update(configured=True, errors=[_note("Starting",
                             "the daemon is starting: devices are not open yet")])  # fmt: skip
            out[kind] = entry
        return out

    async def _printer(self, agent: Agent) -> dict[str, Any]:
        url = agent.config.printer.url
        if not url:
            return not_configured("printer")
        printer, engine = agent.printer, agent.engine
        if printer is None or engine is None:
            return unreachable("printer", url, DeviceError(
                "not open: the daemon could not open it at start (see its log)"))  # fmt: skip
        try:
            await asyncio.wait_for(engine.printer_lock.acquire(), PRINTER_WAIT_S)
        except TimeoutError:
            entry = unreachable("printer", url, DeviceError("busy printing; not queried"))
            entry.update(reachable=None, statistics=printer.stats.snapshot())
            return entry
        try:
            return await asyncio.to_thread(probe_printer, printer, url)
        finally:
            engine.printer_lock.release()

    async def _reader(self, agent: Agent) -> dict[str, Any]:
        url = agent.config.reader.url
        if not url:
            return not_configured("reader")
        reader, engine = agent.reader, agent.engine
        if reader is None or engine is None:
            return unreachable("reader", url, DeviceError(
                "not open: the daemon could not open it at start (see its log)"))  # fmt: skip
        # A framed reader's status query would wait for the swipe of the sale in progress.
        busy = reader.protocol == "framed" and engine.reader_in_use
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(probe_reader, reader, url, busy=busy), READER_WAIT_S
            )
        except TimeoutError:
            entry = probe_reader(reader, url, busy=True)
            entry["errors"] = [_note("Busy", "the reader did not become free in time")]
            return entry


def _note(error: str, message: str) -> dict[str, Any]:
    return {"at": now_iso(), "source": "daemon", "error": error, "message": message}


@contextlib.asynccontextmanager
async def _maybe(lock: asyncio.Lock, reason: str) -> Any:
    """Serialise API dumps with each other; a file dump already holds the lock."""
    if reason == "signal":
        yield
        return
    async with lock:
        yield
