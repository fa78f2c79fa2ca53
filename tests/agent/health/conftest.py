"""Fixtures: simulated devices on sim://, configurations with [health] thresholds."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.config import Config
from posedge.agent.health import HealthContext
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.printer import VirtualPrinter
from posedge.simulator.reader import VirtualReader

_ids = itertools.count()


def config(**sections: dict[str, Any]) -> Config:
    return Config.model_validate(sections)


def context(cfg: Config, state_dir: Path, **fields: Any) -> HealthContext:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return HealthContext(config=cfg, state_dir=state_dir, now=time.time(), **fields)


@pytest.fixture
def sim_printer() -> Iterator[tuple[str, VirtualPrinter]]:
    name = f"health-printer-{next(_ids)}"
    device = VirtualPrinter()
    register_sim_device(name, device)
    yield f"sim://{name}", device
    unregister_sim_device(name)


@pytest.fixture
def sim_reader() -> Iterator[tuple[str, VirtualReader]]:
    name = f"health-reader-{next(_ids)}"
    device = VirtualReader("framed")
    register_sim_device(name, device)
    yield f"sim://{name}", device
    unregister_sim_device(name)
    device.close()
