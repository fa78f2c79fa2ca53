"""The simulated world of ``posedge run --simulate`` and ``posedge demo``: a plug-in.

The agent only states what it needs of a simulated world — a printer and a card
reader reachable as ``sim://printer`` / ``sim://reader`` that take faults, and an
optional embedded back office it can fault, stop and restart — and loads the
implementation from the ``posedge.simulation`` entry point group (name ``world``).
The simulator registers :func:`posedge.simulator.world.start_simulated_world`
there; the agent never imports the simulator (no package cycle), and without it
``--simulate`` is a configuration error that says what to install.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, cast

from .errors import ConfigError

SIMULATION_ENTRY_POINTS = "posedge.simulation"
WORLD_ENTRY_POINT = "world"
MISSING_SIMULATOR = (
    "simulation needs the posedge simulator (package posedge.simulator, part of the posedge "
    "distribution: pip install posedge), which provides the simulated world in the "
    f"{SIMULATION_ENTRY_POINTS!r} entry point group; it is not installed"
)


class SimulatedDevice(Protocol):
    """A virtual printer or card reader: faults by name (``paper_out``, ``card``, …)."""

    def apply_fault(self, name: str, **params: Any) -> None: ...


class FaultRules(Protocol):
    """The embedded back office's fault rules (``{"kind": "down", "duration_s": 30}``, …)."""

    def add(self, rule: dict[str, Any]) -> object:
        """Add one rule; ValueError when it is not a valid rule."""
        ...

    def clear(self) -> None: ...

    def describe(self) -> list[dict[str, Any]]: ...


class SimulatedBackoffice(Protocol):
    """The embedded back office: a real server on loopback with fault injection."""

    @property
    def url(self) -> str: ...

    @property
    def faults(self) -> FaultRules: ...

    def start(self) -> object:
        """(Re)start listening on the same address: the end of an outage."""
        ...

    def stop(self) -> None:
        """Stop listening (connections refused: a real outage)."""
        ...


class SimulatedWorld(Protocol):
    """What ``run --simulate`` started; :meth:`close` undoes all of it."""

    @property
    def printer(self) -> SimulatedDevice: ...

    @property
    def reader(self) -> SimulatedDevice: ...

    @property
    def backoffice(self) -> SimulatedBackoffice | None:
        """The embedded back office; None when the agent uses an external one."""
        ...

    def close(self) -> None: ...


class WorldFactory(Protocol):
    """The ``posedge.simulation`` entry point ``world``."""

    def __call__(
        self, state_dir: Path, *, card_delay_s: float, embedded_backoffice: bool
    ) -> SimulatedWorld: ...


def load_world_factory() -> WorldFactory:
    """The installed simulated world; :class:`ConfigError` (exit 2) when there is none."""
    found = entry_points(group=SIMULATION_ENTRY_POINTS, name=WORLD_ENTRY_POINT)
    if not found:
        raise ConfigError(MISSING_SIMULATOR)
    entry = next(iter(found))
    try:
        factory: object = entry.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{MISSING_SIMULATOR} ({entry.value} cannot be loaded: {exc})") from None
    if not callable(factory):
        raise ConfigError(f"the simulated world {entry.value} is not callable")
    return cast(WorldFactory, factory)


def start_simulated_world(
    state_dir: Path, *, card_delay_s: float = 0.3, embedded_backoffice: bool = True
) -> SimulatedWorld:
    """Virtual printer and reader on ``sim://`` and (unless told not to) a back office on
    loopback whose database is ``backoffice.sqlite3`` in the state directory."""
    return load_world_factory()(
        state_dir, card_delay_s=card_delay_s, embedded_backoffice=embedded_backoffice
    )
