"""Fixtures of the dashboard tests: a real back office (uvicorn on loopback, each backend)
with the dashboard mounted, a staff user, and an HTTP client that keeps cookies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posedge.backoffice.app import BackofficeConfig
from posedge.backoffice.dashboard.staff import StaffAccounts
from posedge.backoffice.server import BackofficeServer

from .support import PASSWORD

TERMINAL_TOKEN = "t0" * 32


@pytest.fixture
def server(db_target: Path | str) -> Iterator[BackofficeServer]:
    """Open mode (the fleet's heartbeats need no token)."""
    with BackofficeServer(db_target, config=BackofficeConfig()) as bo:
        assert bo.store is not None
        StaffAccounts(bo.store).add("alice", PASSWORD)
        yield bo


@pytest.fixture
def web(server: BackofficeServer) -> Iterator[httpx.Client]:
    """A browser-like client: keeps cookies, does not follow redirects."""
    with httpx.Client(base_url=server.url, timeout=30.0, follow_redirects=False) as client:
        yield client
