"""The agent's metrics: a Prometheus collector that reads the running agent on each scrape.

Nothing here is a global mutable metric: :meth:`AgentCollector.collect` builds every family
from the agent's current state when Prometheus asks (the ``prometheus_client`` "custom
collector" pattern). Every read is O(1) in the journal's size — the chain head, the sync
cursor and the oldest unsynced event are primary-key lookups, the file size is three
``stat`` calls, outcome counters tail only the events since the previous scrape
(:mod:`.outcomes`) — so a scrape of a terminal with a million events costs what one of an
empty terminal does.

Labels are bounded by construction: device names, check names, alert names, states,
currencies and outcomes come from code or configuration, never from the till or the card;
any value outside the expected shape becomes ``other`` (:func:`bounded`). No sale id, no
terminal-supplied text and no card data is ever a label. Every section is read on its own:
a failure in one (a journal error, a bug in a health check) is logged, counted in
``posedge_metrics_collect_errors_total`` and leaves the other families in the scrape.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..sync.client import agent_version
from .outcomes import OutcomeTail

if TYPE_CHECKING:
    from ..service import Agent

log = logging.getLogger("posedge.metrics")

PREFIX = "posedge_"
OTHER = "other"
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_DIGIT_RUN = re.compile(r"\d{8}")
"""Eight digits in a row are never a code-made name (a card number, an id): ``other``."""
DEVICES = ("printer", "reader")
DEVICE_STATES = ("ok", "fault", "unavailable", "not_configured")
"""States each device's state set always lists (0 or 1); another current state is added."""
CHECK_STATUS = {"ok": 0.0, "warn": 1.0, "fail": 2.0, "skip": -1.0}
ALERT_STATES = frozenset({"pending", "firing", "flapping"})
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def bounded(value: object, allowed: Iterable[str] | None = None) -> str:
    """``value`` as a label value when it has a code-made shape (a lower-case letter, then
    letters, digits, ``_.-``, at most 64 characters, no run of 8 digits) and, with
    ``allowed``, is one of those; else ``other``. Alert kinds of the form ``kind:sale-id``
    keep only ``kind``."""
    text = str(value).split(":", 1)[0]
    if not _LABEL_RE.match(text) or _DIGIT_RUN.search(text):
        return OTHER
    if allowed is not None and text not in allowed:
        return OTHER
    return text


