"""``posedge sync now`` always contacts the back office (issue 11 item 7).

A technician uses it to test the link: even with an empty backlog it sends a
heartbeat, and it exits 4 when the back office cannot be reached. The back
office is the real reference one on loopback (``BackofficeServer``); the
unreachable one is the discard port, where nothing listens.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.journal import Journal
from posedge.simulator.backoffice import BackofficeServer

from ..journal.helpers import fill, posedge

TERMINAL = "link-test-1"
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    server = BackofficeServer(tmp_path / "bo.sqlite3").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posedge.toml"
    path.write_text(
        f'[terminal]\nid = "{TERMINAL}"\n[sync]\nbackoff_initial = "10ms"\nbackoff_cap = "50ms"\n'
    )
    return path


def last_heartbeat(backoffice: BackofficeServer) -> float | None:
    assert backoffice.store is not None
    for state in backoffice.store.terminal_states():
        if state.terminal == TERMINAL:
            return state.last_heartbeat_at
    return None


def sync_now(state: Path, config: Path, url: str) -> subprocess.CompletedProcess[str]:
    return posedge("--state-dir", str(state), "--config", str(config), "--json",
                   "sync", "now", "--backoffice", url)  # fmt: skip


def test_an_empty_backlog_still_sends_a_heartbeat(
    backoffice: BackofficeServer, config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"  # a new terminal: nothing journaled yet
    assert last_heartbeat(backoffice) is None
    done = sync_now(state, config, backoffice.url)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["heartbeat"] is True and doc["sent_events"] == 0 and doc["complete"] is True
    assert last_heartbeat(backoffice) is not None, "the back office never heard from us"


def test_after_a_full_sync_the_link_is_tested_again(
    backoffice: BackofficeServer, config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 7)
    assert sync_now(state, config, backoffice.url).returncode == 0
    first = last_heartbeat(backoffice)
    assert first is not None
    done = sync_now(state, config, backoffice.url)  # backlog now empty
    assert done.returncode == 0, done.stdout + done.stderr
    second = last_heartbeat(backoffice)
    assert second is not None and second >= first
    assert json.loads(done.stdout)["heartbeat"] is True


def test_an_unreachable_back_office_is_exit_4_even_with_nothing_to_send(
    backoffice: BackofficeServer, config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 3)
    assert sync_now(state, config, backoffice.url).returncode == 0  # backlog: empty
    done = sync_now(state, config, UNREACHABLE)
    assert done.returncode == 4, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["heartbeat"] is False and doc["complete"] is False
    assert "heartbeat" in doc["errors"][-1] and "refused" in doc["errors"][-1].lower()
    status = json.loads(
        posedge("--state-dir", str(state), "--config", str(config), "--json",
                "sync", "status").stdout
    )  # fmt: skip
    assert status["last_error"] is not None and "refused" in status["last_error"].lower()


def test_a_fresh_terminal_and_an_unreachable_back_office_is_exit_4(
    config: Path, tmp_path: Path
) -> None:
    done = sync_now(tmp_path / "state", config, UNREACHABLE)
    assert done.returncode == 4, done.stdout + done.stderr
    human = posedge("--state-dir", str(tmp_path / "state"), "--config", str(config),
                    "sync", "now", "--backoffice", UNREACHABLE)  # fmt: skip
    assert human.returncode == 4 and "heartbeat" in human.stdout, human.stdout + human.stderr


def test_no_back_office_at_all_is_exit_2_and_touches_nothing(config: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = posedge("--state-dir", str(state), "--config", str(config), "sync", "now")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sync.url" in done.stderr and "--backoffice" in done.stderr
    assert not state.exists()
