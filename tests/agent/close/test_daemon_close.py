"""The close through a real daemon: the till API, ``posedge close-day`` asking it, and the
missed schedule closed at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from posedge.agent.api.models import CloseAnswer
from posedge.agent.journal import Journal

from ...e2e.daemon_support import POSEDGE, Daemon, create_sale, wait_final, wait_until


def posedge(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    return subprocess.run(
        [str(POSEDGE), "--state-dir", str(state), "--json", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def closes(state: Path) -> list[dict[str, Any]]:
    with Journal.open(state, readonly=True) as journal:
        return [
            {"seq": e.seq, **e.payload} for e in journal.iter_events() if e.type == "day.closed"
        ]


def test_close_by_api_and_by_the_cli_through_the_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Daemon(state) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            sale = wait_final(http, create_sale(http, 1234)["id"])
            assert sale["state"] == "approved"
            bad = http.post("/v1/close", json={"business_day": "2026-02-30"})
            assert bad.status_code == 422 and "not a calendar date" in bad.json()["detail"]
            bad = http.post("/v1/close", json={"force": "yes"})
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "force"
            assert closes(state) == []

            taken = http.post("/v1/close", json={})
            assert taken.status_code == 201, taken.text
            doc = taken.json()
            CloseAnswer.model_validate(doc)  # the documented schema (docs/openapi-api.json)
            assert doc["print"] == {"printed": True, "error": None}
            assert doc["close"]["trigger"] == "api" and doc["close"]["lines_count"] == 1
            assert doc["close"]["totals"][0]["amount"] == 1234

            again = http.post("/v1/close")
            assert again.status_code == 409
            assert again.json()["type"].endswith("/already-closed")

        cli = posedge(state, "close-day")
        assert cli.returncode == 3, cli.stdout + cli.stderr
        assert "already closed" in json.loads(cli.stdout)["error"]["message"]
        future = posedge(state, "close-day", "--business-day", "2999-01-01")
        assert future.returncode == 2 and "in the future" in future.stdout
        assert len(closes(state)) == 1  # nothing stored for the refusals

        shown = posedge(state, "close-day", "--show", "--lines")
        assert shown.returncode == 0, shown.stderr
        shown_doc = json.loads(shown.stdout)
        assert shown_doc["via"] == "daemon"
        assert [line["txn"] for line in shown_doc["lines"]] == [sale["id"]]
        assert shown_doc["close"]["close_seq"] == doc["close"]["close_seq"]

        reprinted = posedge(state, "close-day", "--reprint", str(doc["close"]["close_seq"]))
        assert reprinted.returncode == 0, reprinted.stderr
        assert json.loads(reprinted.stdout)["print"]["printed"] is True

        forced = posedge(state, "close-day", "--force")
        assert forced.returncode == 0, forced.stderr
        forced_doc = json.loads(forced.stdout)
        assert forced_doc["via"] == "daemon" and forced_doc["close"]["forced"] is True
        assert forced_doc["close"]["trigger"] == "api"
    assert [c["forced"] for c in closes(state)] == [False, True]


def test_without_a_daemon_the_cli_closes_on_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        journal.append("technician.note", {"text": "before the close"})
    done = posedge(state, "close-day")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["via"] == "journal" and doc["close"]["seq_to"] == 1
    assert doc["print"]["printed"] is False  # no printer configured: journaled, kept
    with Journal.open(state, readonly=True) as journal:
        types = [e.type for e in journal.iter_events()]
    assert types == ["technician.note", "day.closed", "zreport.failed"]


def test_a_missed_schedule_is_closed_when_the_daemon_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text('[close]\nat = "00:00"\ntimezone = "UTC"\n')  # always already due
    with Daemon(state, config=config) as daemon:
        daemon.wait_ready()
        assert wait_until(lambda: len(closes(state)) == 1, 30), "".join(daemon.stderr_lines)
        assert closes(state)[0]["trigger"] == "catch_up"
    with Daemon(state, config=config) as daemon:  # a restart closes nothing again
        daemon.wait_ready()
        with daemon.client() as http:
            latest = http.get("/v1/close/latest?lines=true").json()
            assert CloseAnswer.model_validate(latest).close.trigger == "catch_up"
    assert len(closes(state)) == 1


def test_a_second_close_day_while_one_runs_is_refused(tmp_path: Path) -> None:
    """No daemon: the first close-day holds the state directory while its slow printer
    prints (stopped there with SIGSTOP, so the second surely meets it); a second one says
    a close is running (exit 3) and stores nothing."""
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        journal.append("technician.note", {"text": "x"})
    config = tmp_path / "posedge.toml"
    # The printer answers no status query within poll_timeout: printing takes 3 s, the window.
    config.write_text(
        '[printer]\nurl = "sim://printer?faults=slow_response:delay_s=5"\npoll_timeout = "3s"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    first = subprocess.Popen(
        [str(POSEDGE), "--state-dir", str(state), "--config", str(config), "--json",
         "close-day"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(closes(state)) == 1, 30)
        first.send_signal(signal.SIGSTOP)  # journaled, not yet printed: it holds the lock
        try:
            second = posedge(state, "--config", str(config), "close-day", "--force")
        finally:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 3, second.stdout + second.stderr
    message = json.loads(second.stdout)["error"]["message"]
    assert f"another posedge close-day (pid {first.pid})" in message
    assert first.returncode == 0, err
    assert json.loads(out)["via"] == "journal"
    assert len(closes(state)) == 1
