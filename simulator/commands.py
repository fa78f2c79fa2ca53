"""The simulator's commands by reference (``posedge.commands`` entry points):
``posedge --help`` lists them from here without importing the simulator. Keep it light."""

from __future__ import annotations

from posedge.agent.cli.lazy import LazyCommand

simulate = LazyCommand(
    "posedge.simulator.cli:simulate",
    "Run simulated devices for tests, demos and technician training.",
)
demo = LazyCommand(
    "posedge.simulator.demo:demo",
    "Run a scripted session against simulated hardware and print a summary.",
)
