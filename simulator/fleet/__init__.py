"""The fleet load simulator: many simulated terminals speaking the sync protocol directly.

A library first (the evaluation harnesses of silence detection and the
dashboards build on it), a command second (``posedge simulate fleet``).
docs/fleet-simulator.md describes the model, the knobs and the fault syntax.

::

    fleet = build_fleet(terminals=1000, stores=100, seed=7)        # model
    faults = [parse_fault("silent:store004-lane02@+3d", fleet, start)]
    for lane in generate_history(fleet, start, end, faults):      # offline, no HTTP
        lane.terminal, lane.sales, lane.delivered(), lane.no_heartbeats
    sim = simulate_terminal(fleet, "store001-lane01", start, end)  # one full event chain
    report = run_fleet(fleet, RunOptions(backoffice=url, start=..., end=..., speed=None), faults)

The names below load their module on first use (``posedge`` imports the
command module on every invocation; the runner pulls in httpx and
cryptography). Nothing here is imported by the agent or the back office.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import (
        FAULT_KINDS,
        Fault,
        FaultSchedule,
        FaultSpecError,
        parse_duration,
        parse_fault,
        random_faults,
    )
    from .history import LaneDriver, LaneHistory, generate_history, simulate_terminal
    from .model import (
        Burstiness,
        Fleet,
        FleetError,
        Lane,
        OpeningHours,
        RateProfile,
        Store,
        build_fleet,
    )
    from .runner import FleetRunError, FleetRunner, RunOptions, run_fleet
    from .terminal import SaleMix, SimTerminal
    from .traffic import Traffic, hour_of_week_counts

_WHERE = {
    **dict.fromkeys(
        ("FAULT_KINDS", "Fault", "FaultSchedule", "FaultSpecError", "parse_duration",
         "parse_fault", "random_faults"),
        "faults",
    ),
    **dict.fromkeys(("LaneDriver", "LaneHistory", "generate_history", "simulate_terminal"),
                    "history"),
    **dict.fromkeys(
        ("Burstiness", "Fleet", "FleetError", "Lane", "OpeningHours", "RateProfile", "Store",
         "build_fleet"),
        "model",
    ),
    **dict.fromkeys(("FleetRunError", "FleetRunner", "RunOptions", "run_fleet"), "runner"),
    **dict.fromkeys(("SaleMix", "SimTerminal"), "terminal"),
    **dict.fromkeys(("Traffic", "hour_of_week_counts"), "traffic"),
}  # fmt: skip

__all__ = [
    "FAULT_KINDS",
    "Burstiness",
    "Fault",
    "FaultSchedule",
    "FaultSpecError",
    "Fleet",
    "FleetError",
    "FleetRunError",
    "FleetRunner",
    "Lane",
    "LaneDriver",
    "LaneHistory",
    "OpeningHours",
    "RateProfile",
    "RunOptions",
    "SaleMix",
    "SimTerminal",
    "Store",
    "Traffic",
    "build_fleet",
    "generate_history",
    "hour_of_week_counts",
    "parse_duration",
    "parse_fault",
    "random_faults",
    "run_fleet",
    "simulate_terminal",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
