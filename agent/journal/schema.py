"""Journal schema and forward migrations.

The schema version is SQLite's ``user_version``. Each migration runs inside
one transaction together with the version bump, so a crash mid-migration
leaves the previous version intact. Migrations only ever add: no migration
drops or rewrites an event row, so every unsynced event survives an upgrade.

Version history:

1. ``events`` (append-only, triggers forbid UPDATE and DELETE), ``meta``,
   ``sync_cursor``.
2. ``checkpoints`` (signed retention checkpoints), ``retention_guard`` (the
   only way past the DELETE trigger), ``transactions`` (projection of the
   events).
3. ``transactions.idem_key`` (unique: the till's Idempotency-Key) and
   ``transactions.summary`` (JSON of the sale's visible facts: masked PAN,
   auth code, receipt, reversal and forward state).
4. The projection is folded lazily (see :mod:`.projection`): the watermark
   ``meta.projected_seq`` starts at the head, which v3 kept projected.
   ``transactions_state`` is replaced by ``transactions_unfinished_reads``, a
   partial index holding only abandoned and cancelled sales — the one query
   that looks transactions up by state (``/v1/status``).

The migration that last changed the projection rebuilds it from the events
(today: v3), so a backlog written by any older version gets a complete one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .projection import PROJECTED_SEQ_KEY, UNFINISHED_READ_STATES, rebuild_projection

SCHEMA_VERSION = 4

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    txn       TEXT,
    payload   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'journal events are append-only: UPDATE is forbidden');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'journal events are append-only: DELETE is forbidden');
END;
CREATE TABLE sync_cursor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq  INTEGER NOT NULL,
    updated_ts TEXT
);
INSERT INTO sync_cursor (id, acked_seq, updated_ts) VALUES (1, 0, NULL);
"""

_V2 = """
CREATE TABLE checkpoints (
    seq  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    ts   TEXT NOT NULL,
    sig  TEXT NOT NULL
);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'journal checkpoints are append-only');
END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'journal checkpoints are append-only');
END;
CREATE TABLE retention_guard (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    upto_seq INTEGER NOT NULL
);
DROP TRIGGER events_no_delete;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN NOT EXISTS (SELECT 1 FROM retention_guard WHERE OLD.seq <= upto_seq)
BEGIN
    SELECT RAISE(ABORT, 'journal events are append-only: DELETE is forbidden');
END;
CREATE TABLE transactions (
    txn        TEXT PRIMARY KEY,
    state      TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    created_ts TEXT    NOT NULL,
    updated_ts TEXT    NOT NULL,
    last_type  TEXT    NOT NULL,
    amount     INTEGER,
    currency   TEXT
) WITHOUT ROWID;
CREATE INDEX transactions_state ON transactions (state);
"""


_V3 = """
ALTER TABLE transactions ADD COLUMN idem_key TEXT;
ALTER TABLE transactions ADD COLUMN summary TEXT NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX transactions_idem_key ON transactions (idem_key) WHERE idem_key IS NOT NULL;
"""

_V4 = f"""
INSERT INTO meta (key, value)
    SELECT '{PROJECTED_SEQ_KEY}', CAST(coalesce(max(seq), 0) AS TEXT) FROM events;
DROP INDEX transactions_state;
CREATE INDEX transactions_unfinished_reads ON transactions (state)
    WHERE {UNFINISHED_READ_STATES};
"""


def _migrate_v1(conn: sqlite3.Connection) -> None:
    _run_script(conn, _V1)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    _run_script(conn, _V2)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    _run_script(conn, _V3)
    rebuild_projection(conn)


def _migrate_v4(conn: sqlite3.Connection) -> None:
    _run_script(conn, _V4)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_v1,
    2: _migrate_v2,
    3: _migrate_v3,
    4: _migrate_v4,
}


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run DDL statement by statement inside the caller's transaction.

    ``executescript`` would COMMIT first; splitting keeps the migration atomic.
    """
    for statement in _split_sql(script):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the migrations up to ``target``, one transaction each; return those applied."""
    applied: list[int] = []
    current = schema_version(conn)
    for version in range(current + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied
