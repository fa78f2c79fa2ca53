"""The back office's schema and its migrations, for SQLite and PostgreSQL. DDL only: this
module must never open a database (:mod:`.migrations` runs it).

Tables: meta (``schema_version``), terminals (held head, reported heartbeat
state), events (primary key terminal + seq: the ``UNIQUE (terminal, seq)`` the
ingest dedupes on), counters (per-terminal rejections and duplicates),
authorizations and reversals (idempotency records; masked PAN, brand and PAN
token only — never card data), terminal_registry and terminal_rotation_nonces
(:mod:`.registry`).

How a database gets to :data:`SCHEMA_VERSION`: a new one is created at
:data:`BASELINE_VERSION` (:data:`BASELINE`, per backend), then it and an old
one alike take every entry of :data:`MIGRATIONS` above their version, in
order, in one transaction. So every migration runs on every new database, on
both backends, in every test run. Types: SQLite columns are declared
INTEGER/REAL in the baseline (as released), PostgreSQL's are BIGINT/DOUBLE
PRECISION (:func:`postgres_ddl` derives them); new DDL uses TEXT, BIGINT and
DOUBLE PRECISION, which both accept, and no backend-only syntax.

Adding a version: append a :class:`Migration` (``portable(version, summary,
*statements)`` when one text suits both backends, else ``sqlite=`` and
``postgresql=`` separately); bump nothing else. A migration must be safe to
run in one transaction on both (no ``CREATE INDEX CONCURRENTLY``, no
``VACUUM``).

Versions:

1. SQLite only (the simulator's back office): reversals keyed by sale.
2. Protocol version 2: an authorization's ``idem_key`` is its attempt id; a
   reversal names one ``attempt``, at most one reversal per (terminal,
   attempt). :data:`MIGRATE_V1_TO_V2` moves a version-1 file forward: a
   version-1 reversal named a sale, whose online attempt's id was the txn, so
   its attempt is its txn (added to its stored answer too); should a sale hold
   several version-1 reversals, the earliest is kept, as version 2 would have
   answered the others with its answer. PostgreSQL databases start here.
3. The terminal registry (:mod:`.registry`): enrolment codes, device public
   keys, hashed tokens, revocation, and the nonces token rotations used.
4. Authorization claim leases (table authorization_claims): a pending
   authorization's holder (a random token) and when its lease expires; a
   claim left by a replica that died is taken over once its lease expires,
   instead of being deleted when a server starts (replicas start while others
   decide). A pending authorization without a lease row is free to take over.

5. Silence detection's learned state (table silence_lanes, :mod:`.silence.learn`):
   per lane the decayed sale-run counts and open-hours exposure by local hour of
   week, the last sale seen, the events scanned so far and the recent run times.

6. Anomaly flags and alerts (:mod:`.anomalies`, :mod:`.alerting`): per-terminal
   anomaly cursors and flags; alert states, store groups, receivers and the
   delivery outbox.

7. Close reconciliations (:mod:`.closes.tables`): per received ``day.closed`` the
   state of its reconciliation, missing seqs, differences and totals; a partial index
   of the ``day.closed`` events.

8. The dashboard (:mod:`.dashboard.tables`): staff logins, their sessions, failed
   logins for the rate limit, and alert acknowledgements.

Migrations create tables with ``IF NOT EXISTS``, so a database whose recorded
version is older than its tables (restored ``meta``) still moves forward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .closes.tables import MIGRATE_V6_TO_V7, SCHEMA_VERSION_CLOSES
from .dashboard.tables import MIGRATE_V7_TO_V8, SCHEMA_VERSION_DASHBOARD
from .db import Dialect

BASELINE_VERSION = 2

# The SQLite schema of version 2, as released.
SQLITE_V2 = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS terminals (
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
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS events (
    terminal TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    txn TEXT,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (terminal, seq)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS counters (
    terminal TEXT PRIMARY KEY,
    duplicates INTEGER NOT NULL DEFAULT 0,
    chain_breaks INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS authorizations (
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
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS authorizations_txn ON authorizations (terminal, txn)",
    """CREATE TABLE IF NOT EXISTS reversals (
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
)


def postgres_ddl(statement: str) -> str:
    """SQLite DDL as PostgreSQL's: 64-bit INTEGER is BIGINT, REAL is DOUBLE PRECISION,
    no WITHOUT ROWID (a PostgreSQL table is a heap with its primary key index)."""
    statement = re.sub(r"\s*WITHOUT ROWID\s*$", "", statement)
    statement = re.sub(r"\bINTEGER\b", "BIGINT", statement)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)


BASELINE: dict[Dialect, tuple[str, ...]] = {
    "sqlite": SQLITE_V2,
    "postgresql": tuple(postgres_ddl(statement) for statement in SQLITE_V2),
}

