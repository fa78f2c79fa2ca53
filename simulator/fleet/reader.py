"""What a real posedge agent reports about its card reader, for a simulated terminal.

The daemon's health monitor (``agent/health/monitor.py``, docs/health.md) polls the
reader every ``[health] poll_interval`` (10 s), runs ``reader.present`` and
``reader.errors`` right after the poll, and turns a bad check into an alert through the
terminal's own :class:`~posedge.agent.health.lifecycle.AlertLifecycle`: pending at the
first bad poll, firing after ``alert_for`` (30 s), resolved after ``keep_firing_for``
(60 s) of good polls. The heartbeat carries the polled device state (``devices``) and
the checks and alerts (``health``). :class:`ReaderHealth` does the same with the same
pieces — the agent's :class:`~posedge.agent.config.HealthConfig` defaults, its
``alert_rule`` / ``threshold`` and its lifecycle — fed only with what a simulated
terminal knows: when the reader was unplugged or replugged and each swipe's outcome.

Only the reader checks are modelled (the printer stays ``ok``); flapping follows the
real rule, since the lifecycle is the real one.

Variants of a dead reader (``dead-reader`` fault), drawn per injection with these
shares (an assumption for the evaluation, not a measured field rate: most reader
failures a help desk sees are a cable or USB port, fewer a worn head, and a reader
that answers its status but never sees a card is the rare, hard case):

============== ===== ======================================================================
variant        share evidence
============== ===== ======================================================================
``unplugged``  0.5   the status poll fails: ``devices.reader.state`` ``unavailable``, a
                     ``reader.present`` alert (critical) fires 30-40 s later; sales are
                     refused (503) so nothing is journaled
``worn-head``  0.3   the lane keeps trying: every swipe is unreadable (``card.read_failed``),
                     the clerk gives up (``sale.cancelled``) or the sale times out
                     (``sale.abandoned``); ``reader.errors`` fires at the warn rate and is
                     critical once half the last 20 swipes failed
``no-evidence`` 0.2  the reader answers its status and never sees a card: nothing at all
                     (the ``silent`` fault's behaviour)
============== ===== ======================================================================
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from posedge.agent.config import HealthConfig
from posedge.agent.health.lifecycle import AlertLifecycle, AlertRule, Threshold

READER_VARIANTS: dict[str, float] = {"unplugged": 0.5, "worn-head": 0.3, "no-evidence": 0.2}
"""Dead-reader variants and their shares (sum 1)."""
PRESENT = "reader.present"
ERRORS = "reader.errors"
PRESENT_SUMMARY = "the card reader is disconnected"
PRESENT_FIX = "replug the card reader's cable; check reader.url"
ERRORS_FIX = (
    "clean the reader's head with a cleaning card; replace the reader if the rate stays high"
)
UNREADABLE_REASON = "the card could not be read (no valid track data)"


def pick_variant(roll: float) -> str:
    """The variant for a uniform ``roll`` in [0, 1), by :data:`READER_VARIANTS` shares."""
    total = 0.0
    for name, share in READER_VARIANTS.items():
        total += share
        if roll < total:
            return name
    return next(reversed(READER_VARIANTS))


@dataclass(frozen=True)
class AgentDefaults:
    """The agent's ``[health]`` defaults that matter here (from :class:`HealthConfig`)."""

    poll_s: float
    window: int
    min_swipes: int
    warn: float
    fail: float
    present_rule: AlertRule
    errors_rule: AlertRule

    @classmethod
    def load(cls) -> AgentDefaults:
        health = HealthConfig()
        warn = health.reader_error_rate_warn
        base = AlertRule(
            for_s=health.number("alert_for"),
            keep_firing_for_s=health.number("keep_firing_for"),
            flap_changes=health.flap_changes,
            flap_window_s=health.number("flap_window"),
            flap_stable_s=health.number("flap_stable"),
        )
        clear = (
            health.reader_error_rate_clear
            if health.reader_error_rate_clear is not None
            else warn * health.clear_ratio
        )
        errors = AlertRule(
            for_s=base.for_s,
            keep_firing_for_s=base.keep_firing_for_s,
            threshold=Threshold(fire=warn, clear=clear, high_is_bad=True),
            flap_changes=base.flap_changes,
            flap_window_s=base.flap_window_s,
            flap_stable_s=base.flap_stable_s,
        )
        return cls(
            health.number("poll_interval"), health.reader_error_window,
            health.reader_error_min_swipes, warn, health.reader_error_rate_fail, base, errors,
        )  # fmt: skip


_DEFAULTS: AgentDefaults | None = None


def agent_defaults() -> AgentDefaults:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = AgentDefaults.load()
    return _DEFAULTS


