"""Progress supervision behind systemd's watchdog: ping only while we really work.

Critical tasks (asyncio tasks and worker threads) :meth:`~WatchdogSupervisor.register`
a :class:`Heartbeat` and call :meth:`Heartbeat.beat` each time they make
progress. A task that is idle but healthy still beats on every turn of its
loop (wait on the queue *with a timeout*, beat, wait again), so "no beat
within ``max_stale_s``" always means "stuck".

The supervisor is one asyncio task that wakes every ``tick_s`` and decides:

* **loop lag** — how late its own wake-up was. More than ``lag_tolerance_s``
  means the event loop was blocked (a sync call, a runaway computation).
* **heartbeats** — every critical heartbeat beat within its own ``max_stale_s``.

``WATCHDOG=1`` goes out every ``interval_s`` (half of ``WATCHDOG_USEC``) only
while both checks pass. After a failed check, pings resume only once the
service has been healthy again for ``resume_after_s`` (default: half an
interval), so a single hiccup never gets us killed but a loop that is blocked
most of the time does. A blocked loop cannot run the supervisor at all, so
pings also stop by construction. When pings stop, systemd kills and restarts
the agent after ``WatchdogSec=``; the log names the stuck task first.

It also keeps ``STATUS=`` current from a ``status_provider()`` (one cheap line,
no I/O), sending only when the text changes and appending the watchdog's
reason while unhealthy.

Test hook: :meth:`WatchdogSupervisor.stall` (or ``POSEDGE_TEST_STALL=name[,name]``
read by :meth:`WatchdogSupervisor.from_env`) makes the named heartbeat ignore
its beats, so the real staleness path withholds pings.

This module must never ping on a guess (no "probably fine"), never do I/O in
the supervisor besides the notify datagram, and never let a failing status
provider or notify socket stop supervision.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .notify import Notifier, watchdog_interval

log = logging.getLogger("posedge.daemon.watchdog")

TEST_STALL_ENV = "POSEDGE_TEST_STALL"
DEFAULT_TICK_S = 1.0
DEFAULT_LAG_TOLERANCE_S = 1.0
STATUS_SEPARATOR = " · "

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Heartbeat:
    """Progress marker of one task; :meth:`beat` is cheap and safe from any thread."""

    def __init__(
        self,
        name: str,
        max_stale_s: float,
        critical: bool,
        clock: Clock,
        on_close: Callable[[Heartbeat], None],
    ) -> None:
        self.name = name
        self.max_stale_s = max_stale_s
        self.critical = critical
        self._clock = clock
        self._on_close = on_close
        self.last_beat_s = clock()
        self.stalled = False
        """Test hook: while True, :meth:`beat` is ignored."""

    def beat(self) -> None:
        # One float store: atomic under the GIL, so worker threads need no lock.
        if not self.stalled:
            self.last_beat_s = self._clock()

    def age_s(self, now_s: float) -> float:
        return max(0.0, now_s - self.last_beat_s)

    def is_stale(self, now_s: float) -> bool:
        return self.age_s(now_s) > self.max_stale_s

    def close(self) -> None:
        """Stop supervising this task (it finished on purpose)."""
        self._on_close(self)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Verdict:
    """What one supervisor tick found and did."""

    at_s: float
    loop_lag_s: float
    loop_blocked: bool
    stuck: tuple[str, ...]
    """Critical heartbeats older than their allowed staleness."""
    late: tuple[str, ...]
    """Non-critical heartbeats older than their allowed staleness (reported only)."""
    pinged: bool

    @property
    def healthy(self) -> bool:
        return not self.loop_blocked and not self.stuck

    def reason(self) -> str:
        parts = [f"{name} stuck" for name in self.stuck]
        if self.loop_blocked:
            parts.append(f"event loop blocked {self.loop_lag_s:.1f}s")
        return ", ".join(parts)


class WatchdogSupervisor:
    """Sends WATCHDOG=1 only while the loop and every critical task progress."""

    def __init__(
        self,
        notifier: Notifier,
        interval_s: float | None,
        *,
        status_provider: Callable[[], str] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        tick_s: float | None = None,
        lag_tolerance_s: float = DEFAULT_LAG_TOLERANCE_S,
        resume_after_s: float | None = None,
    ) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"watchdog interval must be positive, not {interval_s}")
        self.notifier = notifier
        self.interval_s = interval_s
        """Seconds between pings; None: no systemd watchdog (STATUS and logs only)."""
        self.status_provider = status_provider
        self.tick_s = tick_s or (
            min(DEFAULT_TICK_S, interval_s / 2) if interval_s else DEFAULT_TICK_S
        )
        self.lag_tolerance_s = lag_tolerance_s
        self.resume_after_s = (interval_s or 0.0) / 2 if resume_after_s is None else resume_after_s
        self._clock = clock
        self._sleep = sleep
        self._heartbeats: dict[str, Heartbeat] = {}
        self._stall_names: set[str] = set()
        self._last_tick_s: float | None = None
        self._last_ping_s: float | None = None
        self._healthy_since_s = -math.inf
        self._withholding = False
        self._reported_stuck: set[str] = set()
        self._last_status: str | None = None
        self._status_failing = False
        self.last_verdict: Verdict | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        notifier: Notifier | None = None,
        **options: Any,
    ) -> WatchdogSupervisor:
        """Interval from ``WATCHDOG_USEC``/``WATCHDOG_PID``, stalls from ``POSEDGE_TEST_STALL``."""
        env = os.environ if env is None else env
        supervisor = cls(
            notifier if notifier is not None else Notifier.from_env(env),
            watchdog_interval(env),
            **options,
        )
        for name in env.get(TEST_STALL_ENV, "").split(","):
            if name.strip():
                supervisor.stall(name.strip())
        return supervisor

    # ---- registration -----------------------------------------------------
    def register(self, name: str, max_stale_s: float, *, critical: bool = True) -> Heartbeat:
        """A heartbeat for task ``name``; it must beat at least every ``max_stale_s``.

        The clock starts now: register when the task starts (or beat right away),
        and choose ``max_stale_s`` well above the task's own turn period (e.g. 3×
        its queue-wait timeout) so a busy moment is not mistaken for a hang.
        """
        if name in self._heartbeats:
            raise ValueError(f"a heartbeat named {name!r} is already registered")
        if max_stale_s <= 0:
            raise ValueError(f"max_stale_s must be positive, not {max_stale_s}")
        heartbeat = Heartbeat(name, max_stale_s, critical, self._clock, self._forget)
        heartbeat.stalled = name in self._stall_names
        self._heartbeats[name] = heartbeat
        return heartbeat

    def unregister(self, name: str) -> None:
        self._heartbeats.pop(name, None)
        self._reported_stuck.discard(name)

    def _forget(self, heartbeat: Heartbeat) -> None:
        if self._heartbeats.get(heartbeat.name) is heartbeat:
            self.unregister(heartbeat.name)

    def stall(self, name: str) -> None:
        """Test hook: heartbeat ``name`` (now or once registered) stops beating."""
        log.warning("test hook: heartbeat %s stalled on purpose", name, extra={"task": name})
        self._stall_names.add(name)
        if name in self._heartbeats:
            self._heartbeats[name].stalled = True

    def snapshot(self) -> dict[str, Any]:
        """Heartbeat ages and the last verdict, for a diagnostics dump."""
        now = self._clock()
        verdict = self.last_verdict
        return {
            "interval_s": self.interval_s,
            "healthy": verdict.healthy if verdict else None,
            "reason": verdict.reason() if verdict else None,
            "heartbeats": {
                hb.name: {
                    "age_s": round(hb.age_s(now), 3),
                    "max_stale_s": hb.max_stale_s,
                    "critical": hb.critical,
                    "stalled": hb.stalled,
                }
                for hb in self._heartbeats.values()
            },
        }

    # ---- supervision --------------------------------------------------------
    async def run(self) -> None:
        """Tick forever (cancel to stop); the first tick is immediate."""
        self._last_tick_s = self._clock()
        while True:
            self.tick()
            await self._sleep(self.tick_s)

    def tick(self, now_s: float | None = None) -> Verdict:
        """Check, ping if due and healthy, refresh STATUS. One supervisor step."""
        now = self._clock() if now_s is None else now_s
        previous = self._last_tick_s
        self._last_tick_s = now
        lag = 0.0 if previous is None else max(0.0, now - previous - self.tick_s)
        blocked = lag > self.lag_tolerance_s
        if blocked:
            log.warning(
                "event loop was blocked for about %.1fs (tolerance %.1fs)",
                lag,
                self.lag_tolerance_s,
                extra={"loop_lag_s": round(lag, 3)},
            )
        stale = [hb for hb in self._heartbeats.values() if hb.is_stale(now)]
        stuck = tuple(hb.name for hb in stale if hb.critical)
        late = tuple(hb.name for hb in stale if not hb.critical)
        self._report_stuck(stale, now)
        healthy = not blocked and not stuck
        if not healthy:
            self._healthy_since_s = math.inf
        elif self._healthy_since_s == math.inf:
            self._healthy_since_s = now
        verdict = Verdict(now, lag, blocked, stuck, late, pinged=False)
        if self._maybe_ping(now, verdict):
            verdict = Verdict(now, lag, blocked, stuck, late, pinged=True)
        self.last_verdict = verdict
        self._refresh_status(verdict)
        return verdict

    def _report_stuck(self, stale: list[Heartbeat], now: float) -> None:
        names = {hb.name for hb in stale}
        for hb in stale:
            if hb.name not in self._reported_stuck:
                level = logging.ERROR if hb.critical else logging.WARNING
                log.log(
                    level,
                    "task %s made no progress for %.1fs (allowed %.1fs)%s",
                    hb.name,
                    hb.age_s(now),
                    hb.max_stale_s,
                    "; withholding watchdog pings" if hb.critical else "",
                    extra={"task": hb.name, "critical": hb.critical},
                )
        for name in self._reported_stuck - names:
            log.warning("task %s makes progress again", name, extra={"task": name})
        self._reported_stuck = names

    def _maybe_ping(self, now: float, verdict: Verdict) -> bool:
        if self.interval_s is None:
            return False
        recovered = now - self._healthy_since_s >= self.resume_after_s
        if not (verdict.healthy and recovered):
            if not self._withholding:
                log.error(
                    "withholding watchdog pings (%s); systemd restarts the agent if this "
                    "lasts WatchdogSec",
                    verdict.reason() or "recovering",
                )
                self._withholding = True
            return False
        due = self._last_ping_s is None or now - self._last_ping_s >= self.interval_s - (
            self.tick_s / 2
        )
        if not due:
            return False
        if self._withholding:
            log.warning("healthy again; watchdog pings resume")
            self._withholding = False
        self._last_ping_s = now
        self.notifier.watchdog()
        return True

    def _refresh_status(self, verdict: Verdict) -> None:
        if self.status_provider is None or not self.notifier.enabled:
            return
        try:
            text = self.status_provider()
            self._status_failing = False
        except Exception:
            if not self._status_failing:
                log.exception("status provider failed")
            self._status_failing = True
            text = "status unavailable"
        if not verdict.healthy:
            text = f"{text}{STATUS_SEPARATOR}watchdog: {verdict.reason()}"
        if text != self._last_status and self.notifier.status(text):
            self._last_status = text
