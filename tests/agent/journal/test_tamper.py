"""Tampering done with the sqlite3 CLI after dropping the triggers: verify catches each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posedge.agent.journal import JOURNAL_FILE_NAME, Journal, verify_journal

from .helpers import DROP_TRIGGERS, fill, posedge, sqlite_cli

EVENTS = 12


@pytest.fixture
def state(tmp_path: Path) -> Path:
    with Journal.open(tmp_path) as jr:
        fill(jr, EVENTS)
    return tmp_path


def verify_cli(state: Path, *extra: str) -> tuple[int, dict[str, object]]:
    done = posedge("--state-dir", str(state), "--json", "journal", "verify", *extra)
    return done.returncode, json.loads(done.stdout)


def test_untouched_journal_verifies(state: Path) -> None:
    code, doc = verify_cli(state)
    assert code == 0
    assert doc["ok"] is True and doc["events"] == EVENTS
    assert doc["head"]["seq"] == EVENTS  # type: ignore[index]


def test_deleted_middle_event_is_missing(state: Path) -> None:
    sqlite_cli(state / JOURNAL_FILE_NAME, DROP_TRIGGERS + "DELETE FROM events WHERE seq = 5;")
    code, doc = verify_cli(state)
    assert code == 3
    assert doc["problem"] == {
        "seq": 5,
        "kind": "missing",
        "detail": "events 5 are missing (deleted) before seq 6",
    }


def test_edited_payload_is_modified(state: Path) -> None:
    sqlite_cli(
        state / JOURNAL_FILE_NAME,
        DROP_TRIGGERS
        + """UPDATE events SET payload = '{"amount":1,"currency":"EUR","n":7}' WHERE seq = 8;""",
    )
    code, doc = verify_cli(state)
    assert code == 3
    assert doc["problem"]["seq"] == 8 and doc["problem"]["kind"] == "modified"  # type: ignore[index]


def test_edited_hash_column_is_modified(state: Path) -> None:
    sqlite_cli(
        state / JOURNAL_FILE_NAME,
        DROP_TRIGGERS + "UPDATE events SET hash = '" + "ab" * 32 + "' WHERE seq = 3;",
    )
    code, doc = verify_cli(state)
    assert code == 3
    assert doc["problem"]["seq"] == 3 and doc["problem"]["kind"] == "modified"  # type: ignore[index]


def test_swapped_events_are_reordered(state: Path) -> None:
    sqlite_cli(
        state / JOURNAL_FILE_NAME,
        DROP_TRIGGERS
        + "UPDATE events SET seq = -1 WHERE seq = 6;"
        + "UPDATE events SET seq = 6 WHERE seq = 7;"
        + "UPDATE events SET seq = 7 WHERE seq = -1;",
    )
    code, doc = verify_cli(state)
    assert code == 3
    problem = doc["problem"]
    assert problem["seq"] == 6 and problem["kind"] == "reordered"  # type: ignore[index]
    assert "written as seq 7" in problem["detail"]  # type: ignore[index]


def test_deleted_tail_is_caught_only_with_the_anchor(state: Path) -> None:
    with Journal.open(state, readonly=True) as jr:
        anchor = f"{EVENTS}:{jr.head().hash}"
    sqlite_cli(
        state / JOURNAL_FILE_NAME, DROP_TRIGGERS + f"DELETE FROM events WHERE seq > {EVENTS - 3};"
    )
    code, _ = verify_cli(state)
    assert code == 0  # a shorter chain is self-consistent …
    code, doc = verify_cli(state, "--expect-head", anchor)
    assert code == 3  # … but the back office's anchor shows the loss
    problem = doc["problem"]
    assert problem["kind"] == "behind_anchor" and problem["seq"] == EVENTS - 2  # type: ignore[index]
    assert f"{EVENTS - 2}..{EVENTS}" in problem["detail"]  # type: ignore[index]


def test_anchor_with_a_different_hash_is_a_mismatch(state: Path) -> None:
    code, doc = verify_cli(state, "--expect-head", f"4:{'0' * 64}")
    assert code == 3
    assert doc["problem"]["kind"] == "anchor_mismatch"  # type: ignore[index]


def test_forged_checkpoint_is_caught(state: Path) -> None:
    sqlite_cli(
        state / JOURNAL_FILE_NAME,
        DROP_TRIGGERS
        + "INSERT INTO checkpoints (seq, hash, ts, sig) VALUES (4, '"
        + "cd" * 32
        + "', '2026-01-01T00:00:00+00:00', '"
        + "ef" * 32
        + "');"
        + "INSERT INTO retention_guard VALUES (1, 4); DELETE FROM events WHERE seq <= 4;",
    )
    code, doc = verify_cli(state)
    assert code == 3
    assert doc["problem"]["kind"] == "bad_checkpoint"  # type: ignore[index]


def test_deleted_prefix_without_checkpoint_is_missing(state: Path) -> None:
    sqlite_cli(state / JOURNAL_FILE_NAME, DROP_TRIGGERS + "DELETE FROM events WHERE seq <= 3;")
    with Journal.open(state, readonly=True) as jr:
        result = verify_journal(jr)
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (1, "missing")


def test_human_output_names_the_bad_seq(state: Path) -> None:
    sqlite_cli(state / JOURNAL_FILE_NAME, DROP_TRIGGERS + "DELETE FROM events WHERE seq = 9;")
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert done.returncode == 3
    assert "FAILED at seq 9 (missing)" in done.stdout
