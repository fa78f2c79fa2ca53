"""Card data and the journal file (issue 11, item 2).

The journal refuses card numbers however they are written (the API and the
``posedge journal note`` command go through the same guard), and what retention
removes does not survive in the file's free pages: the connection runs with
``PRAGMA secure_delete = ON``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.journal import Journal
from posedge.agent.journal.errors import PayloadRejected

from .helpers import posedge

WRITTEN_CARD_NUMBERS = [
    "order4111111111111111",
    "４１１１１１１１１１１１１１１１",  # full-width
    "٤١١١ ١١١١ ١١١١ ١١١١",  # Arabic-Indic
    "4111.1111.1111.1111",
    "4111  1111  1111  1111",
    "5555\u00a05555\u00a05555\u00a04444",
]


@pytest.mark.parametrize("text", WRITTEN_CARD_NUMBERS)
def test_the_journal_refuses_a_card_number_however_written(tmp_path: Path, text: str) -> None:
    with Journal.open(tmp_path) as jr:
        with pytest.raises(PayloadRejected, match="full card number") as info:
            jr.append("technician.note", {"text": f"swiped {text} by mistake"})
        assert text not in str(info.value)
        with pytest.raises(PayloadRejected, match="card number"):
            jr.append("test.event", {"reference": 4111111111111111})  # a JSON number
        assert jr.head().seq == 0


@pytest.mark.parametrize("text", ["card ４１１１１１１１１１１１１１１１", "order4111111111111111"])
def test_journal_note_refuses_a_card_number_however_written(tmp_path: Path, text: str) -> None:
    state = ("--state-dir", str(tmp_path))
    done = posedge(*state, "journal", "note", text)
    assert done.returncode == 2, done.stderr
    assert "full card number" in done.stderr
    assert text not in done.stderr + done.stdout
    stats = json.loads(posedge(*state, "--json", "journal", "stats", check=True).stdout)
    assert stats["events"] == 0


MARKER = "PRUNED-NOTE-7f3a"


def _journal_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.glob("journal.db*")))


def _secure_delete_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new SQLite connection starts with secure_delete OFF (the SQLite default;
    some distributions compile it ON), so only the journal's own PRAGMA can turn it on."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)


def test_the_file_scan_finds_deleted_rows_without_secure_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the scan below would see what a plain DELETE leaves behind."""
    _secure_delete_off_by_default(monkeypatch)
    conn = sqlite3.connect(tmp_path / "plain.db")
    conn.execute("CREATE TABLE t (text TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(f"{MARKER} {n}",) for n in range(200)])
    conn.commit()
    conn.execute("DELETE FROM t")
    conn.commit()
    conn.close()
    assert MARKER.encode() in (tmp_path / "plain.db").read_bytes()


def test_pruned_events_do_not_survive_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _secure_delete_off_by_default(monkeypatch)
    with Journal.open(tmp_path) as jr:
        assert jr._conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        for number in range(200):
            jr.append("technician.note", {"text": f"{MARKER} {number}"})
        jr.set_acked(jr.head().seq)
    assert MARKER.encode() in _journal_bytes(tmp_path)  # checkpointed into journal.db
    with Journal.open(tmp_path) as jr:
        checkpoint = jr.prune(0.0)
        assert checkpoint is not None and checkpoint.seq == 200
        assert [e.type for e in jr.iter_events()] == ["checkpoint"]
    assert MARKER.encode() not in _journal_bytes(tmp_path)
