"""``posedge doctor`` with a real daemon (``posedge run --simulate`` as a subprocess).

The doctor asks the daemon over the till API for its live check results and never opens
a device itself (a simulated printer registered in this process counts every byte the
doctor would send); a daemon whose task is stuck fails ``daemon.watchdog``; a daemon that
holds the state directory but does not answer (stopped with SIGSTOP) is exit 4.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.config import Config, load_config
from posedge.agent.health.checks import REGISTRY
from posedge.agent.health.doctor import DoctorReport, run_doctor
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.printer import VirtualPrinter
from tests.e2e.daemon_support import Daemon, wait_until

from .test_doctor import check_lines, doctor

WATCHED = "doctor-watched-printer"


@pytest.fixture
def watched_printer() -> Iterator[VirtualPrinter]:
    printer = VirtualPrinter()
    register_sim_device(WATCHED, printer)
    try:
        yield printer
    finally:
        unregister_sim_device(WATCHED)


def watched_config(tmp_path: Path) -> Config:
    path = tmp_path / "doctor.toml"
    path.write_text(f'[printer]\nurl = "sim://{WATCHED}"\npoll_timeout = "300ms"\n')
    return load_config(path).config


def test_with_a_daemon_the_doctor_asks_it_and_touches_no_device(
    tmp_path: Path, watched_printer: VirtualPrinter
) -> None:
    state_dir = tmp_path / "state"
    config = watched_config(tmp_path)
    # As under systemd: the socket is in the daemon's RUNTIME_DIRECTORY, which the doctor's
    # environment does not name (it reads the daemon's).
    run_dir = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))  # sun_path: 108 bytes
    with Daemon(state_dir, env={"RUNTIME_DIRECTORY": str(run_dir)}) as daemon:
        daemon.wait_ready()
        assert daemon.where["socket"] == str(run_dir / "api.sock")
        assert "RUNTIME_DIRECTORY" not in os.environ
        # The daemon's health monitor has run its checks once it reports them.
        with daemon.client() as http:
            assert wait_until(lambda: len(http.get("/v1/status").json()["health"]["checks"])
                              >= len(REGISTRY.names()) - 1)  # fmt: skip
        report = run_doctor(config, state_dir)
        assert watched_printer.received_total == 0  # not one byte to the configured printer
        assert report.mode == "daemon" and report.daemon_pid == daemon.proc.pid
        sources = {f.result.name: f.source for f in report.findings}
        assert {sources[name] for name in REGISTRY.names()} == {"daemon"}
        done = doctor(state_dir, None, "--json")
    doc = json.loads(done.stdout)
    assert doc["mode"] == "daemon" and doc["daemon_pid"] == daemon.proc.pid
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["daemon.running"]["status"] == "ok"
    assert by_name["daemon.watchdog"]["status"] == "ok"
    assert by_name["backoffice.link"]["status"] == "ok"  # the embedded back office
    assert by_name["journal.verify"]["status"] == "ok"
    assert by_name["printer.paper"]["status"] == "ok"
    assert by_name["printer.paper"]["source"] == "daemon"
    assert doc["exit_code"] == done.returncode
    # The same call without a daemon opens the configured printer: the count above is real.
    local = run_doctor(config, state_dir, ["printer.online"])
    assert local.mode == "local" and watched_printer.received_total > 0
    assert [f.result.status.value for f in local.findings] == ["ok"]
    shutil.rmtree(run_dir)


def _watchdog(report: DoctorReport) -> str:
    (finding,) = report.findings
    return finding.result.status.value


def test_a_stuck_task_fails_the_watchdog_check(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {"POSEDGE_TEST_STALL": "sales", "POSEDGE_TEST_HEARTBEAT_STALE_S": "sales=1"}
    with Daemon(state_dir, env=env) as daemon:
        daemon.wait_ready()
        config = Config()
        assert wait_until(
            lambda: _watchdog(run_doctor(config, state_dir, ["daemon.watchdog"])) == "fail"
        )
        done = doctor(state_dir, None, "daemon")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = check_lines(done.stdout)
    assert lines["daemon.running"][0] == "✓"
    symbol, summary, fix = lines["daemon.watchdog"]
    assert symbol == "✗" and "sales stuck" in summary
    assert fix and "systemctl restart posedge" in fix


def test_a_daemon_that_holds_the_state_dir_but_does_not_answer_is_exit_4(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    with Daemon(state_dir) as daemon:
        daemon.wait_ready()
        daemon.signal(signal.SIGSTOP)
        try:
            done = doctor(state_dir, None, "--json")
        finally:
            daemon.signal(signal.SIGCONT)
    assert done.returncode == 4, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["mode"] == "unreachable" and doc["exit_code"] == 4
    by_name = {c["name"]: c for c in doc["checks"]}
    running = by_name["daemon.running"]
    assert running["status"] == "fail" and running["details"]["unreachable"] is True
    assert "does not answer" in running["summary"]
    for name in REGISTRY.names():  # the daemon holds the devices: not opened, not checked
        assert by_name[name]["status"] == "skip", name
        assert "does not answer" in by_name[name]["summary"]


def test_the_doctor_gets_results_run_now_not_the_last_poll(tmp_path: Path) -> None:
    """Polls and checks an hour apart: only a run on request can see a fault made now."""
    state_dir = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text('[health]\npoll_interval = "1h"\ncheck_interval = "1h"\n')
    with Daemon(state_dir, config=config) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            fault = http.post("/v1/simulator/printer", json={"fault": "paper_out"})
            assert fault.status_code == 200, fault.text
            done = doctor(state_dir, config, "--json", "printer.paper")
            (paper,) = json.loads(done.stdout)["checks"]
            assert done.returncode == 3 and paper["status"] == "fail", paper
            assert paper["source"] == "daemon" and paper["fix"] == "load a new paper roll"
            assert http.post("/v1/simulator/printer", json={"fault": "clear"}).status_code == 200
            done = doctor(state_dir, config, "--json", "printer")
            assert done.returncode == 0, done.stdout
            assert {c["status"] for c in json.loads(done.stdout)["checks"]} == {"ok"}
            # the endpoint itself: names checked, the token required
            bad = http.get("/v1/health/checks", params={"name": "printer.papr"})
            assert bad.status_code == 400
            assert "printer.papr" in bad.json()["detail"]
            assert "printer.paper" in bad.json()["detail"]
            anonymous = http.get("/v1/health/checks", headers={"Authorization": ""})
            assert anonymous.status_code == 401
            one = http.get("/v1/health/checks", params={"name": "disk.free"}).json()
            assert [c["name"] for c in one["checks"]] == ["disk.free"]
            assert isinstance(one["alerts"], list)
