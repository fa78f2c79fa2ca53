"""A real back office (declining amounts ending in 51) and a real till per test, on each
backend (``db_target`` from tests/backoffice/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.backoffice import AuthorizationPolicy, BackofficeConfig
from posedge.backoffice.server import BackofficeServer

from .support import Till

TERMINAL = "S1-lane01"


@pytest.fixture
def bo(db_target: Path | str) -> Iterator[BackofficeServer]:
    config = BackofficeConfig(policy=AuthorizationPolicy(decline_amount_endings=["51"]))
    with BackofficeServer(db_target, config=config) as server:
        yield server


@pytest.fixture
def till(tmp_path: Path, bo: BackofficeServer) -> Iterator[Till]:
    t = Till(tmp_path / "till", bo, TERMINAL)
    try:
        yield t
    finally:
        t.close_all()