def _iso_to_unix(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def journal_file_bytes(path: Path) -> int:
    """The journal's database, WAL and shared-memory files together."""
    total = 0
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            total += os.stat(name).st_size
        except FileNotFoundError:
            continue
    return total


Section = Callable[[], list[Metric]]


class AgentCollector(Collector):
    """``posedge_*`` families from a :class:`~posedge.agent.service.Agent`, read per scrape.

    Construct it once per daemon (its start time and the outcome tail's starting point are
    taken then); it may be built before the agent starts (families of parts not started yet
    are left out). Call :meth:`collect` on the agent's event loop: the agent's state is
    owned by that loop.
    """

    def __init__(self, agent: Agent, *, clock: Callable[[], float] = time.time) -> None:
        self.agent = agent
        self.clock = clock
        self.start_time_s = clock()
        self.tail: OutcomeTail | None = None
        self._sections: dict[str, Section] = {
            "build": self._build,
            "journal": self._journal,
            "sync": self._sync,
            "sales": self._sales,
            "devices": self._devices,
            "health": self._health,
            "alerts": self._agent_alerts,
        }
        self.errors: dict[str, int] = dict.fromkeys(self._sections, 0)
        self._version = agent_version()
        self._python = platform.python_version()

    def describe(self) -> list[Metric]:
        """Nothing: the registry must not call :meth:`collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        for name, section in self._sections.items():
            try:
                families = section()
            except Exception as exc:  # one broken source must not empty the scrape
                self.errors[name] += 1
                log.warning(
                    "metrics section failed",
                    extra={"section": name, "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                continue
            yield from families
        errors = CounterMetricFamily(
            f"{PREFIX}metrics_collect_errors",
            "Metric sections that failed to read (the rest of the scrape is still served).",
            labels=["section"],
        )
        for name, count in self.errors.items():
            errors.add_metric([name], count)
        yield errors

    # ------------------------------------------------------------ sections
    def _build(self) -> list[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}build_info",
            "Always 1; the agent's version and Python version as labels.",
            labels=["version", "python"],
        )
        info.add_metric([self._version, self._python], 1)
        now = self.clock()
        return [
            info,
            GaugeMetricFamily(
                f"{PREFIX}start_time_seconds",
                "When this agent process started serving metrics (Unix time).",
                value=self.start_time_s,
            ),
            GaugeMetricFamily(
                f"{PREFIX}uptime_seconds",
                "Seconds since this agent process started serving metrics.",
                value=max(0.0, now - self.start_time_s),
            ),
        ]

    def _journal(self) -> list[Metric]:
        journal = self.agent.journal
        if journal is None:
            return []
        head = journal.head().seq
        acked = journal.acked_seq()
        unsynced, oldest_age_s = journal.backlog()
        return [
            GaugeMetricFamily(
                f"{PREFIX}journal_head_seq", "Sequence number of the newest event.", value=head
            ),
            GaugeMetricFamily(
                f"{PREFIX}journal_acked_seq",
                "Highest sequence number the back office acknowledged.",
                value=acked,
            ),
            GaugeMetricFamily(
                f"{PREFIX}journal_unsynced_events",
                "Events not yet acknowledged by the back office.",
                value=unsynced,
            ),
            GaugeMetricFamily(
                f"{PREFIX}journal_oldest_unsynced_age_seconds",
                "Age of the oldest unacknowledged event; 0 when everything is synced.",
                value=oldest_age_s or 0.0,
            ),
            GaugeMetricFamily(
                f"{PREFIX}journal_size_bytes",
                "Size of the journal's database, WAL and shared-memory files.",
                value=journal_file_bytes(journal.path),
            ),
        ]

    def _sync(self) -> list[Metric]:
        sync = self.agent.sync
        configured = GaugeMetricFamily(
            f"{PREFIX}sync_configured",
            "1 when a back office is configured (sync.url), else 0.",
            value=1 if sync is not None else 0,
        )
        if sync is None:
            return [configured]
        state = sync.state
        families: list[Metric] = [
            configured,
            GaugeMetricFamily(
                f"{PREFIX}sync_consecutive_failures",
                "Upload attempts that failed in a row; 0 after a success.",
                value=state.consecutive_failures,
            ),
        ]
        last_success = _iso_to_unix(state.last_success)
        if last_success is not None:
            families.append(
                GaugeMetricFamily(
                    f"{PREFIX}sync_last_success_timestamp_seconds",
                    "When an upload was last acknowledged (Unix time); absent if never.",
                    value=last_success,
                )
            )
        if state.last_skew_s is not None:
            families.append(
                GaugeMetricFamily(
                    f"{PREFIX}sync_clock_skew_seconds",
                    "Back office clock minus this terminal's, at the last exchange.",
                    value=float(state.last_skew_s),
                )
            )
        runner = self.agent.runner
        if runner is not None:
            families.append(
                CounterMetricFamily(
                    f"{PREFIX}sync_heartbeats_sent",
                    "Heartbeats the back office accepted since start.",
                    value=runner.heartbeats_sent,
                )
            )
            families.append(
                GaugeMetricFamily(
                    f"{PREFIX}sync_heartbeat_failing",
                    "1 when the last heartbeat failed, else 0.",
                    value=1 if runner.last_heartbeat_error else 0,
                )
            )
        return families

    def _sales(self) -> list[Metric]:
        engine = self.agent.engine
        journal = self.agent.journal
        if engine is None or journal is None:
            return []
        if self.tail is None:
            self.tail = OutcomeTail.since_agent_start(journal, journal.head().seq, os.getpid())
        tail = self.tail
        tail.update(journal)
        families: list[Metric] = [
            CounterMetricFamily(
                f"{PREFIX}sales_created",
                "Sales the till started since start.",
                value=tail.sales_created,
            ),
            _counter_by(
                "sales",
                "Sale outcomes reached since start (a voided sale counts also as approved).",
                "outcome",
                tail.sales,
            ),
            _counter_by(
                "forwards",
                "Offline sales' forwards completed since start, by outcome.",
                "outcome",
                tail.forwards,
            ),
            _counter_by(
                "receipts", "Receipt jobs since start, by outcome.", "outcome", tail.receipts
            ),
            GaugeMetricFamily(
                f"{PREFIX}sales_accepting",
                "1 when the agent takes new sales, else 0.",
                value=1 if engine.accepting else 0,
            ),
            GaugeMetricFamily(
                f"{PREFIX}sales_in_doubt",
                "Authorization attempts whose reversal is still owed or unacknowledged.",
                value=len(engine.reversals),
            ),
            GaugeMetricFamily(
                f"{PREFIX}forwards_pending",
                "Offline approvals not yet forwarded to the back office.",
                value=len(engine.forwards),
            ),
        ]
        currencies = set(engine.config.offline.max_per_sale)
        per_currency = dict(engine.exposure.per_currency)
        currencies.update(per_currency)
        amount = GaugeMetricFamily(
            f"{PREFIX}offline_exposure_minor_units",
            "Outstanding offline-approved amount in the currency's minor units (cents).",
            labels=["currency"],
        )
        count = GaugeMetricFamily(
            f"{PREFIX}offline_exposure_sales",
            "Outstanding offline-approved sales.",
            labels=["currency"],
        )
        for currency in sorted(c for c in currencies if _CURRENCY_RE.match(c)):
            entry = per_currency.get(currency)
            amount.add_metric([currency], entry.amount if entry else 0)
            count.add_metric([currency], entry.count if entry else 0)
        families += [amount, count]
        return families

    def _devices(self) -> list[Metric]:
        engine = self.agent.engine
        if engine is None:
            return []
        status: dict[str, Any] = engine.device_status
        family = GaugeMetricFamily(
            f"{PREFIX}device_state",
            "1 for each device's current state, 0 for its other states.",
            labels=["device", "state"],
        )
        for device in DEVICES:
            entry = status.get(device)
            current = bounded(entry.get("state", "unknown")) if isinstance(entry, dict) else None
            states = list(DEVICE_STATES)
            if current is not None and current not in states:
                states.append(current)
            for state in states:
                family.add_metric([device, state], 1 if state == current else 0)
        return [family]

    def _health(self) -> list[Metric]:
        health = getattr(self.agent, "health", None)
        if health is None:
            return []
        checks = GaugeMetricFamily(
            f"{PREFIX}health_check_status",
            "Each health check's last result: 0 ok, 1 warn, 2 fail, -1 skip.",
            labels=["check"],
        )
        seen: set[str] = set()
        for result in health.results():
            name = bounded(result.name)
            status = CHECK_STATUS.get(str(getattr(result.status, "value", result.status)))
            if status is None or name in seen:
                continue
            seen.add(name)
            checks.add_metric([name], status)
        alerts = GaugeMetricFamily(
            f"{PREFIX}alerts",
            "Active health alerts, by alert name and state (pending, firing, flapping).",
            labels=["alert", "state"],
        )
        active: dict[tuple[str, str], int] = {}
        for alert in health.alerts():
            key = (bounded(alert.get("name")), bounded(alert.get("state"), ALERT_STATES))
            active[key] = active.get(key, 0) + 1
        for (name, state), n in sorted(active.items()):
            alerts.add_metric([name, state], n)
        return [checks, alerts]

    def _agent_alerts(self) -> list[Metric]:
        engine = self.agent.engine
        if engine is None:
            return []
        family = GaugeMetricFamily(
            f"{PREFIX}agent_alerts_active",
            "Journaled agent alerts that are raised and not cleared, by kind.",
            labels=["kind"],
        )
        kinds: dict[str, int] = {}
        for kind in engine.alerts.active():
            label = bounded(kind)
            kinds[label] = kinds.get(label, 0) + 1
        for label, n in sorted(kinds.items()):
            family.add_metric([label], n)
        return [family]


def _counter_by(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(f"{PREFIX}{name}", documentation, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family
