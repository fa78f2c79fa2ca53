"""The alert loop of ``posedge backoffice serve`` in a child process.

Evaluation is CPU work in Python (anomaly scans over new events, learning sale rates,
the silence test over every lane). In the serving process it held the interpreter lock
for long stretches and every request waited behind it: with 1,000 terminals uploading,
heartbeats' p99 went from 10 ms to 590 ms (``benchmarks/bench_fleet.py``). In a process
of its own it competes only for CPU, which the kernel shares fairly.

The child opens its own store on the same database (not as the serving process: it
discards no pending claims) and runs :class:`~.loop.AlertLoop` until told to stop, or
until its parent is gone: killed with it (a SIGKILLed server leaves no orphan evaluating
or delivering). A child that
dies is started again after a pause; a reload (SIGHUP: new calendars) restarts it with
the new configuration. Everything the loop keeps is in the database, so a restart loses
nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from posedge.agent.daemon.children import BACKGROUND_NICENESS, die_with_parent, lower_priority

from .config import AlertConfig

log = logging.getLogger("posedge.backoffice.alerts")
RESTART_PAUSE_S = 5.0
PARENT_CHECK_S = 1.0
STOP_TIMEOUT_S = 30.0
ALERT_NICENESS = BACKGROUND_NICENESS


def _child(
    target: Path | str, config: AlertConfig, stop: EventType, parent: int, log_level: str
) -> None:
    """The child's life: a store, the loop, then wait for ``stop`` or the parent's end."""
    from posedge.agent.logs import configure_logging

    from ..store import BackofficeStore
    from .loop import AlertLoop

    die_with_parent(parent)
    # Background work: when the CPU is short, the server's requests (a heartbeat waits for
    # its answer; an alert round can wait a second) get it first.
    lower_priority(ALERT_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent stops us
    configure_logging(log_level)
    with BackofficeStore(target) as store:
        loop = AlertLoop(store, config).start()
        try:
            while not stop.wait(PARENT_CHECK_S):
                if os.getppid() != parent:
                    log.warning("the back office server is gone; alert loop stops")
                    break
        finally:
            loop.stop()


class AlertProcess:
    """Supervises the child: start, restart after a crash, reload, stop."""

    def __init__(
        self, target: Path | str, config: AlertConfig, restart_pause_s: float = RESTART_PAUSE_S
    ) -> None:
        self.target = target
        self.config = config
        self.restart_pause_s = restart_pause_s
        self._ctx = multiprocessing.get_context("spawn")  # no copy of the server's threads
        self._stop = self._ctx.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.starts = 0
        level = logging.getLogger("posedge").getEffectiveLevel()
        self._log_level = logging.getLevelName(level).lower()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> AlertProcess:
        if self.config.interval_s <= 0:
            return self
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="alerts-watch", daemon=True)
        self._watcher.start()
        return self

    def _spawn(self, replacing: multiprocessing.process.BaseProcess | None = None) -> None:
        """Start a child; with ``replacing``, only if that dead child is still the current
        one (a reload or stop in between has already dealt with it)."""
        with self._lock:
            if replacing is not None and self._process is not replacing:
                return
            self._stop = self._ctx.Event()
            process = self._ctx.Process(
                target=_child,
                args=(self.target, self.config, self._stop, os.getpid(), self._log_level),
                name="posedge-alerts",
                daemon=True,
            )
            process.start()
            self._process = process
            self.starts += 1

    def _watch(self) -> None:
        while not self._closing.wait(PARENT_CHECK_S):
            process = self._process
            if process is None or process.is_alive():
                continue
            with self._lock:
                if self._process is not process:
                    continue  # stopped or replaced on purpose (stop, reload) meanwhile
            log.error(
                "the alert loop process ended (exit code %s); starting it again in %ss",
                process.exitcode,
                self.restart_pause_s,
            )
            if self._closing.wait(self.restart_pause_s):
                return
            self._spawn(replacing=process)

    def _halt(self, timeout_s: float) -> None:
        with self._lock:
            process, self._process = self._process, None
            self._stop.set()
        if process is None:
            return
        process.join(timeout_s)
        if process.is_alive():
            process.terminate()
            process.join(5.0)

    def reload(self, config: AlertConfig) -> None:
        """Run with ``config`` from now on (the child is started again with it)."""
        self.config = config
        if self._process is None or self._closing.is_set():
            return
        self._halt(STOP_TIMEOUT_S)
        self._spawn()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._closing.set()
        self._halt(timeout_s)
        if self._watcher is not None:
            self._watcher.join(timeout_s)
            self._watcher = None
