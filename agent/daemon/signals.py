"""Signal handling for the daemon, on the asyncio loop (never in a raw handler).

* SIGTERM / SIGINT → ``stop()`` once. A second one → ``force_stop()`` (skip
  waiting for the sale in flight to finish; it is parked as journaled). More
  are logged and ignored.
* SIGHUP → ``reload()`` (a coroutine function). Reloads are serialised: a
  SIGHUP during a reload is coalesced into exactly one more reload after it,
  because the file may have changed after the running reload read it. No
  reload starts once a stop was requested.
* SIGUSR1 → ``dump()`` when given (a device dump file, docs/diagnostics.md). Its
  default action terminates the process, so the daemon calls
  :func:`ignore_dump_signal` as early as it can: until the handler is installed (and
  again after :meth:`SignalHandlers.remove`) SIGUSR1 is ignored, never fatal.

Callbacks run on the event loop thread. An exception from one is logged, never
propagated: a bad reload must not kill a selling terminal.

This module must never do work inside a signal handler proper (asyncio's
``add_signal_handler`` defers to the loop) and never install handlers outside
the main thread (asyncio refuses; we let that error surface at startup).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger("posedge.daemon.signals")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalHandlers:
    """Installed handlers; :meth:`remove` restores the defaults."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stop: Callable[[], None],
        force_stop: Callable[[], None] | None,
        reload: Callable[[], Awaitable[None]] | None,
        dump: Callable[[], None] | None,
    ) -> None:
        self._loop = loop
        self._stop = stop
        self._force_stop = force_stop
        self._reload = reload
        self._dump = dump
        self._installed: list[signal.Signals] = []
        self._ignored: list[signal.Signals] = []
        """Signals that were ignored before we took them: ignored again on remove()."""
        self.stop_signals = 0
        """How many stop signals arrived."""
        self.reloads_done = 0
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False

    @property
    def stop_requested(self) -> bool:
        return self.stop_signals > 0

    @property
    def reload_task(self) -> asyncio.Task[None] | None:
        """The running reload, if any (await it to wait for reloads to settle)."""
        return self._reload_task

    def _install(self) -> None:
        for sig in STOP_SIGNALS:
            self._add(sig, self._on_stop_signal, sig)
        if self._reload is not None:
            self._add(signal.SIGHUP, self._on_hup)
        if self._dump is not None:
            self._add(signal.SIGUSR1, self._on_usr1)

    def _add(self, sig: signal.Signals, callback: Callable[..., None], *args: object) -> None:
        ignored = signal.getsignal(sig) == signal.SIG_IGN
        self._loop.add_signal_handler(sig, callback, *args)
        self._installed.append(sig)
        if ignored:
            self._ignored.append(sig)

    def remove(self) -> None:
        """Remove our handlers: the default dispositions come back, except that a signal
        ignored before :func:`install_signal_handlers` is ignored again."""
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)
            if sig in self._ignored:
                signal.signal(sig, signal.SIG_IGN)
        self._installed.clear()
        self._ignored.clear()

    # ---- handlers (run on the loop) ------------------------------------------
    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self.stop_signals += 1
        if self.stop_signals == 1:
            log.info("%s received: stopping", sig.name, extra={"signal": sig.name})
            _guarded("stop", self._stop)
        elif self.stop_signals == 2 and self._force_stop is not None:
            log.warning("second %s received: stopping now", sig.name, extra={"signal": sig.name})
            _guarded("force stop", self._force_stop)
        else:
            log.warning("%s received: already stopping", sig.name, extra={"signal": sig.name})

    def _on_hup(self) -> None:
        if self.stop_requested:
            log.warning("SIGHUP ignored: stopping")
            return
        if self._reload_task is not None and not self._reload_task.done():
            log.info("SIGHUP during a reload: one more reload follows it")
            self._reload_again = True
            return
        log.info("SIGHUP received: reloading the configuration")
        self._reload_task = self._loop.create_task(self._reload_serially(), name="posedge-reload")

    async def _reload_serially(self) -> None:
        assert self._reload is not None
        while True:
            self._reload_again = False
            try:
                await self._reload()
            except Exception:
                log.exception("reload failed; the previous configuration stays in force")
            self.reloads_done += 1
            if not self._reload_again or self.stop_requested:
                return

    def _on_usr1(self) -> None:
        assert self._dump is not None
        _guarded("dump", self._dump)


def _guarded(what: str, callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("%s callback failed", what)


def ignore_dump_signal() -> None:
    """Ignore SIGUSR1 (whose default action kills) until :func:`install_signal_handlers`
    takes it over. Main thread only; call it first thing in the daemon's start."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def install_signal_handlers(
    *,
    stop: Callable[[], None],
    force_stop: Callable[[], None] | None = None,
    reload: Callable[[], Awaitable[None]] | None = None,
    dump: Callable[[], None] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> SignalHandlers:
    """Install the daemon's handlers on ``loop`` (default: the running loop)."""
    handlers = SignalHandlers(loop or asyncio.get_running_loop(), stop, force_stop, reload, dump)
    try:
        handlers._install()
    except BaseException:
        handlers.remove()
        raise
    return handlers