def _iso(when: float) -> str:
    second = math.floor(when)
    millis = min(999, round((when - second) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}+00:00"


class ReaderHealth:
    """One terminal's reader as its agent sees it: polls, swipe outcomes, alerts.

    Feed :meth:`swipe`, :meth:`unplug` and :meth:`replug` (in any order; they are kept
    sorted by time) and call :meth:`advance` before reading :meth:`devices` or
    :meth:`health`. Polls are run one by one only while something is wrong (the reader
    is unplugged, a recent swipe failed, an alert is open); otherwise time jumps.
    """

    def __init__(self, phase_s: float = 0.0, defaults: AgentDefaults | None = None) -> None:
        self.d = defaults or agent_defaults()
        self.phase = phase_s % self.d.poll_s
        self.lifecycle = AlertLifecycle()
        self.swipes: deque[bool] = deque(maxlen=self.d.window)
        self._queue: list[tuple[float, int, str]] = []  # (time, order, what)
        self._order = 0
        self.polled_to = -math.inf
        self.unplugged = False
        self.state = "ok"
        self.results: dict[str, dict[str, Any]] = {}
        self.firing_since: dict[str, float] = {}
        """First time each check's alert fired (critical or not), for an evaluation."""
        self.critical_since: dict[str, float] = {}
        """First poll at which each check's firing alert was critical."""

    # -- input -------------------------------------------------------------------------------

    def _push(self, when: float, what: str) -> None:
        self._order += 1
        bisect.insort(self._queue, (when, self._order, what))

    def swipe(self, when: float, ok: bool) -> None:
        self._push(when, "ok" if ok else "failed")

    def unplug(self, when: float) -> None:
        self._push(when, "unplug")

    def replug(self, when: float) -> None:
        self._push(when, "replug")

    # -- time --------------------------------------------------------------------------------

    def _hot(self) -> bool:
        return self.unplugged or (False in self.swipes) or bool(self.lifecycle.alerts())

    def _poll_before(self, when: float) -> float:
        """The last poll strictly before ``when``."""
        k = math.ceil((when - self.phase) / self.d.poll_s) - 1
        return self.phase + k * self.d.poll_s

    def _next_poll(self, after: float) -> float:
        if after == -math.inf:
            return after
        k = math.floor((after - self.phase) / self.d.poll_s) + 1
        return self.phase + k * self.d.poll_s

    def _fold(self, upto: float, strict: bool = False) -> None:
        queue = self._queue
        while queue and (queue[0][0] < upto if strict else queue[0][0] <= upto):
            _, _, what = queue.pop(0)
            if what == "unplug":
                self.unplugged = True
            elif what == "replug":
                self.unplugged = False
            else:
                self.swipes.append(what == "ok")

    def advance(self, now: float) -> None:
        """Run the agent's polls up to ``now``."""
        while True:
            if not self._hot():
                trigger = next(
                    (t for t, _, w in self._queue if w in ("failed", "unplug")), math.inf
                )
                limit = min(now, trigger)
                self._fold(limit, strict=True)
                self.polled_to = max(self.polled_to, self._poll_before(limit))
                if trigger > now:
                    self._fold(now)
                    self.polled_to = max(self.polled_to, self._poll_before(now + 1e-9))
                    return
            poll = self._next_poll(self.polled_to)
            if poll > now:
                return
            self._fold(poll)
            self._poll(poll)
            self.polled_to = poll

    def _poll(self, at: float) -> None:
        d = self.d
        self.state = "unavailable" if self.unplugged else "ok"
        if self.unplugged:
            present: dict[str, Any] = {"name": PRESENT, "status": "fail", "value": None,
                                       "summary": PRESENT_SUMMARY, "fix": PRESENT_FIX}  # fmt: skip
        else:
            present = {"name": PRESENT, "status": "ok", "value": None,
                       "summary": "the card reader is connected (ready)", "fix": None}  # fmt: skip
        total = len(self.swipes)
        failed = sum(1 for ok in self.swipes if not ok)
        rate = failed / total if total else 0.0
        summary = f"{failed} of the last {total} swipes could not be read ({rate:.0%})"
        status = "ok"
        if total >= d.min_swipes:
            status = "fail" if rate >= d.fail else "warn" if rate >= d.warn else "ok"
        else:
            rate = 0.0
            summary = f"{failed} of {total} recent swipes unreadable (too few to judge)"
        errors: dict[str, Any] = {"name": ERRORS, "status": status, "summary": summary,
                                  "value": rate,
                                  "fix": ERRORS_FIX if status != "ok" else None}  # fmt: skip
        self.results = {PRESENT: present, ERRORS: errors}
        for check, rule in ((present, d.present_rule), (errors, d.errors_rule)):
            name = str(check["name"])
            labels = {"check": name}
            if check["status"] in ("warn", "fail"):
                labels["severity"] = "critical" if check["status"] == "fail" else "warning"
            if rule.threshold is not None:
                self.lifecycle.observe(name, at, value=float(check["value"]), labels=labels,
                                       summary=str(check["summary"]), rule=rule)  # fmt: skip
            else:
                self.lifecycle.observe(name, at, bad=check["status"] != "ok", labels=labels,
                                       summary=str(check["summary"]), rule=rule)  # fmt: skip
            if self.lifecycle.state(name).is_open:
                self.firing_since.setdefault(name, at)
                if labels.get("severity") == "critical":
                    self.critical_since.setdefault(name, at)

    # -- the heartbeat's blocks --------------------------------------------------------------

    def devices(self) -> dict[str, Any]:
        reader: dict[str, Any] = {"state": self.state, "faults": []}
        if self.state == "unavailable":
            reader["faults"] = ["disconnected"]
        return {"printer": {"state": "ok", "faults": []}, "reader": reader}

    def health(self) -> dict[str, Any] | None:
        """The heartbeat's ``health`` block (reader checks only), or None before any poll
        found something to report (a healthy reader: the simulated heartbeat omits it)."""
        if not self.results and not self.lifecycle.alerts():
            return None
        return {
            "enabled": True,
            "checks": [dict(r) for r in self.results.values()],
            "alerts": [
                {
                    "name": a.key,
                    "state": a.state.value,
                    "since": _iso(a.since),
                    "value": a.value,
                    "summary": a.summary[:500],
                    "labels": dict(a.labels),
                }
                for a in self.lifecycle.alerts()
            ],
        }

    def critical_alert(self) -> bool:
        """A reader alert is firing (or flapping) with severity critical now."""
        return any(
            a.state.is_open and a.labels.get("severity") == "critical"
            for a in self.lifecycle.alerts()
        )


__all__ = [
    "READER_VARIANTS",
    "UNREADABLE_REASON",
    "AgentDefaults",
    "ReaderHealth",
    "agent_defaults",
    "pick_variant",
]
