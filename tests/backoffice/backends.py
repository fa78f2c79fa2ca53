"""The two storage backends the back office tests run on: a SQLite file, a PostgreSQL database.

PostgreSQL databases live on one private server per test session (the ``postgres`` fixture
in conftest.py); each test gets fresh databases, created by ``CREATE DATABASE … STRATEGY
FILE_COPY`` (~30 ms) and dropped when the test ends.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import psycopg
import pytest

from posedge.simulator.pgserver import PostgresServer

BACKENDS = ("sqlite", "postgresql")

_names = itertools.count(1)


def base_url(pg: PostgresServer) -> str:
    """The URL of the server's ``postgres`` database (superuser, trust authentication)."""
    return pg.url()


def database_url(pg: PostgresServer, name: str) -> str:
    return base_url(pg).rsplit("/", 1)[0] + "/" + name


def new_postgres_database(pg: PostgresServer, hint: str = "bo") -> str:
    """A fresh, empty database on ``pg``; its URL."""
    name = f"{hint.replace('-', '_')}_{os.getpid()}_{next(_names)}"
    with psycopg.connect(base_url(pg), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
    return database_url(pg, name)


def drop_postgres_database(pg: PostgresServer, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(base_url(pg), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_files(pg: PostgresServer, url: str) -> list[Path]:
    """The files of the database's own directory, after a checkpoint has written out what
    was only in shared buffers (rows deleted since are still in their pages: nothing is
    vacuumed in a test). The WAL is left out: it holds every test's data of the session."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(base_url(pg), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None, f"no database {name}"
    return [path for path in (pg.datadir / "base" / str(row[0])).rglob("*") if path.is_file()]


class Databases:
    """Fresh databases of one backend for one test (``new``), dropped at the end."""

    def __init__(self, backend: str, directory: Path, pg: PostgresServer | None) -> None:
        self.backend = backend
        self.directory = directory
        self.pg = pg
        self.urls: list[str] = []

    def new(self, name: str = "bo") -> Path | str:
        if self.backend == "sqlite":
            return self.directory / f"{name}.sqlite3"
        assert self.pg is not None
        url = new_postgres_database(self.pg, name)
        self.urls.append(url)
        return url

    def files(self, target: Path | str) -> list[Path]:
        """The files that hold ``target``'s data (SQLite: the file, its WAL and journal)."""
        if isinstance(target, Path):
            return [p for p in target.parent.iterdir() if p.name.startswith(target.name)]
        assert self.pg is not None
        return postgres_files(self.pg, target)

    def close(self) -> None:
        assert self.pg is not None or not self.urls
        for url in self.urls:
            if self.pg is not None:
                drop_postgres_database(self.pg, url)
        self.urls.clear()


def require_postgres() -> PostgresServer:
    """A started server, or skip (fail when ``POSEDGE_REQUIRE_POSTGRES`` or ``CI`` is set:
    there the PostgreSQL cases must run)."""
    from posedge.simulator.pgserver import PostgresUnavailable

    try:
        return PostgresServer().start()
    except PostgresUnavailable as exc:
        if os.environ.get("POSEDGE_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail(f"the PostgreSQL backend tests need a server: {exc}")
        pytest.skip(f"PostgreSQL backend not tested: {exc}")
