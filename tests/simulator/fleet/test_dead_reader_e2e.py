"""A fleet run over loopback with dead readers: the back office receives the terminals'
own evidence (heartbeats with the reader's state and health alerts, the failed swipes in
the events) and the alert engine turns it into device_fault and card_read_failed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posedge.backoffice.alerting.engine import evaluate, list_alerts
from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer
from posedge.simulator.fleet.faults import parse_fault
from posedge.simulator.fleet.model import build_fleet
from posedge.simulator.fleet.runner import FleetRunner, RunOptions

START_S = datetime(2026, 2, 2, 8, tzinfo=UTC).timestamp()  # Monday 08:00 UTC
END_S = START_S + 5 * 3600
FLEET = build_fleet(4, 1, seed=4, hours="convenience")


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    with BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig()) as server:
        yield server


def test_dead_readers_reach_the_back_office_as_device_alerts(backoffice: BackofficeServer) -> None:
    lanes = FLEET.terminals
    faults = [
        parse_fault(f"dead-reader=unplugged:{lanes[1]}@+2h", FLEET, START_S),
        parse_fault(f"dead-reader=worn-head:{lanes[2]}@+2h", FLEET, START_S),
        parse_fault(f"dead-reader=no-evidence:{lanes[3]}@+2h", FLEET, START_S),
    ]
    options = RunOptions(backoffice=backoffice.url, start=START_S, end=END_S, speed=None,
                         heartbeat_interval_s=60, upload_interval_s=600)  # fmt: skip
    report = asyncio.run(FleetRunner(FLEET, options, faults=faults).run())
    assert sum(lane["sales"] for lane in report["terminals"]) > 0
    store = backoffice.store
    assert store is not None
    beats = {s.terminal: s.heartbeat for s in store.terminal_states()}
    assert beats[lanes[1]]["devices"]["reader"]["state"] == "unavailable"
    assert beats[lanes[0]]["devices"]["reader"]["state"] == "ok"
    evaluate(store, now=END_S, signals=lambda s, n: [])
    # (A replay's heartbeats are dated in simulated time: clock_skew alerts are expected.)
    alerts = {
        a["fingerprint"]: a
        for a in list_alerts(store, state="firing")
        if a["alertname"] != "clock_skew"
    }
    assert set(alerts) == {
        f"device_fault/{lanes[1]}",
        f"device_fault/{lanes[2]}",
        f"card_read_failed/{lanes[2]}",
    }
    assert alerts[f"device_fault/{lanes[1]}"]["summary"].endswith("the card reader is disconnected")
    assert "swipes could not be read" in alerts[f"device_fault/{lanes[2]}"]["summary"]
