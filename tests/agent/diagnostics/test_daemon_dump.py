"""SIGUSR1 and ``posedge devices dump`` against a real ``posedge run --simulate`` process."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from posedge.agent.diagnostics.dump import parse_dump
from posedge.agent.diagnostics.files import list_dumps
from tests.e2e.daemon_support import POSEDGE, Daemon, create_sale, wait_final, wait_until

SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)


def sale_succeeds(daemon: Daemon) -> None:
    with daemon.client() as http:
        sale = create_sale(http)
        done = wait_final(http, sale["id"])
    assert done["final"] and done["state"] == "approved", done


def test_sigusr1_writes_dumps_and_the_daemon_keeps_selling(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Daemon(state) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            reply = http.post("/v1/simulator/printer", json={"fault": "paper_near_end"})
            assert reply.status_code == 200, reply.text
        for n in range(1, 4):
            daemon.signal(signal.SIGUSR1)
            assert wait_until(lambda: len(list_dumps(state)) >= n, 20), daemon.stderr_lines  # noqa: B023
            assert daemon.proc.poll() is None
        dumps = list_dumps(state)
        assert stat.S_IMODE(os.stat(state / "dumps").st_mode) == 0o700
        assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in dumps)
        doc = json.loads(dumps[-1].read_text())
        parsed = parse_dump(doc)
        assert doc["reason"] == "signal" and doc["agent"]["source"] == "daemon"
        printer = parsed.devices["printer"]
        assert printer.reachable is True and printer.status is not None
        assert printer.status["warnings"] == ["paper_near_end"]
        assert parsed.devices["reader"].status == {
            "online": True, "state": "unknown", "protocol": "magtek"}  # fmt: skip
        assert wait_until(
            lambda: any(str(dumps[-1]) in line for line in daemon.stderr_lines), 10
        ), "the log names the dump file"
        sale_succeeds(daemon)
        assert daemon.notify.count("READY") >= 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


def test_devices_dump_asks_the_running_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Daemon(state) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            assert http.post("/v1/simulator/printer", json={"fault": "cover_open"}).is_success
            anonymous = http.get("/v1/devices/dump", headers={"Authorization": ""})
            assert anonymous.status_code == 401
        run = subprocess.run(
            [str(POSEDGE), "--state-dir", str(state), "--json", "devices", "dump"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        # The daemon's own simulated printer (cover open): a device this command had
        # opened itself would be a fresh, healthy one.
        assert doc["reason"] == "api" and doc["agent"]["pid"] == daemon.proc.pid
        assert doc["devices"]["printer"]["status"]["faults"] == ["cover_open"]
        human = subprocess.run(
            [str(POSEDGE), "--state-dir", str(state), "devices", "dump"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert human.returncode == 0, human.stderr
        written = Path(human.stdout.splitlines()[0].removeprefix("device dump written to "))
        assert written.parent == state / "dumps" and "NOT READY (cover_open)" in human.stdout
        sale_succeeds_after_clear(daemon)


def sale_succeeds_after_clear(daemon: Daemon) -> None:
    with daemon.client() as http:
        assert http.post("/v1/simulator/printer", json={"fault": "clear"}).is_success
    sale_succeeds(daemon)


def sigusr1_ignored(pid: int) -> bool:
    """SIGUSR1 is ignored in ``pid`` (the daemon's code ran, its handler is not installed
    yet: asyncio's handler makes it caught, not ignored), read from /proc."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":\t")
        if key == "SigIgn":
            return bool(int(value, 16) & SIGUSR1_BIT)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_sigusr1_during_start_up_cannot_kill_the_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Daemon(state) as daemon:
        pid = daemon.proc.pid
        # From the moment its code runs (SIGUSR1 ignored) until READY, signal it again and
        # again: before the fix the first one killed it.
        assert wait_until(lambda: sigusr1_ignored(pid), 30), "SIGUSR1 never ignored at start"
        sent = 0
        deadline = time.monotonic() + 60
        while daemon.notify.count("READY") == 0 and daemon.proc.poll() is None:
            assert time.monotonic() < deadline, "no READY"
            os.kill(pid, signal.SIGUSR1)
            sent += 1
            daemon.notify.wait_for(lambda m: m.get("READY") == "1", 0.02)
        assert daemon.proc.poll() is None, "".join(daemon.stderr_lines[-20:])
        assert sent >= 5
        daemon.wait_ready()
        sale_succeeds(daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
