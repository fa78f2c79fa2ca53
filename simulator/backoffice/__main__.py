"""``python -m posedge.simulator.backoffice serve|report …`` — the same commands as
``posedge backoffice``, for hosts where only the simulator is wanted. Never adds behaviour."""

from __future__ import annotations

import click

from posedge.agent.cli.backoffice import backoffice

if __name__ == "__main__":
    backoffice.main(prog_name="python -m posedge.simulator.backoffice")
    raise click.exceptions.Exit(0)  # pragma: no cover - main() exits itself
