"""``posedge run`` end to end, the way systemd runs it (issue 6, "Tests that must exist").

Every test starts the real daemon as a subprocess (``--simulate``: virtual printer
and reader, embedded back office) with ``NOTIFY_SOCKET`` on a datagram socket the
test owns. Tests synchronise on notify messages, the till API and the journal —
never on sleeps. The only waits without a positive event are the "pings have
stopped" checks, which by nature need a window of silence.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.agent.daemon.lockfile import LOCK_FILE_NAME
from posedge.agent.errors import ConfigError
from posedge.agent.journal import Journal
from posedge.agent.runloop import (
    HEARTBEAT_MAX_STALE_S,
    STOP_TIMEOUT_S,
    TEST_STALE_ENV,
    heartbeat_max_stale,
)
from posedge.agent.sales.engine import CRASH_HOOK_ENV

from .daemon_support import POSEDGE, Daemon, create_sale, wait_final, wait_until

WATCHDOG_USEC = 2_000_000
"""systemd's WatchdogSec=2s: the daemon must ping every second."""
PING_INTERVAL_S = 1.0
STALE_S = 2.0
"""The shortened staleness of the stalled heartbeat (POSEDGE_TEST_HEARTBEAT_STALE_S)."""
STATUS_LINE = re.compile(r"ready · printer \w+ · reader \w+ · backlog \d+ · in-doubt \d+")


# ------------------------------------------------------------------ helpers
def is_ready(message: dict[str, str]) -> bool:
    return message.get("READY") == "1"


def index_of(daemon: Daemon, predicate: Any, after: int = 0) -> int | None:
    """Index of the first collected notify message at or after ``after`` matching."""
    for index, (_, fields) in enumerate(list(daemon.notify.messages)):
        if index >= after and predicate(fields):
            return index
    return None


def events(state_dir: Path) -> list[dict[str, Any]]:
    """Every journal event, read through a read-only connection (the daemon may run)."""
    with Journal.open(state_dir, readonly=True) as journal:
        return [event.as_dict() for event in journal.iter_events()]


def sale_row(state_dir: Path, sale_id: str) -> dict[str, Any]:
    with Journal.open(state_dir, readonly=True) as journal:
        row = journal.transactions.get(sale_id)
    assert row is not None, f"sale {sale_id} is not in the journal"
    return row


def types_for(evs: list[dict[str, Any]], txn: str) -> list[str]:
    return [event["type"] for event in evs if event["txn"] == txn]


def simulator(http: httpx.Client, device: str, body: dict[str, Any]) -> None:
    response = http.post(f"/v1/simulator/{device}", json=body)
    assert response.status_code == 200, response.text


def write_config(path: Path, *, max_per_sale_eur: int, extra: str = "") -> Path:
    path.write_text(
        "[sales]\n"
        'void_alert_window = "60s"\n'
        "[offline]\n"
        f"max_per_sale = {{ EUR = {max_per_sale_eur} }}\n"
        "max_total = { EUR = 100000 }\n" + extra
    )
    return path


def offline_sale(http: httpx.Client, amount: int) -> dict[str, Any]:
    """A sale while the back office is powered off: decided by the offline policy alone."""
    sale = create_sale(http, amount=amount)
    done = wait_final(http, sale["id"])
    assert done["final"], done
    return done


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ------------------------------------------------------------------ readiness
def test_ready_only_after_journal_recovery_and_api(state_dir: Path) -> None:
    with Daemon(state_dir) as daemon:
        ready = daemon.notify.wait_for(is_ready, 30.0)
        assert ready is not None, "".join(daemon.stderr_lines)
        # Checked the moment READY=1 arrives: the API already accepts connections...
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(state_dir / "api.sock"))
        finally:
            probe.close()
        # ...and the journal already holds agent.started.
        assert "agent.started" in [event["type"] for event in events(state_dir)]
        # STATUS= rides on READY=1: a one-line human summary, not "starting".
        status = ready["STATUS"]
        assert STATUS_LINE.fullmatch(status), status
        # Nothing claimed readiness or stopping before this READY=1.
        first_ready = index_of(daemon, is_ready)
        assert first_ready is not None
        assert not any("STOPPING" in m for _, m in daemon.notify.messages[:first_ready])
        # STATUS= is kept current: the first device poll's result shows up.
        assert daemon.notify.wait_for(lambda m: "printer ok" in m.get("STATUS", ""), 15.0)
        daemon.wait_ready(0)  # reads where the API is
        with daemon.client() as http:
            assert http.get("/v1/status").status_code == 200
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


