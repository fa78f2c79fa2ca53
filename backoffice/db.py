"""The back office's database backends: SQLite (the embedded default) and PostgreSQL.

``--db`` names a SQLite file (any path) or a PostgreSQL URL
(``postgresql://user@host:5432/dbname``, libpq's URL form, through psycopg 3).
:func:`open_database` returns a :class:`Database` for either; the store writes
its SQL once, with ``?`` placeholders and syntax both accept (``ON CONFLICT``,
``coalesce``, window functions), and the PostgreSQL backend rewrites the
placeholders. What differs is here: connecting, transactions, locks.

What each backend guarantees to the store:

- **SQLite**: one connection per process behind a lock; a write transaction
  is ``BEGIN IMMEDIATE``, so writers are serialised across processes too and
  :meth:`Transaction.lock` has nothing left to do. One ``serve`` per file.
- **PostgreSQL**: a bounded :class:`psycopg_pool.ConnectionPool` per process
  (``--db-pool-size``); transactions are READ COMMITTED and run concurrently,
  in any number of processes (replicas). What must be serialised the store
  names with :meth:`Transaction.lock` — ``pg_advisory_xact_lock`` on a 64-bit
  hash of the name, held to the end of the transaction — as the first
  statements of its transaction, so every later statement (a new snapshot
  each, in READ COMMITTED) sees everything the previous holder committed.

Errors when opening: :class:`DatabaseConfigError` — a bad URL, an unsupported
scheme, authentication refused, no such database (the CLI exits 2) — and
:class:`DatabaseUnavailable` — the server cannot be reached (exit 4). Messages
show the URL with its password as ``***``: this module must never log or
print a password.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Dialect = Literal["sqlite", "postgresql"]

URL_SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_SIZE = 10
MAX_POOL_SIZE = 1000
CONNECT_TIMEOUT_S = 10
# How long a request waits for a free pooled connection before failing (a 500).
POOL_WAIT_S = 30.0
SQLITE_BUSY_TIMEOUT_S = 10.0
APPLICATION_NAME = "posedge-backoffice"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO_RE = re.compile(r"(?<=://)([^:@/?#]*):([^@/?#]*)@")


class DatabaseError(Exception):
    """The database named by ``--db`` cannot be used; the message says why."""


class DatabaseConfigError(DatabaseError, ValueError):
    """A wrong ``--db``: bad URL, unsupported scheme, refused login, no such database."""


class DuplicateRows(DatabaseError):
    """A bulk write (:meth:`Transaction.copy_rows`) met a row the table's unique key holds
    already; the transaction is spoilt and rolls back."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """The PostgreSQL server cannot be reached (down, wrong host or port, network)."""


# -- targets ----------------------------------------------------------------------------------


def is_url(target: Path | str) -> bool:
    """Whether ``target`` is a URL (``scheme://…``) rather than a SQLite path."""
    return isinstance(target, str) and _SCHEME_RE.match(target) is not None


def parse_target(value: Path | str) -> Path | str:
    """A ``--db`` value: a PostgreSQL URL (kept as text, checked) or a SQLite file path.

    Raises :class:`DatabaseConfigError` for an empty value, another URL scheme or a
    URL libpq cannot parse.
    """
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise DatabaseConfigError("empty: give a SQLite file path or a postgresql:// URL")
    found = _SCHEME_RE.match(value)
    if found is None:
        return Path(value)
    scheme = found.group(1).lower()
    if scheme not in URL_SCHEMES:
        raise DatabaseConfigError(
            f"{redact(value)}: unsupported scheme {scheme}://; give a SQLite file path "
            "or a postgresql://user@host:port/dbname URL"
        )
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except Exception as exc:  # psycopg.ProgrammingError, from libpq's parser
        raise DatabaseConfigError(
            f"{redact(value)} is not a valid PostgreSQL URL: {_scrub(str(exc), value)}; "
            "the form is postgresql://user[:password]@host[:port]/dbname[?param=value]"
        ) from None
    return value


def redact(url: str) -> str:
    """The URL with its password (user info or ``password=`` parameter) as ``***``."""
    shown = _USERINFO_RE.sub(lambda m: f"{m.group(1)}:***@", url, count=1)
    try:
        parts = urlsplit(shown)
    except ValueError:
        return shown
    if "password" not in parts.query:
        return shown
    query = [
        (k, "***" if k == "password" else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def display_name(target: Path | str) -> str:
    """How messages and reports name the database: the path, or the URL without password."""
    return redact(target) if isinstance(target, str) and is_url(target) else str(target)


def _passwords(url: str) -> list[str]:
    found = [m.group(2) for m in _USERINFO_RE.finditer(url) if m.group(2)]
    with suppress(ValueError):
        found += [v for k, v in parse_qsl(urlsplit(url).query) if k == "password" and v]
    return found


def _scrub(message: str, url: str) -> str:
    """``message`` with the URL and any password in it replaced."""
    message = message.replace(url, redact(url))
    for secret in _passwords(url):
        message = message.replace(secret, "***")
    return " ".join(message.split())


def usage_error(display: str, exc: BaseException) -> DatabaseError | None:
    """What a driver error while opening (reading the schema, migrating) means for the
    user: the file or database is not a readable back office database (a config error),
    the server went away (unavailable), or None when it is not a database error."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, sqlite3.DatabaseError):
        return DatabaseConfigError(f"{display} is not a readable back office database: {exc}")
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        text = " ".join(str(exc).split())
        if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            return DatabaseUnavailable(f"lost PostgreSQL at {display}: {text}")
        return DatabaseConfigError(f"{display} is not a readable back office database: {text}")
    return None


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of ``name`` (the same in every process)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"posedge-bo-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


# -- results and transactions ------------------------------------------------------------------


@dataclass
class Result:
    """The rows a statement returned (all of them, fetched), its row count and column names."""

    rows: list[Any] = field(default_factory=list)
    rowcount: int = -1
    columns: list[str] = field(default_factory=list)

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


class Transaction(ABC):
    """Statements inside one database transaction (``?`` placeholders)."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = (), binary: bool = False) -> Result:
        """Run one statement; ``binary`` sends the parameters in PostgreSQL's binary format
        (large arrays: no quoting and escaping of every element; SQLite ignores it)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` once per row; the number of rows changed."""

    @abstractmethod
    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Append ``rows`` in bulk, none of them already there: PostgreSQL's ``COPY`` (one
        stream, rows written and logged in batches: a third of the server's and the
        client's work of one INSERT over arrays), SQLite one INSERT per row. A row whose
        unique key is taken raises :class:`DuplicateRows`."""

    @abstractmethod
    def lock(self, *names: str) -> None:
        """Hold these named locks to the end of the transaction (taken in a fixed order)."""

    @abstractmethod
    def table_exists(self, name: str) -> bool: ...


class Database(ABC):
    """A back office database: transactions, single statements, and what the backend is."""

    dialect: Dialect
    #: Calls may run concurrently from many threads (the app runs them off the event loop).
    concurrent: bool
    #: Connections this process may hold at once.
    pool_size: int
    readonly: bool
    #: How to name it in messages: the path, or the URL without its password.
    display: str

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A context manager yielding a :class:`Transaction`: committed at the end of the
        block, rolled back when it raises."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """One statement in a transaction of its own."""

    @abstractmethod
    def close(self) -> None: ...


def open_database(
    target: Path | str,
    readonly: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    warm: bool = False,
) -> Database:
    """The database ``target`` names (see :func:`parse_target`). ``warm``: a serving
    process's pool opens all its PostgreSQL connections now, not at the first burst."""
    target = parse_target(target)
    if isinstance(target, Path):
        return SqliteDatabase(target, readonly)
    return PostgresDatabase(target, readonly, pool_size, warm)


# -- SQLite ---------------------------------------------------------------------------------------


def _sqlite_result(cursor: sqlite3.Cursor) -> Result:
    if cursor.description is None:
        return Result([], cursor.rowcount)
    return Result(cursor.fetchall(), cursor.rowcount, [d[0] for d in cursor.description])


class SqliteTransaction(Transaction):
    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), binary: bool = False) -> Result:
        return _sqlite_result(self.conn.execute(sql, params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.conn.executemany(sql, rows).rowcount

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            raise DuplicateRows(f"{table}: {exc}") from None

    def lock(self, *names: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already made the transaction exclusive."""

    def table_exists(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None


class SqliteDatabase(Database):
    """One connection (WAL, ``synchronous=NORMAL``, ``secure_delete`` so deleted rows do
    not linger in free pages) behind a lock; write transactions are ``BEGIN IMMEDIATE``."""

    dialect: Dialect = "sqlite"
    concurrent = False
    pool_size = 1

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.display = str(path)
        self._lock = threading.Lock()
        if readonly:
            if not path.is_file():
                raise FileNotFoundError(
                    f"no back office database at {path}; "
                    "pass the --db file that `posedge backoffice serve` uses"
                )
            self.conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=SQLITE_BUSY_TIMEOUT_S,
            )
        else:
            self.conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_S
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA secure_delete = ON")

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        with self._lock:
            self.conn.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._lock:
            return _sqlite_result(self.conn.execute(sql, params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """For tests and tools that write rows directly (one transaction)."""
        with self.transaction() as tx:
            return tx.executemany(sql, rows)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


# -- PostgreSQL -------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def postgres_sql(sql: str, binary: bool = False) -> str:
    """``?`` placeholders to psycopg's ``%s`` (``%b``: binary; a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%b" if binary else "%s")


def _pg_result(cursor: Any) -> Result:
    if cursor.description is None:
        return Result([], cursor.rowcount)
    return Result(cursor.fetchall(), cursor.rowcount, [d.name for d in cursor.description])


class PostgresTransaction(Transaction):
    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), binary: bool = False) -> Result:
        return _pg_result(self.conn.execute(postgres_sql(sql, binary), params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.conn.cursor() as cursor:
            cursor.executemany(postgres_sql(sql), rows)
            return int(cursor.rowcount)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        from psycopg.errors import UniqueViolation

        try:
            with (
                self.conn.cursor() as cursor,
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except UniqueViolation as exc:
            raise DuplicateRows(f"{table}: {exc.diag.message_detail or exc}") from None

    def lock(self, *names: str) -> None:
        for key in sorted({lock_key(name) for name in names}):
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def table_exists(self, name: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row[0])


def _connect_error(url: str, exc: Exception) -> DatabaseError:
    """A refused login or a missing database is a configuration error; no answer at all is
    an unreachable server."""
    text = _scrub(str(exc), url)
    where = redact(url)
    if "FATAL" in text or "password" in text.lower() or "authentication" in text.lower():
        return DatabaseConfigError(
            f"PostgreSQL at {where} refused the connection: {text}; check the user, password "
            "and database name in --db (the database must exist: createdb NAME)"
        )
    return DatabaseUnavailable(
        f"cannot reach PostgreSQL at {where}: {text}; is the server running and the host "
        "and port in --db right?"
    )


class PostgresDatabase(Database):
    """A bounded connection pool on one PostgreSQL database (autocommit connections; a
    :meth:`transaction` is an explicit BEGIN … COMMIT on one of them)."""

    dialect: Dialect = "postgresql"
    concurrent = True

    def __init__(
        self,
        url: str,
        readonly: bool = False,
        pool_size: int = DEFAULT_POOL_SIZE,
        warm: bool = False,
    ) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        if not 1 <= pool_size <= MAX_POOL_SIZE:
            raise DatabaseConfigError(
                f"--db-pool-size {pool_size}: give 1 to {MAX_POOL_SIZE} connections"
            )
        self.readonly = readonly
        self.pool_size = pool_size
        self.display = redact(url)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": APPLICATION_NAME,
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        # One connection first: its error says what is wrong (the pool would only retry).
        try:
            probe = psycopg.connect(url, **kwargs)
        except psycopg.Error as exc:
            raise _connect_error(url, exc) from None
        probe.close()

        def configure(conn: Any) -> None:
            if readonly:
                conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

        self._pool: Any = ConnectionPool(
            url,
            kwargs=kwargs,
            # Warm (a serving replica): every connection opened up front, so the first burst
            # of uploads does not pay for connection starts, and a server without room for
            # them (max_connections) fails at start rather than under load.
            min_size=pool_size if warm else 1,
            max_size=pool_size,
            open=False,
            configure=configure,
            name=APPLICATION_NAME,
            timeout=POOL_WAIT_S,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # psycopg_pool.PoolTimeout: the server went away meanwhile
            opened = int(self._pool.get_stats().get("pool_available", 0))  # idle = opened
            self._pool.close()
            hint = ""
            if warm:  # the probe got in, so the server is up: most likely it is full
                hint = (
                    f"; a serving replica opens all its {pool_size} connections (--db-pool-size)"
                    f" and only {opened} opened: is the server's max_connections room for every"
                    " replica's pool? Lower --db-pool-size or raise max_connections"
                )
            raise DatabaseUnavailable(
                f"cannot open connections to PostgreSQL at {self.display}: "
                f"{_scrub(str(exc), url)}{hint}"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        with self._pool.connection() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._pool.connection() as conn:
            return _pg_result(conn.execute(postgres_sql(sql), params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """For tests and tools that write rows directly (one transaction)."""
        with self.transaction() as tx:
            return tx.executemany(sql, rows)

    def close(self) -> None:
        self._pool.close()
