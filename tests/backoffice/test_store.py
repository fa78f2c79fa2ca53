"""The back office store: a version-1 database migrates to version 2; captured and reversals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from posedge.backoffice.schema import MIGRATIONS, SCHEMA_VERSION
from posedge.protocol.idempotency import authorization_fingerprint, fingerprint
from posedge.simulator.backoffice import BackofficeStore

from .helpers import authorization, reversal

# The DDL of schema version 1, as released (simulator/backoffice/schema.py before v2).
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS terminals (
    terminal TEXT PRIMARY KEY,
    first_seq INTEGER,
    held_seq INTEGER NOT NULL DEFAULT 0,
    head_hash TEXT,
    enrolled_at REAL NOT NULL,
    last_heartbeat_at REAL,
    heartbeat_json TEXT,
    reported_backlog INTEGER,
    reported_head_seq INTEGER,
    reported_head_hash TEXT,
    interval_s INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    terminal TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    txn TEXT,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (terminal, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    terminal TEXT PRIMARY KEY,
    duplicates INTEGER NOT NULL DEFAULT 0,
    chain_breaks INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS authorizations (
    terminal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    txn TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'decided')),
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    brand TEXT,
    pan_token TEXT,
    forwarded INTEGER NOT NULL,
    outcome TEXT,
    response_json TEXT,
    created_at REAL NOT NULL,
    decided_at REAL,
    reversed_at REAL,
    PRIMARY KEY (terminal, idem_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS authorizations_txn ON authorizations (terminal, txn);
CREATE TABLE IF NOT EXISTS reversals (
    terminal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    txn TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    had_authorization INTEGER NOT NULL,
    response_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (terminal, idem_key)
) WITHOUT ROWID;
"""


def v1_database(path: Path) -> None:
    """A version-1 file: an approved and reversed legacy sale (its attempt id was the txn),
    a sale reversed twice under two keys, and an approved sale not reversed."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    auth = (
        "INSERT INTO authorizations (terminal, idem_key, txn, body_sha256, state, amount,"
        " currency, masked_pan, forwarded, outcome, response_json, created_at, decided_at,"
        " reversed_at) VALUES ('lane1', ?, ?, 'f', 'decided', ?, 'EUR', '411111******1111', 0,"
        " 'approved', '{}', ?, ?, ?)"
    )
    db.execute(auth, ("s-1", "s-1", 100, 1.0, 1.0, 2.0))
    db.execute(auth, ("s-3", "s-3", 300, 1.0, 1.0, None))
    rev = (
        "INSERT INTO reversals (terminal, idem_key, txn, body_sha256, had_authorization,"
        " response_json, created_at) VALUES ('lane1', ?, ?, 'r', ?, ?, ?)"
    )
    for key, txn, had, at in (
        ("reversal:s-1", "s-1", 1, 2.0),
        ("reversal:s-2", "s-2", 0, 3.0),
        ("reversal-again:s-2", "s-2", 0, 4.0),
    ):
        answer = {"txn": txn, "reversed": True, "had_authorization": bool(had)}
        db.execute(rev, (key, txn, had, json.dumps(answer), at))
    db.close()


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "bo.sqlite3"
    v1_database(path)
    with BackofficeStore(path) as store:
        assert store.reversals("lane1") == [
            {
                "reversal": "reversal:s-1",
                "txn": "s-1",
                "attempt": "s-1",
                "had_authorization": True,
                "created_at": 2.0,
            },
            {
                "reversal": "reversal:s-2",
                "txn": "s-2",
                "attempt": "s-2",
                "had_authorization": False,
                "created_at": 3.0,
            },
        ]
        assert store.captured("lane1") == {"s-3": 300}
        # A legacy attempt id is an attempt like any other: its reversal still wins.
        record = {k: v for k, v in authorization("s-2", attempt="s-2").items() if k != "card"}
        claim = store.claim_authorization("lane1", "s-2", authorization_fingerprint(record), record)
        assert claim.kind == "refused"
        assert claim.response is not None
        assert claim.response["reason"] == "reversed before it arrived"
        # The migrated answer names its attempt; a replay returns it.
        body = reversal("s-1", attempt="s-1")
        replay = store.record_reversal("lane1", "reversal:s-1", "s-1", "s-1", "r")
        assert replay.kind == "replay"
        assert replay.response == {
            "txn": "s-1",
            "reversed": True,
            "had_authorization": True,
            "attempt": "s-1",
        }
        other = store.record_reversal("lane1", body["reversal"], "s-1", "s-1", fingerprint(body))
        assert other.kind == "already-reversed" and other.response == replay.response
    db = sqlite3.connect(path)
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)
    ran = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
    assert {m.version for m in MIGRATIONS} <= ran
    # Version 3 added the terminal registry, version 4 claim leases (migrated forward
    # through version 2), the later ones silence, alerting, closes and dashboard tables.
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"terminal_registry", "terminal_rotation_nonces", "authorization_claims"} <= tables
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO reversals (terminal, idem_key, txn, attempt, body_sha256,"
            " had_authorization, response_json, created_at)"
            " VALUES ('lane1', 'k', 's-1', 's-1', 'x', 0, '{}', 5.0)"
        )
    db.close()
    with BackofficeStore(path) as again:  # opening a current file changes nothing
        assert len(again.reversals("lane1")) == 2


def test_a_version_1_database_reads_without_migrating(tmp_path: Path) -> None:
    path = tmp_path / "bo.sqlite3"
    v1_database(path)
    with BackofficeStore(path, readonly=True) as store:
        assert [r["attempt"] for r in store.reversals("lane1")] == ["s-1", "s-2", "s-2"]
        assert store.captured("lane1") == {"s-3": 300}
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    db.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bo.sqlite3"
    BackofficeStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        BackofficeStore(path)


def test_captured_sums_approved_unreversed_attempts_per_sale(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:

        def authorize(txn: str, amount: int, forwarded: bool = False) -> None:
            record = authorization(txn, amount, forwarded=forwarded)
            del record["card"]
            key = record["attempt"]
            assert store.claim_authorization("lane1", key, "f", record).kind == "new"
            decision = {"txn": txn, "attempt": key, "outcome": "approved"}
            store.decide_authorization("lane1", key, {**decision, "auth_code": "A", "reason": None})

        authorize("s-1", 100)
        authorize("s-1", 100, forwarded=True)
        authorize("s-2", 200)
        authorize("s-3", 300)
        assert store.captured("lane1") == {"s-1": 200, "s-2": 200, "s-3": 300}
        ack = store.record_reversal("lane1", "s-3:online:reversal", "s-3", "s-3:online", "x")
        assert ack.response is not None and ack.response["had_authorization"] is True
        assert store.captured("lane1") == {"s-1": 200, "s-2": 200}
        assert store.captured("lane2") == {}
        assert store.money_terminals() == ["lane1"]
