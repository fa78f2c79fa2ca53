"""The collector's parts on real objects: the journal tail, bounded labels, health families."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest

from posedge.agent.health import CheckResult, Status
from posedge.agent.journal import Journal
from posedge.agent.metrics import OutcomeTail, bounded, build_registry
from posedge.agent.metrics import outcomes as outcomes_module
from posedge.agent.service import Agent
from posedge.agent.sync.client import agent_version

from .conftest import agent_config, parse, value


class FixedHealth:
    """The health monitor's read interface (``results()``, ``alerts()``) with set answers."""

    def __init__(self, results: list[CheckResult], alerts: list[dict[str, Any]]) -> None:
        self._results = results
        self._alerts = alerts
        self.fail = False

    def results(self) -> list[CheckResult]:
        if self.fail:
            raise RuntimeError("health monitor broke")
        return self._results

    def alerts(self) -> list[dict[str, Any]]:
        return self._alerts


def scrape(agent: Agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry, _ = build_registry(agent)
    return parse(generate_latest(registry).decode())[1]


@pytest.mark.parametrize(
    ("raw", "allowed", "expected"),
    [
        ("printer.paper", None, "printer.paper"),
        ("reversal_without_amount:s-18c2f-0a1b2c3d", None, "reversal_without_amount"),
        ("Sale for Mr X", None, "other"),
        ("4111111111111111", None, "other"),
        ("card4111111111111111", None, "other"),
        ("sync.batch_2000", None, "sync.batch_2000"),
        ("x" * 65, None, "other"),
        ("firing", {"pending", "firing"}, "firing"),
        ("resolved", {"pending", "firing"}, "other"),
        (None, None, "other"),
        ("", None, "other"),
    ],
)
def test_bounded_label_values(raw: object, allowed: set[str] | None, expected: str) -> None:
    assert bounded(raw, allowed) == expected


def test_no_label_source_carries_a_card_number(tmp_path: Path) -> None:
    """Labels come from code (check and alert names, states); even a card-number-shaped name
    from a buggy check never becomes a label value."""
    agent = Agent(agent_config(), tmp_path)
    agent.health = FixedHealth(  # type: ignore[assignment]
        [CheckResult("4111111111111111", Status.OK, "a check named like a card")],
        [{"name": "5500000000000004", "state": "firing"}],
    )
    samples = scrape(agent)
    text = repr(samples)
    assert "4111111111111111" not in text and "5500000000000004" not in text
    assert value(samples, "posedge_health_check_status", check="other") == 0
    assert value(samples, "posedge_alerts", alert="other", state="firing") == 1


def test_health_checks_and_alerts_become_gauges(tmp_path: Path) -> None:
    agent = Agent(agent_config(), tmp_path)
    agent.health = FixedHealth(  # type: ignore[assignment]
        [
            CheckResult("printer.paper", Status.OK, "paper loaded"),
            CheckResult("disk.free", Status.WARN, "low", fix="free space", value=1e8),
            CheckResult("reader.present", Status.FAIL, "gone", fix="plug the reader in"),
            CheckResult("sync.clock_skew", Status.SKIP, "no back office"),
        ],
        [
            {"name": "disk.free", "state": "pending", "summary": "low", "labels": {}},
            {"name": "reader.present", "state": "firing", "summary": "gone", "labels": {}},
            {"name": "printer.paper", "state": "flapping", "summary": "x", "labels": {}},
            {"name": "journal.size", "state": "weird", "summary": "x", "labels": {}},
        ],
    )
    samples = scrape(agent)
    assert value(samples, "posedge_health_check_status", check="printer.paper") == 0
    assert value(samples, "posedge_health_check_status", check="disk.free") == 1
    assert value(samples, "posedge_health_check_status", check="reader.present") == 2
    assert value(samples, "posedge_health_check_status", check="sync.clock_skew") == -1
    assert value(samples, "posedge_alerts", alert="disk.free", state="pending") == 1
    assert value(samples, "posedge_alerts", alert="reader.present", state="firing") == 1
    assert value(samples, "posedge_alerts", alert="printer.paper", state="flapping") == 1
    assert value(samples, "posedge_alerts", alert="journal.size", state="other") == 1
    # Not started: no journal, engine or sync families, but the build and health ones.
    build = {"python": platform.python_version(), "version": agent_version()}
    assert value(samples, "posedge_build_info", **build) == 1
    assert not any(name.startswith("posedge_journal_") for name, _ in samples)


def test_without_a_health_monitor_there_are_no_health_families(tmp_path: Path) -> None:
    agent = Agent(agent_config(), tmp_path)
    if hasattr(agent, "health"):
        del agent.health  # the attribute may not exist at all (an older service.py)
    samples = scrape(agent)
    assert not any(name.startswith(("posedge_health", "posedge_alerts")) for name, _ in samples)
    assert value(samples, "posedge_metrics_collect_errors_total", section="health") == 0


def test_a_failing_section_is_counted_and_the_rest_is_served(tmp_path: Path) -> None:
    agent = Agent(agent_config(), tmp_path)
    health = FixedHealth([CheckResult("disk.free", Status.OK, "fine")], [])
    agent.health = health  # type: ignore[assignment]
    registry, _ = build_registry(agent)
    health.fail = True
    samples = parse(generate_latest(registry).decode())[1]
    assert value(samples, "posedge_metrics_collect_errors_total", section="health") == 1
    assert ("posedge_uptime_seconds", ()) in samples
    health.fail = False
    samples = parse(generate_latest(registry).decode())[1]
    assert value(samples, "posedge_health_check_status", check="disk.free") == 0
    assert value(samples, "posedge_metrics_collect_errors_total", section="health") == 1


class CountingReader:
    """A real journal, counting the rows the tail reads from it."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.rows = 0

    def read_raw(
        self, after: int, limit: int
    ) -> list[tuple[int, str, str, str | None, str, str, str]]:
        rows = self.journal.read_raw(after, limit)
        self.rows += len(rows)
        return rows


def test_the_tail_reads_only_events_since_the_last_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcomes_module, "PAGE_ROWS", 100)
    with Journal.open(tmp_path) as journal:
        for n in range(300):
            journal.append("test.event", {"n": n})
        journal.append("agent.started", {"pid": os.getpid(), "version": "t", "simulate": False})
        journal.append("sale.created", {"amount": 5}, txn="t1")
        reader = CountingReader(journal)
        tail = OutcomeTail.since_agent_start(reader, journal.head().seq, os.getpid())
        assert reader.rows <= outcomes_module.PAGE_ROWS  # found in the first page back
        reader.rows = 0
        assert tail.update(reader) == 1 and tail.sales_created == 1
        assert tail.update(reader) == 0
        journal.append("auth.approved", {"attempt": "t1"}, txn="t1")
        journal.append("receipt.printed", {}, txn="t1")
        journal.append("sale.voided", {"reason": "x"}, txn="t1")
        journal.append("forward.expired", {}, txn="t1")
        assert tail.update(reader) == 4
        assert reader.rows == 1 + 0 + 4  # each update read only the rows new to it
        assert tail.sales["approved"] == 1 and tail.sales["voided"] == 1
        assert tail.receipts["printed"] == 1 and tail.forwards["expired"] == 1
        assert tail.sales["declined"] == 0


def test_a_tail_without_its_start_event_counts_from_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcomes_module, "MAX_LOOK_BACK", 250)
    monkeypatch.setattr(outcomes_module, "PAGE_ROWS", 100)
    with Journal.open(tmp_path) as journal:
        journal.append("agent.started", {"pid": os.getpid() + 1, "version": "t"})
        for n in range(500):
            journal.append("sale.created", {"n": n}, txn=f"t{n}")
        reader = CountingReader(journal)
        tail = OutcomeTail.since_agent_start(reader, journal.head().seq, os.getpid())
        assert tail.after == journal.head().seq
        assert reader.rows <= 250 + 100  # bounded look-back, never the whole journal
        assert tail.update(reader) == 0 and tail.sales_created == 0


def test_after_a_long_pause_the_counters_catch_up_in_bounded_steps(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        tail = OutcomeTail(journal.head().seq)
        for n in range(25):
            journal.append("sale.created", {"n": n}, txn=f"t{n}")
        reader = CountingReader(journal)
        assert tail.update(reader, max_rows=10) == 10 and tail.sales_created == 10
        assert reader.rows == 10
        assert tail.update(reader, max_rows=10) == 10 and tail.sales_created == 20
        assert tail.update(reader, max_rows=10) == 5 and tail.sales_created == 25
        assert tail.update(reader, max_rows=10) == 0 and tail.sales_created == 25