# ------------------------------------------------------------------ watchdog
def test_watchdog_pings_at_half_the_watchdog_interval(state_dir: Path) -> None:
    with Daemon(state_dir, watchdog_usec=WATCHDOG_USEC) as daemon:
        daemon.wait_ready()
        ready_index = index_of(daemon, is_ready)
        assert ready_index is not None
        ready_at = daemon.notify.messages[ready_index][0]
        wanted = 6
        assert wait_until(
            lambda: len([t for t in daemon.notify.times("WATCHDOG") if t >= ready_at]) >= wanted,
            timeout_s=wanted * PING_INTERVAL_S * 3,
        ), "too few watchdog pings after READY=1"
        times = [t for t in daemon.notify.times("WATCHDOG") if t >= ready_at][:wanted]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        rate = (len(times) - 1) / (times[-1] - times[0])
        # About one ping per second (half of WatchdogSec=2s), never a gap long
        # enough for systemd to kill us, never a burst.
        assert 0.75 <= rate <= 1.3, f"rate {rate:.2f}/s, gaps {gaps}"
        assert 0.8 <= statistics.median(gaps) <= 1.25, gaps
        assert max(gaps) < WATCHDOG_USEC / 1e6, gaps
        assert min(gaps) > 0.4, gaps
        assert all(m.get("WATCHDOG") == "1" for _, m in daemon.notify.messages if "WATCHDOG" in m)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


def test_heartbeat_staleness_override_parses_and_refuses_nonsense() -> None:
    assert heartbeat_max_stale({}) == HEARTBEAT_MAX_STALE_S
    limits = heartbeat_max_stale({TEST_STALE_ENV: "devices=2, sales=0.5"})
    assert limits == {**HEARTBEAT_MAX_STALE_S, "devices": 2.0, "sales": 0.5}
    for bad in ("devices", "devices=0", "devices=x", "printer=2"):
        with pytest.raises(ConfigError, match=TEST_STALE_ENV):
            heartbeat_max_stale({TEST_STALE_ENV: bad})


