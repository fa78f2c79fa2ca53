"""Fixtures for the reference back office tests: a real uvicorn server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer


@pytest.fixture
def bo(tmp_path: Path) -> Iterator[BackofficeServer]:
    with BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig()) as server:
        yield server


@pytest.fixture
def client(bo: BackofficeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bo.url, timeout=5.0) as c:
        yield c
