"""DDL of the dashboard's tables (schema version 8, registered in backoffice/schema.py).
Portable SQL, every statement ``IF NOT EXISTS``: the version may land before or after
other versions developed at the same time (backoffice/migrations.py runs a missed one late).

- ``staff_users``: dashboard logins (never terminals): user name, scrypt hash of the
  password (``scrypt$n$r$p$salt$hash``), when created and last changed.
- ``staff_sessions``: one row per signed-in browser: the SHA-256 of the session cookie
  (the cookie itself is never stored), the user, the CSRF token of its forms, when it
  started (absolute expiry) and was last used (idle expiry).
- ``staff_login_failures``: failed logins by user and by client address, for the rate
  limit; old rows are pruned when new ones are written.
- ``alert_acks``: an acknowledgement of an alert's current episode (its ``active_since``):
  who and when. A new episode of the same alert is not acknowledged.
"""

from __future__ import annotations

SCHEMA_VERSION_DASHBOARD = 8

MIGRATE_V7_TO_V8 = (
    """CREATE TABLE IF NOT EXISTS staff_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    password_changed_at DOUBLE PRECISION NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS staff_sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS staff_sessions_user ON staff_sessions (username)",
    """CREATE TABLE IF NOT EXISTS staff_login_failures (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS staff_login_failures_subject"
    " ON staff_login_failures (scope, subject, at)",
    """CREATE TABLE IF NOT EXISTS alert_acks (
    fingerprint TEXT PRIMARY KEY,
    episode DOUBLE PRECISION,
    acked_by TEXT NOT NULL,
    acked_at DOUBLE PRECISION NOT NULL
)""",
)