@pytest.mark.parametrize("task", ["devices", "sales"])
def test_watchdog_pings_stop_when_a_critical_task_stalls(state_dir: Path, task: str) -> None:
    env = {"POSEDGE_TEST_STALL": task, TEST_STALE_ENV: f"{task}={STALE_S}"}
    with Daemon(state_dir, watchdog_usec=WATCHDOG_USEC, env=env) as daemon:
        daemon.wait_ready()
        ready_index = index_of(daemon, is_ready)
        assert ready_index is not None
        ready_at = daemon.notify.messages[ready_index][0]
        stuck = daemon.notify.wait_for(
            lambda m: f"{task} stuck" in m.get("STATUS", ""), STALE_S + 10.0
        )
        assert stuck is not None, "STATUS never named the stuck task"
        assert "watchdog:" in stuck["STATUS"]
        stuck_index = index_of(daemon, lambda m: f"{task} stuck" in m.get("STATUS", ""))
        assert stuck_index is not None
        stuck_at = daemon.notify.messages[stuck_index][0]
        # Healthy before the stale period: pings flowed after READY=1...
        pings = daemon.notify.times("WATCHDOG")
        assert any(ready_at <= t < stuck_at for t in pings), "no ping while still healthy"
        assert stuck_at - ready_at <= STALE_S + 3.0
        # ...and none for three intervals after the stall was detected.
        late = daemon.notify.wait_for(lambda m: "WATCHDOG" in m, 3 * PING_INTERVAL_S, stuck_index)
        assert late is None, "watchdog pings continued while a critical task was stuck"
        # The process is alive and still serving: systemd, not the agent, ends it.
        assert daemon.proc.poll() is None
        with daemon.client() as http:
            assert http.get("/v1/status").status_code == 200
        # Logged before the pings stopped; read from the daemon's stderr pipe by a thread.
        assert wait_until(
            lambda: any(f"task {task} made no progress" in line for line in daemon.stderr_lines),
            10.0,
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


# ------------------------------------------------------------------ SIGTERM
def test_sigterm_cancels_the_sale_waiting_for_a_card(state_dir: Path) -> None:
    with Daemon(state_dir) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            simulator(http, "reader", {"fault": "no_card"})
            sale = create_sale(http)
            assert sale["state"] == "created"
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.notify.wait_for(lambda m: m.get("STOPPING") == "1", 10.0) is not None
        assert daemon.wait_exit(STOP_TIMEOUT_S) == 0
        assert time.monotonic() - started < STOP_TIMEOUT_S
    evs = events(state_dir)
    row = sale_row(state_dir, sale["id"])
    assert row["state"] == "cancelled", row
    cancelled = [e for e in evs if e["txn"] == sale["id"] and e["type"] == "sale.cancelled"]
    assert [e["payload"]["reason"] for e in cancelled] == ["agent stopping"]
    assert evs[-1]["type"] == "agent.stopped"
    assert cancelled[0]["seq"] < evs[-1]["seq"]


def test_sigterm_during_a_slow_authorization_waits_for_the_outcome(state_dir: Path) -> None:
    latency_s = 2.0
    with Daemon(state_dir) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            simulator(
                http,
                "backoffice",
                {"kind": "latency", "endpoint": "authorizations", "latency_s": latency_s},
            )
            sale = create_sale(http)
            assert wait_until(
                lambda: http.get(f"/v1/sales/{sale['id']}").json()["state"] == "authorizing",
                timeout_s=10.0,
            ), "the sale never reached the back office"
        asked_at = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.notify.wait_for(lambda m: m.get("STOPPING") == "1", 10.0) is not None
        assert daemon.wait_exit(STOP_TIMEOUT_S) == 0
        assert time.monotonic() - asked_at < STOP_TIMEOUT_S
    evs = events(state_dir)
    assert evs[-1]["type"] == "agent.stopped"
    outcome = sale_row(state_dir, sale["id"])
    # The daemon waited for the host's answer: the outcome is journaled before
    # agent.stopped (parking it as in doubt would also be correct; recovery then
    # reverses it at the next start).
    assert outcome["state"] in ("approved", "in_doubt", "reversed"), outcome
    with Daemon(state_dir) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            after = wait_final(http, sale["id"])
        assert after["final"], after
        assert after["state"] in ("approved", "reversed"), after
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


# ------------------------------------------------------------------ SIGHUP
def reload(daemon: Daemon) -> None:
    """SIGHUP, then RELOADING=1 followed by READY=1 again."""
    mark = len(daemon.notify.messages)
    daemon.signal(signal.SIGHUP)
    assert daemon.notify.wait_for(lambda m: m.get("RELOADING") == "1", 10.0, mark) is not None
    reloading = index_of(daemon, lambda m: m.get("RELOADING") == "1", mark)
    assert reloading is not None
    assert "MONOTONIC_USEC" in daemon.notify.messages[reloading][1]
    assert daemon.notify.wait_for(is_ready, 10.0, reloading + 1) is not None


def test_sighup_with_a_valid_file_applies_the_new_offline_limit(
    state_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "posedge.toml", max_per_sale_eur=10000)
    with Daemon(state_dir, config=config) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            simulator(http, "backoffice", {"power": "off"})
            assert offline_sale(http, 1000)["state"] == "approved_offline"
            write_config(config, max_per_sale_eur=500)
            reload(daemon)
            changes = [e for e in events(state_dir) if e["type"] == "config.changed"]
            assert [c["payload"]["changed"] for c in changes] == [["offline"]]
            assert changes[0]["payload"]["restart_required"] == []
            declined = offline_sale(http, 1000)
            assert declined["state"] == "declined", declined
            assert offline_sale(http, 400)["state"] == "approved_offline"
        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("[offline]\nmax_count = -5\n", "offline.max_count"),
        ("[offline\nmax_count = 5\n", "not valid TOML"),
    ],
    ids=["bad-value", "bad-toml"],
)
def test_sighup_with_an_invalid_file_keeps_the_old_configuration(
    state_dir: Path, tmp_path: Path, broken: str, named: str
) -> None:
    config = write_config(tmp_path / "posedge.toml", max_per_sale_eur=500)
    with Daemon(state_dir, config=config) as daemon:
        daemon.wait_ready()
        config.write_text(broken)
        reload(daemon)
        # Logged before READY=1 came back; the stderr pipe is read by a thread of ours.
        wait_until(lambda: any("reload rejected" in line for line in daemon.stderr_lines), 10.0)
        rejected = [line for line in daemon.stderr_lines if "reload rejected" in line]
        assert rejected and named in rejected[0], "".join(daemon.stderr_lines[-10:])
        evs = events(state_dir)
        alerts = [e["payload"] for e in evs if e["type"] == "alert.raised"]
        assert any(a["kind"] == "config_invalid" and named in a["detail"] for a in alerts), alerts
        assert not [e for e in evs if e["type"] == "config.changed"]
        # The old limit (500) is still in force: the built-in default (10000)
        # would approve 1000 offline.
        with daemon.client() as http:
            simulator(http, "backoffice", {"power": "off"})
            assert offline_sale(http, 1000)["state"] == "declined"
        assert daemon.proc.poll() is None
        # Fixing the file clears the alert.
        write_config(config, max_per_sale_eur=500)
        reload(daemon)
        assert "alert.cleared" in [e["type"] for e in events(state_dir)]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


