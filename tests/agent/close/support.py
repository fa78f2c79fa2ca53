"""A journal, a simulated printer and a closer with an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from posedge.agent.close.closer import Closer
from posedge.agent.config import Config
from posedge.agent.journal import Journal
from posedge.drivers.printer import ReceiptPrinter
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import VirtualPrinter


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Till:
    journal: Journal
    vprinter: VirtualPrinter
    printer: ReceiptPrinter
    closer: Closer
    clock: Clock
    config: Config

    def types(self, since: int = 0) -> list[str]:
        return [e.type for e in self.journal.iter_events(since)]

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.journal.iter_events() if e.type == type_]


@contextmanager
def till(tmp_path: Path, now: datetime, close: dict[str, Any] | None = None) -> Iterator[Till]:
    config = Config.model_validate({"close": close or {}})
    journal = Journal.open(tmp_path / "state")
    vprinter = VirtualPrinter()
    printer = ReceiptPrinter(InProcessTransport(vprinter, "sim://printer"))
    clock = Clock(now)
    closer = Closer(journal, lambda: config, terminal="t-1", printer=lambda: printer, clock=clock)
    try:
        yield Till(journal, vprinter, printer, closer, clock, config)
    finally:
        printer.close()
        journal.close()
