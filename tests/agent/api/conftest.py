"""Fixtures: the till API served by the real ApiServer (uvicorn) in a background loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from posedge.agent.api import ApiServer, create_app

from .fakes import FakeEngine

TOKEN = "test-token-0123456789"
CURRENCIES = ("EUR", "USD")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


class BackgroundApi:
    """ApiServer in its own event loop thread, as the daemon would run it in its loop."""

    def __init__(self, engine: FakeEngine, socket_path: Path, tcp: str | None = None) -> None:
        self.engine = engine
        self.app = create_app(engine, token=TOKEN, currencies=CURRENCIES)
        self.server = ApiServer(self.app, socket_path, tcp=tcp)
        self.socket_path = socket_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> BackgroundApi:
        self._thread.start()
        self.run(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def client(self, auth: bool = True) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)),
            base_url="http://till",
            headers=AUTH if auth else None,
            timeout=10.0,
        )


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "api.sock"


@pytest.fixture(scope="package")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    """One server for the endpoint tests (it holds no state besides the engine)."""
    path = tmp_path_factory.mktemp("api") / "api.sock"
    with BackgroundApi(FakeEngine(), path, tcp="127.0.0.1:0") as running:
        yield running


@pytest.fixture
def api(shared_api: BackgroundApi) -> BackgroundApi:
    shared_api.engine.reset()
    return shared_api


@pytest.fixture
def engine(api: BackgroundApi) -> FakeEngine:
    return api.engine


@pytest.fixture
def client(api: BackgroundApi) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c
