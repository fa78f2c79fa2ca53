"""Schema version 6 (anomalies and alerts) and versions landing in either order, on both
backends: a database that ran 6 before 5 existed still gets 5."""

from __future__ import annotations

from pathlib import Path

from posedge.backoffice.schema import SCHEMA_VERSION
from posedge.backoffice.store import BackofficeStore

TABLES_V6 = ("anomaly_cursors", "anomaly_flags", "alerts", "alert_groups", "alert_receivers",
             "alert_outbox")  # fmt: skip


def test_a_version_that_landed_late_still_runs(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:
        assert store.schema_version == SCHEMA_VERSION >= 6
        with store.transaction() as tx:
            assert all(tx.table_exists(name) for name in TABLES_V6)
            # As if this database had been migrated by a posedge that knew 6 but not yet 5.
            tx.execute("DROP TABLE silence_lanes")
            tx.execute("DELETE FROM schema_migrations WHERE version = 5")
    with BackofficeStore(db_target) as store:
        with store.transaction() as tx:
            assert tx.table_exists("silence_lanes")
            ran = {int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations").rows}
        assert {2, 3, 4, 5, 6} <= ran


def test_a_database_from_before_the_record_of_versions(db_target: Path | str) -> None:
    """Without table schema_migrations every version up to the recorded one counts as run."""
    with BackofficeStore(db_target) as store, store.transaction() as tx:
        for name in (*TABLES_V6, "silence_lanes", "schema_migrations"):
            tx.execute(f"DROP TABLE {name}")
        tx.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with BackofficeStore(db_target) as store:
        assert store.schema_version == SCHEMA_VERSION
        with store.transaction() as tx:
            assert all(tx.table_exists(name) for name in (*TABLES_V6, "silence_lanes"))
            ran = {int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations").rows}
        assert ran == {2, 3, 4, 5, 6} | {v for v in ran if v > 6}
