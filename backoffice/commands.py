"""The ``posedge backoffice`` command by reference (the ``posedge.commands`` entry point):
``posedge --help`` lists it from here without importing the back office. Keep it light."""

from __future__ import annotations

from posedge.agent.cli.lazy import LazyCommand

backoffice = LazyCommand(
    "posedge.backoffice.cli:backoffice",
    "The back office: the sync protocol's server side, and what it holds.",
)
