"""The back office's SQLite schema (version 2). DDL only: this module must never open a database.

Tables: terminals (held head, reported heartbeat state), events (WITHOUT ROWID,
primary key terminal + seq), counters (per-terminal rejections and
duplicates), authorizations and reversals (idempotency records; masked PAN,
brand and PAN token only — never card data).

Version 2 (protocol version 2): an authorization's ``idem_key`` is its
attempt id; a reversal names one ``attempt``, at most one reversal per
(terminal, attempt). :data:`MIGRATE_V1_TO_V2` moves a version-1 file forward
(run in one transaction): a version-1 reversal named a sale, whose online
attempt's id was the txn, so its attempt is its txn (added to its stored
answer too); should a sale hold several version-1 reversals, the earliest is
kept, as version 2 would have answered the others with its answer.

Version 3 adds the terminal registry (:mod:`.registry`): enrolment codes,
device public keys, hashed tokens, revocation, and the nonces token rotations
used. :data:`MIGRATE_V2_TO_V3` creates its tables; the DDL is portable
(TEXT/BIGINT, no SQLite-only syntax). :data:`MIGRATIONS` lists each version's
statements; a file is moved forward one version at a time, in one transaction.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

SCHEMA = """
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
    attempt TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    had_authorization INTEGER NOT NULL,
    response_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (terminal, idem_key),
    UNIQUE (terminal, attempt)
) WITHOUT ROWID;
"""

# Statements run in order inside one transaction; then schema_version := 2.
MIGRATE_V1_TO_V2 = (
    """CREATE TABLE reversals_v2 (
    terminal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    txn TEXT NOT NULL,
    attempt TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    had_authorization INTEGER NOT NULL,
    response_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (terminal, idem_key),
    UNIQUE (terminal, attempt)
) WITHOUT ROWID""",
    "INSERT INTO reversals_v2 (terminal, idem_key, txn, attempt, body_sha256,"
    " had_authorization, response_json, created_at)"
    " SELECT terminal, idem_key, txn, txn, body_sha256, had_authorization,"
    " json_set(response_json, '$.attempt', txn), created_at FROM (SELECT *, row_number() OVER"
    " (PARTITION BY terminal, txn ORDER BY created_at, idem_key) AS nth FROM reversals)"
    " WHERE nth = 1",
    "DROP TABLE reversals",
    "ALTER TABLE reversals_v2 RENAME TO reversals",
)

# Version 3: the terminal registry (backoffice/registry.py). Portable SQL.
MIGRATE_V2_TO_V3 = (
    """CREATE TABLE IF NOT EXISTS terminal_registry (
    terminal TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    lane TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    public_key TEXT,
    token_hash TEXT UNIQUE,
    previous_token_hash TEXT,
    code_hash TEXT UNIQUE,
    code_expires_at BIGINT,
    code_used_at BIGINT,
    created_at BIGINT NOT NULL,
    enrolled_at BIGINT,
    token_rotated_at BIGINT,
    revoked_at BIGINT
)""",
    """CREATE TABLE IF NOT EXISTS terminal_rotation_nonces (
    terminal TEXT NOT NULL,
    nonce_hash TEXT NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (terminal, nonce_hash)
)""",
)

# version -> the statements that move a file from the version before to it.
MIGRATIONS: dict[int, tuple[str, ...]] = {2: MIGRATE_V1_TO_V2, 3: MIGRATE_V2_TO_V3}

SCHEMA += "".join(f"{statement};\n" for statement in MIGRATE_V2_TO_V3)
