"""``posedge simulate card|fault`` steer a running ``posedge run --simulate``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .daemon_support import POSEDGE, Daemon, create_sale, wait_final, wait_until


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POSEDGE), "--state-dir", str(state), *args], capture_output=True, text=True, timeout=60
    )


def test_cards_and_faults_reach_the_running_simulation(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Daemon(state) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            done = cli(state, "simulate", "card", "--pan", "5555555555554444")
            assert done.returncode == 0, done.stderr
            sale = wait_final(http, create_sale(http)["id"])
            assert (sale["state"], sale["brand"]) == ("approved", "mastercard")

            assert cli(state, "simulate", "fault", "printer", "paper_out").returncode == 0
            sale = wait_final(http, create_sale(http, 1500)["id"])
            assert sale["state"] == "approved"

            def receipt() -> str:
                return str(http.get(f"/v1/sales/{sale['id']}").json()["receipt"]["state"])

            assert wait_until(lambda: receipt() not in ("pending", "printing"))
            assert receipt() == "failed"
            assert cli(state, "simulate", "fault", "printer", "clear").returncode == 0

            assert cli(state, "simulate", "fault", "backoffice", "power", "off").returncode == 0
            sale = wait_final(http, create_sale(http, 1600)["id"])
            assert sale["state"] == "approved_offline"
            assert cli(state, "simulate", "fault", "backoffice", "power", "on").returncode == 0

            bad = cli(state, "simulate", "fault", "backoffice", "power", "sideways")
            assert bad.returncode == 2 and "power off" in bad.stderr
            unknown = cli(state, "simulate", "fault", "printer", "melt")
            assert unknown.returncode == 2 and "melt" in unknown.stderr


def test_without_a_running_agent_it_says_so(tmp_path: Path) -> None:
    done = cli(tmp_path / "nothing-here", "simulate", "card", "--unreadable")
    assert done.returncode == 4
    assert "posedge run --simulate" in done.stderr