# ------------------------------------------------------------------ crash + restart
@pytest.mark.parametrize("moment", ["waiting-for-card", "authorizing"])
def test_sigkill_then_restart_recovers_before_ready(state_dir: Path, moment: str) -> None:
    env = {CRASH_HOOK_ENV: "auth.requested"} if moment == "authorizing" else {}
    with Daemon(state_dir, env=env) as daemon:
        daemon.wait_ready()
        pid = daemon.proc.pid
        with daemon.client() as http:
            if moment == "waiting-for-card":
                simulator(http, "reader", {"fault": "no_card"})
            sale = create_sale(http)
        if moment == "waiting-for-card":
            daemon.proc.kill()
        assert daemon.wait_exit(15.0) == -signal.SIGKILL
    # What the killed process left behind must not block the next start.
    assert (state_dir / "api.sock").exists()
    assert (state_dir / LOCK_FILE_NAME).read_text().strip() == str(pid)
    assert sale_row(state_dir, sale["id"])["state"] in ("created", "authorizing")
    with Daemon(state_dir) as daemon:
        daemon.notify.wait_for(is_ready, 30.0)
        # Recovery was complete when READY=1 was sent.
        row = sale_row(state_dir, sale["id"])
        daemon.wait_ready(0)
        expected = "abandoned" if moment == "waiting-for-card" else "reversed"
        assert row["state"] == expected, row
        kinds = types_for(events(state_dir), sale["id"])
        if moment == "authorizing":
            assert kinds[:6] == ["sale.created", "card.read", "auth.requested", "auth.unknown",
                                 "reversal.requested", "sale.reversed"], kinds  # fmt: skip
        else:
            assert kinds[:2] == ["sale.created", "sale.abandoned"], kinds
        assert [e["type"] for e in events(state_dir)].count("agent.started") == 2
        assert (state_dir / LOCK_FILE_NAME).read_text().strip() == str(daemon.proc.pid)
        with daemon.client() as http:
            assert http.get(f"/v1/sales/{sale['id']}").json()["state"] == expected
            fresh = wait_final(http, create_sale(http, amount=777)["id"])
            assert fresh["state"] == "approved", fresh
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


def test_a_second_daemon_on_the_same_state_dir_is_refused(state_dir: Path) -> None:
    with Daemon(state_dir) as first:
        first.wait_ready()
        second = subprocess.run(
            [str(POSEDGE), "--state-dir", str(state_dir), "run", "--simulate"],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        )
        assert second.returncode == 2, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        # The refused daemon touched nothing: the first still serves its socket.
        with first.client() as http:
            assert http.get("/v1/status").status_code == 200
        assert [e["type"] for e in events(state_dir)].count("agent.started") == 1
        first.signal(signal.SIGTERM)
        assert first.wait_exit() == 0