# Version 1 -> 2 (SQLite only). Statements run in order inside one transaction.
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

# Version 2 -> 3: the terminal registry (backoffice/registry.py). Portable SQL.
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

# Version 4 -> 5: silence detection's learned state (backoffice/silence/learn.py). Portable SQL.
MIGRATE_V4_TO_V5 = (
    """CREATE TABLE IF NOT EXISTS silence_lanes (
    terminal TEXT PRIMARY KEY,
    scanned_seq BIGINT NOT NULL DEFAULT 0,
    last_sale_at DOUBLE PRECISION,
    learned_to DOUBLE PRECISION,
    sales BIGINT NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    counts TEXT NOT NULL,
    exposure TEXT NOT NULL,
    recent TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)""",
)

# Version 3 -> 4: authorization claim leases. Portable SQL.
MIGRATE_V3_TO_V4 = (
    """CREATE TABLE IF NOT EXISTS authorization_claims (
    terminal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    token TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal, idem_key)
)""",
)


# Version 5 -> 6: anomaly flags from the event stream and the fleet's alerts
# (backoffice/anomalies.py, backoffice/alerting/). Portable SQL; every table and index
# IF NOT EXISTS, so it is safe to run again (see migrations.py: versions landed in any order).
MIGRATE_V5_TO_V6 = (
    """CREATE TABLE IF NOT EXISTS anomaly_cursors (
    terminal TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0,
    chain_breaks BIGINT NOT NULL DEFAULT 0,
    gaps BIGINT NOT NULL DEFAULT 0,
    conflicts BIGINT NOT NULL DEFAULT 0,
    heartbeat_at DOUBLE PRECISION,
    skewed BIGINT NOT NULL DEFAULT 0,
    rewound BIGINT NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS anomaly_flags (
    id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,
    store TEXT NOT NULL,
    kind TEXT NOT NULL,
    seqs TEXT NOT NULL,
    txns TEXT NOT NULL,
    at TEXT NOT NULL,
    detected_at DOUBLE PRECISION NOT NULL,
    detail TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS anomaly_flags_recent"
    " ON anomaly_flags (terminal, kind, detected_at)",
    """CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    alertname TEXT NOT NULL,
    terminal TEXT,
    store TEXT NOT NULL,
    state TEXT NOT NULL,
    lifecycle TEXT NOT NULL,
    inhibited BIGINT NOT NULL DEFAULT 0,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    active_since DOUBLE PRECISION,
    firing_since DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS alerts_store ON alerts (store, state)",
    """CREATE TABLE IF NOT EXISTS alert_groups (
    store TEXT PRIMARY KEY,
    last_notified_at DOUBLE PRECISION,
    notified TEXT NOT NULL DEFAULT ''
)""",
    """CREATE TABLE IF NOT EXISTS alert_receivers (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('webhook', 'alertmanager')),
    url TEXT NOT NULL,
    secret TEXT,
    created_at DOUBLE PRECISION NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS alert_outbox (
    id TEXT PRIMARY KEY,
    receiver TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    last_error TEXT
)""",
    "CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (delivered_at, next_attempt_at)",
)


@dataclass(frozen=True)
class Migration:
    """The statements that move a database from ``version - 1`` to ``version``.

    ``None`` for a backend on which no database of the version before exists.
    """

    version: int
    summary: str
    sqlite: tuple[str, ...] | None
    postgresql: tuple[str, ...] | None

    def statements(self, dialect: Dialect) -> tuple[str, ...] | None:
        return self.sqlite if dialect == "sqlite" else self.postgresql


def portable(version: int, summary: str, *statements: str) -> Migration:
    """A migration whose SQL both backends run as written."""
    return Migration(version, summary, statements, statements)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "one reversal per attempt", sqlite=MIGRATE_V1_TO_V2, postgresql=None),
    portable(3, "terminal registry", *MIGRATE_V2_TO_V3),
    portable(4, "authorization claim leases", *MIGRATE_V3_TO_V4),
    portable(5, "silence detection: per-lane learned hour-of-week rates", *MIGRATE_V4_TO_V5),
    portable(6, "anomaly flags and alerts", *MIGRATE_V5_TO_V6),
    portable(SCHEMA_VERSION_CLOSES, "close reconciliations", *MIGRATE_V6_TO_V7),
    portable(SCHEMA_VERSION_DASHBOARD, "dashboard staff, sessions, alert acks", *MIGRATE_V7_TO_V8),
    # Next: portable(N, "…", "CREATE TABLE …", …); versions may land in any order (see
    # migrations.py), the tuple is sorted by version where it is used.
)

SCHEMA_VERSION = max(migration.version for migration in MIGRATIONS)

# Which versions a database has run (migrations.py): versions developed in parallel may
# land in either order, and a database that ran 6 before 5 existed still gets 5.
APPLIED_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)"
)
