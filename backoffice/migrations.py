"""Moving a back office database to the current schema (:mod:`.schema`), on either backend.

:func:`migrate` runs in one transaction: a new database is created at the
baseline and moved forward, an older one is moved forward from its version,
a current one is left alone, a newer one is refused (upgrade posedge). On
PostgreSQL the transaction first takes an advisory lock, so replicas that
start at the same moment migrate once: the others wait, then find the
current version. A failed migration rolls back whole (PostgreSQL and SQLite
DDL are transactional). This module must never drop data a migration does not
name.
"""

from __future__ import annotations

from .db import Database, DatabaseConfigError, Transaction
from .schema import (
    APPLIED_MIGRATIONS_TABLE,
    BASELINE,
    BASELINE_VERSION,
    MIGRATIONS,
    SCHEMA_VERSION,
)

MIGRATION_LOCK = "posedge-backoffice schema migration"


class SchemaVersionError(DatabaseConfigError, RuntimeError):
    """The database is of a schema this posedge cannot use (newer, or no way forward)."""


def stored_version(tx: Transaction) -> int | None:
    """The schema version the database records (None: a new, empty database)."""
    if not tx.table_exists("meta"):
        return None
    row = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def applied_versions(tx: Transaction, version: int) -> set[int]:
    """The migrations a database of recorded ``version`` has run: those table
    schema_migrations lists at or below ``version`` (a database restored from, or set back
    to, an older version runs the later ones again: they are IF NOT EXISTS DDL); without
    that table (a database from before it) every version up to ``version``."""
    upto = {m.version for m in MIGRATIONS if m.version <= version} | {version}
    if tx.table_exists("schema_migrations"):
        listed = {int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations").rows}
        return listed & upto
    return upto


def read_version(db: Database) -> int | None:
    with db.transaction() as tx:
        return stored_version(tx)


def migrate(db: Database) -> tuple[int | None, int]:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; returns (version found, version now)."""
    with db.transaction() as tx:
        tx.lock(MIGRATION_LOCK)
        found = stored_version(tx)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{db.display} has back office schema version {found}; this posedge knows "
                f"versions up to {SCHEMA_VERSION}: upgrade posedge"
            )
        applied = set() if found is None else applied_versions(tx, found)
        # Versions are developed in parallel and may land in either order: a migration
        # below the recorded version that this database never ran runs now (every
        # migration is IF NOT EXISTS DDL, safe to run late).
        if found == SCHEMA_VERSION and all(m.version in applied for m in MIGRATIONS):
            return found, found
        version = found
        if version is None:
            for statement in BASELINE[db.dialect]:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO NOTHING",
                (str(BASELINE_VERSION),),
            )
            version = BASELINE_VERSION
            applied = {BASELINE_VERSION}
        for migration in sorted(MIGRATIONS, key=lambda m: m.version):
            if migration.version in applied:
                continue
            statements = migration.statements(db.dialect)
            if statements is None:
                raise SchemaVersionError(
                    f"{db.display} is at back office schema version {version}, which never "
                    f"existed on {db.dialect}; it cannot be migrated"
                )
            for statement in statements:
                tx.execute(statement)
            applied.add(migration.version)
        tx.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        tx.execute(APPLIED_MIGRATIONS_TABLE)
        tx.executemany(
            "INSERT INTO schema_migrations (version) VALUES (?) ON CONFLICT (version) DO NOTHING",
            [(v,) for v in sorted(applied)],
        )
        return found, SCHEMA_VERSION
