"""DDL of the close reconciliation tables (schema version 7, registered in
backoffice/schema.py). Portable SQL, every statement ``IF NOT EXISTS``: the version may
land before or after other engineers' versions (backoffice/migrations.py).

- ``close_reconciliations``: one row per received ``day.closed`` event (terminal,
  close seq): its business day and store, the seq range, the state of the latest
  reconciliation (``reconciled``, ``missing_seqs``, ``mismatch``, ``invalid``), the
  missing seqs (``missing_from``: where the terminal is asked to resend from), the
  differences found, the totals reported and recomputed, the sales still pending
  after the close, the recomputed lines summed per currency × brand × outcome ×
  previous outcome (``settlement``: the settlement export's source), and when it was
  reconciled.
- ``events_day_closed``: a partial index finding a terminal's closes without scanning
  its events (only ``day.closed`` rows enter it, so ingest barely notices it).
"""

from __future__ import annotations

SCHEMA_VERSION_CLOSES = 7

MIGRATE_V6_TO_V7 = (
    """CREATE TABLE IF NOT EXISTS close_reconciliations (
    terminal TEXT NOT NULL,
    close_seq BIGINT NOT NULL,
    store TEXT NOT NULL,
    business_day TEXT NOT NULL,
    seq_from BIGINT NOT NULL,
    seq_to BIGINT NOT NULL,
    state TEXT NOT NULL,
    missing_count BIGINT NOT NULL DEFAULT 0,
    missing_from BIGINT,
    missing_seqs TEXT NOT NULL DEFAULT '[]',
    differences TEXT NOT NULL DEFAULT '[]',
    reported TEXT NOT NULL DEFAULT '[]',
    recomputed TEXT NOT NULL DEFAULT '[]',
    pending_txns TEXT NOT NULL DEFAULT '[]',
    settlement TEXT NOT NULL DEFAULT '[]',
    lines_count BIGINT NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 1,
    first_reconciled_at DOUBLE PRECISION NOT NULL,
    reconciled_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal, close_seq)
)""",
    "CREATE INDEX IF NOT EXISTS close_reconciliations_day"
    " ON close_reconciliations (business_day, store)",
    "CREATE INDEX IF NOT EXISTS close_reconciliations_resend"
    " ON close_reconciliations (terminal, missing_from)",
    "CREATE INDEX IF NOT EXISTS events_day_closed ON events (terminal, seq)"
    " WHERE type = 'day.closed'",
)
