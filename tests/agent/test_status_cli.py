"""``posedge status [--watch]`` against a real daemon (``run --simulate`` subprocess).

Sales today come from the journal (read-only) and change after a real sale through the
till API; without a daemon the command is exit 4; ``--watch`` on a real pseudo-terminal
redraws in place until SIGINT, which ends it with 0.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.cli.status import CLEAR_SCREEN, SalesTally, first_seq_since
from posedge.agent.journal import Journal
from tests.e2e.daemon_support import Daemon, create_sale, wait_final

POSEDGE = Path(sys.executable).parent / "posedge"


def status(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    return subprocess.run(
        [str(POSEDGE), "--state-dir", str(state_dir), "status", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("status") / "state") as running:
        running.wait_ready()
        yield running


def status_json(state_dir: Path) -> dict[str, Any]:
    done = status(state_dir, "--json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_status_shows_the_daemon_and_sales_today_change_after_a_sale(daemon: Daemon) -> None:
    before = status_json(daemon.state_dir)
    assert before["daemon_pid"] == daemon.proc.pid
    assert before["status"]["daemon"]["pid"] == daemon.proc.pid
    assert before["status"]["devices"]["printer"]["state"] == "ok"
    with daemon.client() as http:
        sale = wait_final(http, create_sale(http, amount=1250)["id"])
    assert sale["state"] == "approved", sale
    after = status_json(daemon.state_dir)
    was, now = before["sales_today"], after["sales_today"]
    assert now["count"] == was["count"] + 1
    assert now["by_outcome"].get("approved", 0) == was["by_outcome"].get("approved", 0) + 1
    assert now["taken"]["EUR"] == was["taken"].get("EUR", 0) + 1250
    human = status(daemon.state_dir)
    assert human.returncode == 0
    lines = dict(line.split(None, 1) for line in human.stdout.splitlines() if line[:1] != " ")
    assert lines["daemon"].startswith(f"pid {daemon.proc.pid} · up ")
    assert "approved" in human.stdout and "taken EUR" in human.stdout
    assert lines["devices"].startswith("printer ok")


def test_without_a_daemon_status_is_exit_4_saying_so(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    done = status(state_dir)
    assert done.returncode == 4
    assert "no posedge daemon is running on state directory" in done.stderr
    assert done.stdout == ""
    assert list(state_dir.iterdir()) == []


def test_interval_without_watch_is_a_usage_error(daemon: Daemon) -> None:
    done = status(daemon.state_dir, "--interval", "1")
    assert done.returncode == 2 and "add --watch" in done.stderr


def test_watch_without_a_tty_prints_a_json_document_per_refresh(daemon: Daemon) -> None:
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    argv = [str(POSEDGE), "--state-dir", str(daemon.state_dir), "--json", "status", "--watch",
            "--interval", "0.2"]  # fmt: skip
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            docs = [json.loads(proc.stdout.readline()) for _ in range(2)]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert all(doc["daemon_pid"] == daemon.proc.pid for doc in docs)


def _read_until(fd: int, predicate: Any, timeout_s: float) -> bytes:
    """Read the pty master until ``predicate(output)`` holds or the deadline passes."""
    output = b""
    deadline = time.monotonic() + timeout_s
    while not predicate(output) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    return output


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_0(daemon: Daemon) -> None:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    argv = [str(POSEDGE), "--state-dir", str(daemon.state_dir), "status", "--watch",
            "--interval", "0.2"]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    clear = CLEAR_SCREEN.encode()
    try:
        output = _read_until(master, lambda out: out.count(clear) >= 3, 30)
        assert output.count(clear) >= 3, output[-2000:]
        frames = output.split(clear)[1:]
        assert all(b"sales today" in frame for frame in frames[:2])
        assert b"Ctrl-C to stop" in frames[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        rest = _read_until(master, lambda out: False, 1.0)
        assert b"Traceback" not in output + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# ---- the tally ------------------------------------------------------------------------------
def test_the_tally_counts_only_todays_sales_and_starts_over_the_next_day(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.append("sale.created", {"amount": 500, "currency": "EUR"}, txn="s1")
        journal.append("auth.approved", {}, txn="s1")
        journal.append("sale.created", {"amount": 700, "currency": "EUR"}, txn="s2")
        journal.append("sale.declined", {}, txn="s2")
        journal.append("sale.created", {"amount": 900, "currency": "EUR"}, txn="s3")
        tally = SalesTally()
        tally.update(journal)
        doc = tally.as_dict()
        assert doc["count"] == 3
        assert doc["by_outcome"] == {"approved": 1, "declined": 1, "in_progress": 1}
        assert doc["taken"] == {"EUR": 500}
        journal.append("sale.voided", {}, txn="s1")  # read incrementally: the void counts
        tally.update(journal)
        assert tally.as_dict()["by_outcome"] == {"declined": 1, "in_progress": 1, "voided": 1}
        assert tally.as_dict()["taken"] == {}
        tomorrow = (datetime.now() + timedelta(days=1)).timestamp()
        tally.update(journal, now_s=tomorrow)
        assert tally.as_dict()["count"] == 0
        assert first_seq_since(journal, 0.0) == 1
        assert first_seq_since(journal, tomorrow) == journal.head().seq + 1
