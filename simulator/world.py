"""The simulated world of ``posedge run --simulate`` and ``posedge demo``.

A virtual printer and card reader registered as ``sim://printer`` and
``sim://reader``, and (unless the agent uses an external back office) the
back office with fault injection on loopback, its database in the state
directory. Registered in the ``posedge.simulation`` entry point group as
``world``; the agent loads it from there (:mod:`posedge.agent.simulation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device

from .backoffice import BackofficeServer
from .printer import VirtualPrinter
from .reader import VirtualReader

log = logging.getLogger("posedge.simulator")


@dataclass
class SimulatedWorld:
    """The simulated devices and back office of ``posedge run --simulate``."""

    printer: VirtualPrinter
    reader: VirtualReader
    backoffice: BackofficeServer | None
    """The embedded back office; None when the agent uses an external one."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("simulator cleanup failed")


def start_simulated_world(
    state_dir: Path, *, card_delay_s: float = 0.3, embedded_backoffice: bool = True
) -> SimulatedWorld:
    """Virtual printer and reader on ``sim://`` and (unless told not to) a back office on
    loopback whose database is ``backoffice.sqlite3`` in the state directory."""
    # The back office database lives in the state dir, which may not exist yet (the
    # journal creates it later, with the same mode).
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    printer = VirtualPrinter()
    reader = VirtualReader("magtek", auto_present=True, auto_present_delay_s=card_delay_s)
    register_sim_device("printer", printer)
    register_sim_device("reader", reader)
    world = SimulatedWorld(printer=printer, reader=reader, backoffice=None)
    world.cleanups += [
        lambda: unregister_sim_device("printer"),
        lambda: unregister_sim_device("reader"),
        reader.close,
    ]
    if embedded_backoffice:
        try:
            backoffice = BackofficeServer(state_dir / "backoffice.sqlite3")
            backoffice.start()
        except BaseException:
            world.close()
            raise
        world.backoffice = backoffice
        world.cleanups.append(backoffice.close)
    return world
