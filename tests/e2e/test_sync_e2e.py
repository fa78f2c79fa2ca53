"""Sync end to end over loopback against the real reference back office.

After every scenario: the back office holds seqs 1..N exactly once with an
unbroken chain, and the agent's cursor is N (``assert_exactly_once``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posedge.agent.alerts import AlertBook
from posedge.agent.journal import JOURNAL_FILE_NAME, Journal
from posedge.agent.sync import SyncService
from posedge.backoffice.app import BackofficeConfig
from posedge.simulator.backoffice import BackofficeServer

from ..agent.journal.test_migrations import BACKLOG, make_v1_journal
from .sync_support import (
    POSEDGE,
    TERMINAL,
    assert_exactly_once,
    fill,
    run_cli,
    write_config,
)
from .sync_support import make_service as build_service


@pytest.fixture
def backoffice(tmp_path: Path) -> BackofficeServer:
    server = BackofficeServer(tmp_path / "bo.sqlite3").start()
    yield server  # type: ignore[misc]
    server.close()


@pytest.fixture
def make_service() -> Iterator[Callable[..., SyncService]]:
    """Build SyncServices against a back office; their HTTP clients are closed after."""
    made: list[SyncService] = []

    def factory(
        journal: Journal, bo: BackofficeServer, state: Path, **settings: object
    ) -> SyncService:
        svc = build_service(journal, bo, state, **settings)
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        svc.client.close()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    jr = Journal.open(tmp_path / "state")
    yield jr  # type: ignore[misc]
    jr.close()


def test_plain_drain(
    backoffice: BackofficeServer,
    journal: Journal,
    tmp_path: Path,
    make_service: Callable[..., SyncService],
) -> None:
    fill(journal, 1000)
    report = make_service(journal, backoffice, tmp_path, batch_events=300).drain()
    assert report.complete and report.batches == 4
    assert_exactly_once(backoffice, journal)


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "error", "endpoint": "events", "rate": 0.4},
        {"kind": "error", "endpoint": "events", "count": 3},
        {"kind": "latency", "endpoint": "events", "latency_s": 0.05, "count": 3},
        {"kind": "status_429", "endpoint": "events", "count": 2, "retry_after_s": 0.2},
        {"kind": "status_503", "endpoint": "events", "count": 2, "retry_after_s": 1,
         "retry_after_form": "date"},
        {"kind": "reset", "endpoint": "events", "count": 3},
        {"kind": "reset", "endpoint": "events", "rate": 0.3},
        {"kind": "down", "endpoint": "*", "duration_s": 0.5},
        {"kind": "down", "endpoint": "*", "duration_s": 0.5, "down_mode": "503"},
        {"kind": "drop_reply", "endpoint": "events", "count": 3},
        {"kind": "drop_reply", "endpoint": "events", "rate": 0.5},
    ],
    ids=lambda rule: "-".join(str(v) for v in rule.values()),
)  # fmt: skip
def test_every_fault_class_ends_exactly_once(
    backoffice: BackofficeServer,
    journal: Journal,
    tmp_path: Path,
    rule: dict[str, object],
    make_service: Callable[..., SyncService],
) -> None:
    fill(journal, 600)
    backoffice.faults.add(rule)
    report = make_service(journal, backoffice, tmp_path, batch_events=100).drain()
    assert report.complete, report.errors
    assert_exactly_once(backoffice, journal)
    if rule["kind"] == "drop_reply":
        assert backoffice.store is not None
        counters = {t.terminal: t.counters for t in backoffice.store.terminal_states()}
        assert counters[TERMINAL].get("duplicates", 0) > 0  # lost acks were resent, absorbed


def test_lost_acknowledgements_never_duplicate(
    backoffice: BackofficeServer,
    journal: Journal,
    tmp_path: Path,
    make_service: Callable[..., SyncService],
) -> None:
    fill(journal, 300)
    backoffice.faults.add({"kind": "drop_reply", "endpoint": "events", "count": 1})
    svc = make_service(journal, backoffice, tmp_path, batch_events=100)
    report = svc.drain()
    assert report.complete
    assert_exactly_once(backoffice, journal)


def test_back_office_restart_mid_sync(
    backoffice: BackofficeServer,
    journal: Journal,
    tmp_path: Path,
    make_service: Callable[..., SyncService],
) -> None:
    fill(journal, 2000)
    restarted = threading.Event()

    def restart_once(acked: int, head: int) -> None:
        if not restarted.is_set():
            restarted.set()
            backoffice.restart()

    report = make_service(journal, backoffice, tmp_path, batch_events=200).drain(
        progress=restart_once
    )
    assert restarted.is_set() and report.complete
    assert_exactly_once(backoffice, journal)


def test_outage_with_thousands_of_events_then_recovery(
    backoffice: BackofficeServer,
    journal: Journal,
    tmp_path: Path,
    make_service: Callable[..., SyncService],
) -> None:
    backoffice.stop()
    fill(journal, 5000)
    svc = make_service(journal, backoffice, tmp_path, batch_events=500)
    report = svc.drain(max_attempts=2, max_wait_s=0.05)
    assert not report.complete and journal.acked_seq() == 0
    assert "ConnectError" in (svc.state.last_error or "")
    backoffice.start()
    report = svc.drain()
    assert report.complete and report.batches == 10
    assert_exactly_once(backoffice, journal)


def test_permanent_rejection_raises_an_alert_and_keeps_the_data(
    tmp_path: Path, make_service: Callable[..., SyncService]
) -> None:
    config = BackofficeConfig(tokens={TERMINAL: "right-token", "other": "other-token"})
    with (
        BackofficeServer(tmp_path / "bo.sqlite3", config=config) as bo,
        Journal.open(tmp_path / "state") as jr,
    ):
        fill(jr, 50)
        for token in (None, "wrong-token", "other-token"):
            svc = make_service(jr, bo, tmp_path, token=token)
            report = svc.drain(max_attempts=3)
            assert report.rejected and not report.complete
            assert jr.acked_seq() == 0
        assert "sync_rejected" in AlertBook(jr).active()
        raised = [e for e in jr.iter_events() if e.type == "alert.raised"]
        assert len(raised) == 1 and raised[0].payload["status"] == 401
        svc = make_service(jr, bo, tmp_path, token="right-token")
        assert svc.drain().complete
        assert "sync_rejected" not in AlertBook(jr).active()
        assert_exactly_once(bo, jr)


def test_schema_upgrade_with_a_backlog_syncs_everything(
    backoffice: BackofficeServer, tmp_path: Path, make_service: Callable[..., SyncService]
) -> None:
    state = tmp_path / "old-state"
    state.mkdir()
    make_v1_journal(state)
    with Journal.open(state) as jr:
        jr.set_acked(0)  # the v1 backlog was never sent to this back office
        svc = make_service(jr, backoffice, tmp_path, batch_events=128)
        assert svc.drain().complete
        assert jr.head().seq == BACKLOG
        assert_exactly_once(backoffice, jr)


def test_invalid_config_restart_leaves_the_backlog_untouched(
    backoffice: BackofficeServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as jr:
        fill(jr, 400)
    before = (state / JOURNAL_FILE_NAME).read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[sync]\nurl = "{backoffice.url}"\nbatch_events = "lots"\n')
    done = run_cli("--state-dir", str(state), "--config", str(bad), "sync", "now")
    assert done.returncode == 2 and "sync.batch_events = 'lots'" in done.stderr
    assert (state / JOURNAL_FILE_NAME).read_bytes() == before
    good = write_config(tmp_path / "good.toml", backoffice.url)
    done = run_cli("--state-dir", str(state), "--config", str(good), "--json", "sync", "now")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["acked_seq"] == 400
    with Journal.open(state) as jr:
        assert_exactly_once(backoffice, jr)


def test_sync_now_exit_codes_and_status(backoffice: BackofficeServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as jr:
        fill(jr, 10)
    config = write_config(tmp_path / "c.toml", "http://127.0.0.1:9")
    done = run_cli("--state-dir", str(state), "--config", str(config), "sync", "now")
    assert done.returncode == 4 and "Connection refused" in done.stdout
    status = run_cli("--state-dir", str(state), "--config", str(config), "--json", "sync", "status")
    doc = json.loads(status.stdout)
    assert doc["backlog"] == 10 and "refused" in doc["last_error"]
    done = run_cli("--state-dir", str(state), "--config", str(config), "sync", "now",
                   "--backoffice", backoffice.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(
        run_cli(
            "--state-dir", str(state), "--config", str(config), "--json", "sync", "status"
        ).stdout
    )
    assert doc["backlog"] == 0 and doc["last_success"] is not None


def test_agent_killed_mid_sync_then_restarted(backoffice: BackofficeServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as jr:
        fill(jr, 3000)
    config = write_config(tmp_path / "c.toml", backoffice.url, batch_events=100)
    backoffice.faults.add({"kind": "latency", "endpoint": "events", "latency_s": 0.05})
    proc = subprocess.Popen(
        [str(POSEDGE), "--state-dir", str(state), "--config", str(config), "sync", "now"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert backoffice.store is not None
    store = backoffice.store
    reached = threading.Event()

    def watch() -> None:  # wait on the back office's own state, not on time
        while proc.poll() is None and not reached.is_set():
            if store.head(TERMINAL)[0] >= 500:
                reached.set()
            else:
                reached.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(timeout=60)
    assert reached.is_set(), "sync never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    backoffice.faults.clear()
    done = run_cli("--state-dir", str(state), "--config", str(config), "sync", "now")
    assert done.returncode == 0, done.stderr
    with Journal.open(state) as jr:
        assert_exactly_once(backoffice, jr)


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Wait on a condition of the system under test (not on time)."""
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if condition():
                return True
            done.wait(0.01)
        return condition()
    finally:
        deadline.cancel()


