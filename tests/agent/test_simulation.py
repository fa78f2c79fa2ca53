"""``run --simulate`` loads its simulated world from the simulator's entry point."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from posedge.agent import simulation
from posedge.agent.config import Config
from posedge.agent.errors import ConfigError
from posedge.agent.service import Agent


def _installed(monkeypatch: pytest.MonkeyPatch, *found: EntryPoint) -> None:
    def entry_points(group: str, name: str) -> list[EntryPoint]:
        return [e for e in found if e.group == group and e.name == name]

    monkeypatch.setattr(simulation, "entry_points", entry_points)


def test_the_simulator_provides_the_world() -> None:
    factory = simulation.load_world_factory()
    assert f"{factory.__module__}.{factory.__name__}" == (  # type: ignore[attr-defined]
        "posedge.simulator.world.start_simulated_world"
    )


def test_simulating_without_the_simulator_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _installed(monkeypatch)
    agent = Agent(Config(), tmp_path / "state", simulate=True)
    with pytest.raises(ConfigError) as info:
        asyncio.run(agent.start())
    message = str(info.value)
    assert "posedge simulator" in message and "pip install posedge" in message
    assert info.value.exit_code == 2
    assert agent.journal is None  # nothing was opened


def test_a_world_that_cannot_load_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, EntryPoint("world", "posedge.nowhere:world", "posedge.simulation"))
    with pytest.raises(ConfigError, match=r"posedge.nowhere:world cannot be loaded"):
        simulation.load_world_factory()
