"""A real agent (simulated devices, embedded back office) with its /metrics listener, in a
background event loop thread; scrapes go over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from posedge.agent.config import Config
from posedge.agent.metrics import AgentCollector, MetricsServer, build_registry
from posedge.agent.sales.model import SaleRequest, SaleView
from posedge.agent.service import Agent

T = TypeVar("T")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""(sample name, sorted labels) → value."""


def agent_config() -> Config:
    return Config.model_validate(
        {
            "terminal": {"id": "metrics-1"},
            "reader": {"swipe_timeout": "20s"},
            "sales": {"authorization_timeout": "2s"},
            "sync": {"backoff_initial": "50ms", "backoff_cap": "200ms"},
            "log": {"level": "error"},
        }
    )


def parse(text: str) -> tuple[dict[str, Any], Samples]:
    """(families by name, samples) through prometheus_client's own text parser."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples: Samples = {}
    for family in families.values():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class RunningAgent:
    """Agent + metrics server in a background loop; the agent's state belongs to that loop."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.agent = Agent(agent_config(), state_dir, simulate=True, card_delay_s=0.02)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.registry, self.collector = build_registry(self.agent)
        self.server = MetricsServer(self.registry, "127.0.0.1:0")
        self.http = httpx.Client(timeout=10.0)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def __enter__(self) -> RunningAgent:
        self._thread.start()
        self.run(self.server.start())
        self.run(self.agent.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        try:
            self.run(self.server.stop())
            self.run(self.agent.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def get(self, path: str = "/metrics", **headers: str) -> httpx.Response:
        assert self.server.url is not None
        base = self.server.url.removesuffix("/metrics")
        return self.http.get(base + path, headers=headers)

    def scrape(self) -> Samples:
        response = self.get()
        assert response.status_code == 200, response.text
        return parse(response.text)[1]

    def wait_for(self, condition: Callable[[Samples], bool], timeout_s: float = 30.0) -> Samples:
        """Scrape until ``condition`` holds; the last scrape (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            samples = self.scrape()
            if condition(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError("metrics never met the condition")
            time.sleep(0.05)

    def sale(self, amount: int = 1234, currency: str = "EUR") -> SaleView:
        """One sale through the real engine (the simulated reader presents a card)."""

        async def sell() -> SaleView:
            engine = self.agent.engine
            assert engine is not None
            request = SaleRequest(amount, currency, f"ref-{amount}")
            view = await engine.create_sale(uuid.uuid4().hex, request)
            done = await engine.wait_sale(view.id, 30.0)
            assert done is not None and done.final, done
            return done

        return self.run(sell())


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningAgent]:
    with RunningAgent(tmp_path / "state") as agent:
        yield agent


__all__ = ["AgentCollector", "RunningAgent", "Samples", "parse", "value"]