def test_runner_uploads_new_events_and_sends_heartbeats(
    backoffice: BackofficeServer, journal: Journal, tmp_path: Path,
    make_service: Callable[..., SyncService],
) -> None:  # fmt: skip
    from posedge.agent.sync.runner import SyncRunner

    fill(journal, 20)
    svc = make_service(journal, backoffice, tmp_path, heartbeat_interval="1s")
    runner = SyncRunner(svc, heartbeat_extra=lambda: {"in_doubt_count": 1})
    runner.start()
    try:
        assert backoffice.store is not None
        store = backoffice.store
        assert wait_for(lambda: store.head(TERMINAL)[0] == 20)
        fill(journal, 5, start=20)  # the runner wakes on the append
        assert wait_for(lambda: store.head(TERMINAL)[0] == 25)
        assert wait_for(lambda: runner.heartbeats_sent >= 2)
        states = {t.terminal: t for t in store.terminal_states()}
        beat = states[TERMINAL].heartbeat
        assert beat is not None and beat["in_doubt_count"] == 1
        assert beat["journal_head"]["seq"] >= 20
    finally:
        runner.stop()
    assert_exactly_once(backoffice, journal)


def test_sync_status_lists_the_active_alerts(tmp_path: Path) -> None:
    """A request the back office refuses is an alert a technician sees in `sync status`."""
    state = tmp_path / "state"
    with Journal.open(state) as jr:
        AlertBook(jr).raise_(
            "request_refused:s-1", "sale s-1: the back office refused the reversal (401)"
        )
    config = write_config(tmp_path / "c.toml", "http://127.0.0.1:9")
    args = ("--state-dir", str(state), "--config", str(config))
    doc = json.loads(run_cli(*args, "--json", "sync", "status").stdout)
    assert doc["alerts_active"] is True
    assert [(a["kind"], a["detail"]) for a in doc["alerts"]] == [
        ("request_refused:s-1", "sale s-1: the back office refused the reversal (401)")
    ]
    human = run_cli(*args, "sync", "status").stdout
    assert "request_refused:s-1" in human and "(401)" in human
