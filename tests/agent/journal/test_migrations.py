"""Forward migration of a journal written by the previous schema version, with a backlog."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from posedge.agent.journal import (
    JOURNAL_FILE_NAME,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    verify_journal,
)
from posedge.agent.journal.canonical import canonical_json
from posedge.agent.journal.chain import GENESIS_HASH, ChainSigner, load_device_key
from posedge.agent.journal.schema import migrate, schema_version

BACKLOG = 500
ACKED = 120


def make_v1_journal(state_dir: Path) -> list[str]:
    """Write a v1 database the way the v1 code did: events, meta, cursor."""
    key = load_device_key(state_dir, create=True)
    signer = ChainSigner(key)
    conn = sqlite3.connect(state_dir / JOURNAL_FILE_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, target=1)
    assert schema_version(conn) == 1
    conn.execute("INSERT INTO meta (key, value) VALUES ('key_fingerprint', ?)", (key.fingerprint,))
    prev = GENESIS_HASH
    hashes = []
    conn.execute("BEGIN")
    for seq in range(1, BACKLOG + 1):
        txn = f"sale-{seq // 4}"
        kind = ("sale.created", "card.read", "auth.requested", "auth.approved")[seq % 4]
        payload = canonical_json({"amount": 1000 + seq, "currency": "EUR"})
        ts = f"2026-11-20T10:{seq // 60 % 60:02d}:{seq % 60:02d}.000000+00:00"
        digest = signer.event_hash(prev, seq, ts, kind, txn, payload)
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, kind, txn, payload, prev, digest),
        )
        hashes.append(digest)
        prev = digest
    conn.execute("UPDATE sync_cursor SET acked_seq = ?", (ACKED,))
    conn.execute("COMMIT")
    conn.close()
    return hashes


def test_v1_backlog_survives_migration(tmp_path: Path) -> None:
    hashes = make_v1_journal(tmp_path)
    with Journal.open(tmp_path) as jr:
        stats = jr.stats()
        assert stats["schema_version"] == SCHEMA_VERSION
        assert stats["unsynced"] == BACKLOG - ACKED and stats["acked_seq"] == ACKED
        assert [e.hash for e in jr.iter_events()] == hashes
        # The projection was rebuilt from the backlog (v3) and marked folded to the head (v4).
        assert jr.get_meta("projected_seq") == str(BACKLOG)
        sale = jr.transactions.get("sale-10")
        assert sale is not None and sale["first_seq"] == 40 and sale["last_seq"] == 43
        assert sale["state"] == "approved" and sale["amount"] == 1040
        assert verify_journal(jr).ok
        event = jr.append("agent.started", {"version": "new"})
        assert event.seq == BACKLOG + 1 and event.prev_hash == hashes[-1]
        # v2 behaviour works on the migrated file: retention with checkpoints.
        assert jr.prune(0.0) is not None
        assert verify_journal(jr).ok
        assert next(e.seq for e in jr.iter_events()) == ACKED + 1


def test_readers_refuse_an_old_schema_without_touching_it(tmp_path: Path) -> None:
    make_v1_journal(tmp_path)
    db = tmp_path / JOURNAL_FILE_NAME
    before = db.read_bytes()
    with pytest.raises(JournalError, match="migrate"):
        Journal.open(tmp_path, readonly=True)
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    assert schema_version(conn) == 1
    assert json.loads(conn.execute("SELECT payload FROM events WHERE seq = 1").fetchone()[0])
    conn.close()


def test_migration_is_atomic_when_it_fails(tmp_path: Path) -> None:
    make_v1_journal(tmp_path)
    db = tmp_path / JOURNAL_FILE_NAME
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE transactions (x)")  # makes the v2 migration fail midway
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate(conn)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == BACKLOG
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'checkpoints'").fetchone()[0]
        == 0
    )
    conn.close()
