"""The health monitor's bookkeeping: results, alerts, journaled transitions, run_now."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.config import Config
from posedge.agent.health import CheckRegistry, CheckResult, HealthContext, Status
from posedge.agent.health.monitor import HealthMonitor
from posedge.agent.journal import Journal
from posedge.protocol.models import HealthSummary

from .conftest import config


@dataclass
class Stage:
    """What the monitor reads from the agent: its configuration, state dir and journal."""

    config: Config
    state_dir: Path
    journal: Journal
    printer: Any = None
    reader: Any = None
    engine: Any = None
    sync: Any = None


@dataclass
class Feed:
    """Values the scripted checks report, one per run."""

    free: list[float] = field(default_factory=list)
    paper: list[Status] = field(default_factory=list)


def scripted_registry(feed: Feed) -> CheckRegistry:
    registry = CheckRegistry()

    @registry.check("disk.free", "scripted free bytes")
    def disk(ctx: HealthContext) -> CheckResult:
        value = feed.free.pop(0)
        health = ctx.config.health
        status = Status.WARN if value <= health.number("disk_free_warn") else Status.OK
        return CheckResult("disk.free", status, f"{value:.0f} bytes free",
                           fix="free some space" if status is not Status.OK else None,
                           value=value)  # fmt: skip

    @registry.check("printer.paper", "scripted paper state")
    def paper(ctx: HealthContext) -> CheckResult:
        status = feed.paper.pop(0)
        fix = None if status is Status.OK else "load paper"
        return CheckResult("printer.paper", status, f"paper {status}", fix=fix)

    return registry


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path) as opened:
        yield opened


def monitor(tmp_path: Path, journal: Journal, feed: Feed, clock: list[float],
            **health: Any) -> HealthMonitor:  # fmt: skip
    stage = Stage(config(health=health), tmp_path, journal)
    return HealthMonitor(stage, registry=scripted_registry(feed), clock=lambda: clock[0])


def events(journal: Journal, type_: str) -> list[dict[str, Any]]:
    return [dict(e.payload) for e in journal.iter_events() if e.type == type_]


def test_value_alert_fires_after_for_and_clears_past_the_clear_line(
    tmp_path: Path, journal: Journal
) -> None:
    gib = 1024.0**3
    # warn at 1 GiB free; clears only above 2 GiB (hysteresis), 10 s of "for"
    feed = Feed(free=[5 * gib, 0.5 * gib, 0.5 * gib, 0.5 * gib, 1.5 * gib, 2.5 * gib])
    clock = [1000.0]
    mon = monitor(tmp_path, journal, feed, clock, alert_for="10s", keep_firing_for="0s",
                  disk_free_clear="2GiB", flap_changes=0)  # fmt: skip
    states = []
    for step in (0, 1, 5, 10, 1, 1):
        clock[0] += step
        mon.run_now(["disk.free"])
        states.append([a["state"] for a in mon.alerts()])
    assert states == [[], ["pending"], ["pending"], ["firing"], ["firing"], []]
    [fired] = events(journal, "alert.firing")
    assert fired["name"] == "disk.free" and fired["value"] == 0.5 * gib
    assert fired["labels"] == {"check": "disk.free", "severity": "warning"}
    [resolved] = events(journal, "alert.resolved")
    assert resolved["previous"] == "firing" and resolved["value"] == 2.5 * gib
    assert resolved["duration_s"] == 2.0


def test_flapping_check_becomes_one_flapping_alert(tmp_path: Path, journal: Journal) -> None:
    flips = [Status.FAIL, Status.OK] * 4
    feed = Feed(paper=list(flips))
    clock = [0.0]
    mon = monitor(tmp_path, journal, feed, clock, alert_for="0s", keep_firing_for="0s",
                  flap_changes=4, flap_window="10m", flap_stable="10m")  # fmt: skip
    for _ in flips:
        clock[0] += 5
        mon.run_now(["printer.paper"])
    [alert] = mon.alerts()
    assert alert["state"] == "flapping" and alert["name"] == "printer.paper"
    fired = events(journal, "alert.firing")
    assert [e["state"] for e in fired] == ["firing", "firing", "flapping"]
    assert len(events(journal, "alert.resolved")) == 1  # only before it was seen to flap


def test_results_in_registration_order_and_status_block_fits_the_heartbeat(
    tmp_path: Path, journal: Journal
) -> None:
    feed = Feed(free=[10.0], paper=[Status.FAIL])
    mon = monitor(tmp_path, journal, feed, [0.0], alert_for="0s")
    assert mon.results() == [] and mon.alerts() == []
    mon.run_now()
    assert [r.name for r in mon.results()] == ["disk.free", "printer.paper"]
    block = mon.status_block()
    summary = HealthSummary.model_validate(block)
    assert {a.name for a in summary.alerts} == {"disk.free", "printer.paper"}
    assert all(a.since.endswith("+00:00") for a in summary.alerts)


def test_run_now_rejects_unknown_names_before_running_anything(
    tmp_path: Path, journal: Journal
) -> None:
    mon = monitor(tmp_path, journal, Feed(), [0.0])
    with pytest.raises(KeyError, match=r"no health check named 'disk\.fre'"):
        mon.run_now(["disk.fre"])
    assert mon.runs == 0


def test_run_now_from_many_threads(tmp_path: Path, journal: Journal) -> None:
    runs = 40
    feed = Feed(free=[10.0 * 1024**4] * runs)
    mon = monitor(tmp_path, journal, feed, [0.0])
    threads = [threading.Thread(target=mon.run_now, args=(["disk.free"],)) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mon.runs == runs and feed.free == []
