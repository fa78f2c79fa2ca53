"""The daemon's whole-chain verify in a child process: same verdict as in-process, at a
lower priority, journal errors carried back, and the in-process walk when no child
answers (real journals, real child processes)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.health.verifyproc import (
    VERIFY_NICENESS,
    VerifyChildError,
    verify_here,
    verify_in_child,
)
from posedge.agent.journal import Journal


def journal_of(tmp_path: Path, events: int = 20) -> Path:
    with Journal.open(tmp_path) as journal:
        for n in range(events):
            journal.append("test.event", {"n": n})
    return tmp_path


def tamper(state_dir: Path, seq: int) -> None:
    conn = sqlite3.connect(state_dir / "journal.db")
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET payload = '{\"n\":99}' WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()


def without_child(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "verified_by"}


def test_a_child_at_lower_priority_gives_the_in_process_verdict(tmp_path: Path) -> None:
    state = journal_of(tmp_path)
    doc = verify_in_child(state)
    assert doc["ok"] is True and doc["events"] >= 20
    assert without_child(doc) == verify_here(state)
    assert doc["verified_by"]["pid"] != os.getpid()
    assert doc["verified_by"]["niceness"] == min(19, os.nice(0) + VERIFY_NICENESS)


def test_a_tampered_event_is_named_by_the_child(tmp_path: Path) -> None:
    state = journal_of(tmp_path)
    tamper(state, 7)
    doc = verify_in_child(state)
    assert doc["ok"] is False and doc["problem"]["seq"] == 7
    assert without_child(doc) == verify_here(state)


def test_a_journal_the_child_cannot_open_is_an_error_naming_why(tmp_path: Path) -> None:
    with pytest.raises(VerifyChildError, match=r"JournalMissing: no journal at .*state-dir"):
        verify_in_child(tmp_path / "nowhere")


@pytest.mark.parametrize("python", ["/nonexistent/python3", "/bin/false"])
def test_without_a_child_answer_the_verify_runs_here(
    tmp_path: Path, python: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A child that cannot start, or ends without an answer: the chain is still verified."""
    state = journal_of(tmp_path)
    tamper(state, 3)
    monkeypatch.setattr("sys.executable", python)
    with caplog.at_level(logging.WARNING, logger="posedge.health"):
        doc = verify_in_child(state)
    assert "verified_by" not in doc  # walked in this process
    assert doc["ok"] is False and doc["problem"]["seq"] == 3
    assert "verifying here" in caplog.text
