"""The daemon's health scheduler: device polling, checks on their intervals, alerts.

Every ``health.poll_interval`` it polls the printer (under the engine's printer lock, so
never in the middle of a receipt) and the reader, journals ``device.status`` when it
changed, tells the engine whether the reader works (no working reader: sales answer 503
``not-accepting``), then runs the device checks. Every ``health.check_interval`` it runs
the other checks. Checks run in a worker thread, never on the event loop. Each result
feeds the alert lifecycle (:mod:`.lifecycle`); ``firing``/``flapping`` transitions are
journaled as ``alert.firing``, the end of one as ``alert.resolved``, with the check's
value and summary (never card data).

The sale engine's event-driven alerts (``alert.raised``/``alert.cleared``,
:mod:`posedge.agent.alerts`) stay as they are, alongside: they are per-episode business
alerts, these are condition alerts with a lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from posedge.drivers.cardreader import ReaderStatus
from posedge.drivers.errors import DeviceError
from posedge.drivers.escpos.status import PrinterStatus

from .checks import DEVICE_CHECKS, REGISTRY, alert_rule
from .devicechecks import PRINTER_STATUS, READER_STATUS, poll_printer, poll_reader
from .lifecycle import AlertLifecycle, Transition, TransitionKind
from .model import CheckRegistry, CheckResult, HealthContext, Status

log = logging.getLogger("posedge.health")

RUN_NOW_POLL_TIMEOUT_S = 30.0
BEAT_EVERY_S = 5.0
RUN_STALL_S = 600.0
"""A check run (the daily verify of a large journal included) may take this long."""
_SEVERITY = {Status.WARN: "warning", Status.FAIL: "critical"}


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class HealthMonitor:
    """Owns device polling and the checks of one running agent.

    ``agent`` is the :class:`~posedge.agent.service.Agent` (its journal, devices, engine,
    sync service and configuration are read at each run, so a reload is seen).
    """

    def __init__(
        self,
        agent: Any,
        *,
        registry: CheckRegistry = REGISTRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.registry = registry
        self.clock = clock
        self.lifecycle = AlertLifecycle()
        self._results: dict[str, CheckResult] = {}
        self._lock = threading.Lock()
        """Guards results and the lifecycle (runs happen in worker threads)."""
        self._run_lock = threading.Lock()
        """One run of checks at a time."""
        self._snapshot: dict[str, Any] = {}
        """The last device poll: ``printer_status`` / ``reader_status`` for the checks."""
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_slow = float("-inf")
        self.beat: Callable[[], None] = lambda: None
        """Called on every turn of the loop (a watchdog heartbeat)."""
        self.runs = 0

    # ------------------------------------------------------------ configuration
    @property
    def config(self) -> Any:
        return self.agent.config

    @property
    def enabled(self) -> bool:
        return bool(self.config.health.enabled)

    # ------------------------------------------------------------ the contract
    def results(self) -> list[CheckResult]:
        """The latest result of every check that has run, in registration order."""
        with self._lock:
            return [self._results[n] for n in self.registry.names() if n in self._results]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending, firing and flapping alerts: name, state, since (ISO UTC), value,
        summary, labels."""
        with self._lock:
            alerts = self.lifecycle.alerts()
        return [
            {
                "name": a.key,
                "state": a.state.value,
                "since": iso_utc(a.since),
                "value": a.value,
                "summary": a.summary[:500],
                "labels": dict(a.labels),
            }
            for a in alerts
        ]

    def run_now(self, names: list[str] | None = None) -> list[CheckResult]:
        """Poll the devices and run ``names`` (all when None) now; thread-safe.

        Called from a worker thread, the device poll runs on the agent's event loop (it
        takes the printer lock there); called on the event loop itself, the last poll's
        device status is used. Unknown names raise KeyError naming the known ones.
        """
        for name in names or []:
            self.registry.get(name)
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            future = asyncio.run_coroutine_threadsafe(self.poll_devices_once(), loop)
            with contextlib.suppress(TimeoutError):
                future.result(RUN_NOW_POLL_TIMEOUT_S)
        return self._run(names)

    def status_block(self) -> dict[str, Any]:
        """``/v1/status``'s and the heartbeat's ``health``: checks and alerts (no I/O)."""
        return {
            "enabled": self.enabled,
            "checks": [
                {
                    "name": r.name,
                    "status": r.status.value,
                    "summary": r.summary[:500],
                    "value": r.value,
                    "fix": r.fix,
                }
                for r in self.results()
            ],
            "alerts": self.alerts(),
        }

    # ------------------------------------------------------------ running
    async def start(self) -> None:
        """Poll the devices once (so READY already tells their state), then keep going."""
        self._loop = asyncio.get_running_loop()
        await self.poll_devices_once()
        self._task = asyncio.create_task(self._run_forever(), name="posedge-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            self.beat()
            try:
                if not first:
                    await self.poll_devices_once()
                first = False
                if self.enabled:
                    now = loop.time()
                    names: list[str] | None = list(DEVICE_CHECKS)
                    if now - self._last_slow >= self.config.health.number("check_interval"):
                        self._last_slow = now
                        names = None
                    await self._beating(asyncio.to_thread(self._run, names))
            except Exception:  # a bug must not end device polling and health checks
                log.exception("health monitor turn failed; next turn as scheduled")
            await self._beating(asyncio.sleep(self.config.health.number("poll_interval")))

    async def _beating(self, work: Awaitable[Any]) -> Any:
        """Await ``work``, beating every :data:`BEAT_EVERY_S` so a long poll interval or the
        daily verify is not taken for a hang; a run stuck beyond :data:`RUN_STALL_S` stops
        the beats (the watchdog then restarts the daemon)."""
        task = asyncio.ensure_future(work)
        waited = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=BEAT_EVERY_S)
                if done:
                    return task.result()
                waited += BEAT_EVERY_S
                if waited < RUN_STALL_S:
                    self.beat()
        finally:
            if not task.done():
                task.cancel()

    def _run(self, names: list[str] | None) -> list[CheckResult]:
        with self._run_lock:
            agent = self.agent
            ctx = HealthContext(
                config=agent.config,
                state_dir=Path(agent.state_dir),
                now=self.clock(),
                journal=agent.journal,
                printer=agent.printer,
                reader=agent.reader,
                engine=agent.engine,
                sync=agent.sync,
                extra=dict(self._snapshot),
            )
            results = self.registry.run(ctx, names)
            for transition in self._feed(results, ctx.now):
                self._journal(transition)  # in order: under the run lock
            self.runs += 1
        return results

    def _feed(self, results: list[CheckResult], now: float) -> list[Transition]:
        health = self.config.health
        out: list[Transition] = []
        with self._lock:
            for result in results:
                self._results[result.name] = result
                rule = alert_rule(result.name, health)
                labels = {"check": result.name}
                if result.status in _SEVERITY:
                    labels["severity"] = _SEVERITY[result.status]
                kwargs: dict[str, Any] = {"value": result.value, "labels": labels,
                                          "summary": result.summary, "rule": rule}  # fmt: skip
                if result.status is Status.SKIP:
                    kwargs["bad"] = False
                elif rule.threshold is None or result.value is None:
                    kwargs["bad"] = result.status in (Status.WARN, Status.FAIL)
                out += self.lifecycle.observe(result.name, now, **kwargs)
        return out

    def _journal(self, transition: Transition) -> None:
        journal = self.agent.journal
        if journal is None:
            return
        payload: dict[str, Any] = {
            "name": transition.key,
            "state": transition.state.value,
            "value": transition.value,
            "summary": transition.summary[:300],
            "labels": dict(transition.labels),
            "since": iso_utc(transition.since),
        }
        if transition.kind in (TransitionKind.FIRING, TransitionKind.FLAPPING):
            type_ = "alert.firing"
        elif transition.kind is TransitionKind.RESOLVED:
            type_ = "alert.resolved"
            payload["previous"] = transition.previous.value
            payload["duration_s"] = round(max(0.0, transition.at - transition.since), 3)
        else:
            return  # pending and cancelled are not alerts yet
        try:
            journal.append(type_, payload)
        except Exception as exc:  # the journal's own alerting covers a failing journal
            log.error("could not journal an alert", extra={"alert": transition.key,
                                                           "error": str(exc)[:200]})  # fmt: skip
        else:
            level = logging.WARNING if type_ == "alert.firing" else logging.INFO
            log.log(level, type_, extra={"alert": transition.key, "value": transition.value,
                                         "state": transition.state.value})  # fmt: skip

    # ------------------------------------------------------------ devices
    async def poll_devices_once(self) -> dict[str, Any]:
        """Poll printer and reader; journal ``device.status`` when it changed; tell the
        engine whether sales can be taken. Returns the device status document."""
        agent = self.agent
        engine = agent.engine
        snapshot: dict[str, Any] = {}
        status: dict[str, Any] = {}
        printer = agent.printer
        if printer is not None:
            if engine is not None:
                async with engine.printer_lock:
                    polled = await asyncio.to_thread(poll_printer, printer)
            else:
                polled = await asyncio.to_thread(poll_printer, printer)
            snapshot[PRINTER_STATUS] = polled
            status["printer"] = _printer_doc(polled)
        else:
            status["printer"] = _not_open(agent.config.printer.url)
        reader = agent.reader
        busy = engine is not None and engine.reader_in_use and READER_STATUS in self._snapshot
        if reader is not None and busy and reader.protocol == "framed":
            # A framed reader's status query would wait for the swipe: keep the last answer.
            assert engine is not None
            snapshot[READER_STATUS] = self._snapshot[READER_STATUS]
            status["reader"] = engine.device_status.get("reader") or {"state": "ok"}
        elif reader is not None:
            polled_reader = await asyncio.to_thread(poll_reader, reader)
            snapshot[READER_STATUS] = polled_reader
            status["reader"] = _reader_doc(polled_reader)
        else:
            status["reader"] = _not_open(agent.config.reader.url)
        self._snapshot = snapshot
        if engine is not None:
            if status != engine.device_status and agent.journal is not None:
                agent.journal.append("device.status", status)
            engine.device_status = status
            engine.reader_problem = _reader_problem(status["reader"])
        return status


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _printer_doc(polled: PrinterStatus | DeviceError) -> dict[str, Any]:
    if isinstance(polled, DeviceError):
        return {"state": "unavailable", "error": str(polled)[:160]}
    return {
        "state": "ok" if polled.ready else "fault",
        "faults": list(polled.faults),
        "warnings": list(polled.warnings),
    }


def _reader_doc(polled: ReaderStatus | DeviceError) -> dict[str, Any]:
    if isinstance(polled, DeviceError):
        return {"state": "unavailable", "error": str(polled)[:160]}
    if not polled.online:
        return {"state": "unavailable", "error": "disconnected"}
    return {"state": "fault" if polled.state == "fault" else "ok", "reader_state": polled.state}


def _reader_problem(doc: dict[str, Any]) -> str | None:
    state = doc.get("state")
    if state == "ok":
        return None
    if state == "not_configured":
        return "no card reader is configured (reader.url)"
    return f"the card reader is {state}: {doc.get('error') or doc.get('reader_state')}"


def _not_open(url: str | None) -> dict[str, Any]:
    """The status of a device the agent holds no object for."""
    if url:
        return {"state": "unavailable", "error": "could not be opened at start"}
    return {"state": "not_configured"}
