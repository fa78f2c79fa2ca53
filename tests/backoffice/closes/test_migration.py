"""Schema version 7 (close reconciliations) on both backends, landing in either order
relative to other versions: a database that ran a later version without 7 gets 7."""

from __future__ import annotations

from pathlib import Path

from posedge.backoffice.closes.tables import SCHEMA_VERSION_CLOSES
from posedge.backoffice.schema import SCHEMA_VERSION
from posedge.backoffice.store import BackofficeStore


def has_closes_table(store: BackofficeStore) -> bool:
    with store.transaction() as tx:
        return tx.table_exists("close_reconciliations")


def test_version_7_runs_on_a_database_that_never_ran_it(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:
        assert store.schema_version == SCHEMA_VERSION >= SCHEMA_VERSION_CLOSES
        assert has_closes_table(store)
        with store.transaction() as tx:  # as if 7 landed after the versions it ran
            tx.execute("DROP INDEX IF EXISTS events_day_closed")
            tx.execute("DROP TABLE close_reconciliations")
            tx.execute("DELETE FROM schema_migrations WHERE version = ?", (SCHEMA_VERSION_CLOSES,))
        assert not has_closes_table(store)
    with BackofficeStore(db_target) as store:
        assert has_closes_table(store)
        versions = {r[0] for r in store.db.execute("SELECT version FROM schema_migrations").rows}
        assert SCHEMA_VERSION_CLOSES in versions
        # The table works: a listing reads it, the resend lookup uses its index.
        from posedge.backoffice.closes.reconciler import resend_from, results

        assert results(store) == [] and resend_from(store, "S1-lane01") is None
