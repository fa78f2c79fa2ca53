"""Fixtures for the back office tests: a real uvicorn server on loopback, on each backend.

Every test that uses ``db_target`` or ``databases`` (directly, or through ``bo`` and
``client``) runs twice: ``[sqlite]`` on a file in its tmp_path, ``[postgresql]`` on a
fresh database of the session's private PostgreSQL server (``postgres``: the system's
binaries, an unprivileged user, fsync off). Without PostgreSQL binaries the postgresql
cases skip, unless ``POSEDGE_REQUIRE_POSTGRES`` or ``CI`` is set (then they fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer
from posedge.simulator.pgserver import PostgresServer

from .backends import BACKENDS, Databases, require_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = require_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def databases(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Databases]:
    pg = request.getfixturevalue("postgres") if backend == "postgresql" else None
    dbs = Databases(backend, tmp_path, pg)
    try:
        yield dbs
    finally:
        dbs.close()


@pytest.fixture
def db_target(databases: Databases) -> Path | str:
    """The test's database: a SQLite path or a PostgreSQL URL."""
    return databases.new("bo")


@pytest.fixture
def bo(db_target: Path | str) -> Iterator[BackofficeServer]:
    with BackofficeServer(db_target, config=BackofficeConfig()) as server:
        yield server


@pytest.fixture
def client(bo: BackofficeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bo.url, timeout=5.0) as c:
        yield c
