"""Test doubles for the daemon package: a fake clock, a recording notifier, a log capture."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from posedge.agent.daemon import Notifier


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> float:
        self.now_s += seconds
        return self.now_s


class RecordingNotifier(Notifier):
    """A Notifier that keeps the datagrams instead of sending them."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.sent: list[str] = []

    def send(self, *assignments: str) -> bool:
        self.sent.append("\n".join(assignments))
        return True

    @property
    def pings(self) -> int:
        return self.sent.count("WATCHDOG=1")

    @property
    def statuses(self) -> list[str]:
        return [m.removeprefix("STATUS=") for m in self.sent if m.startswith("STATUS=")]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured_logs(name: str = "posedge.daemon") -> Iterator[list[logging.LogRecord]]:
    """Records of logger ``name`` (posedge loggers do not propagate to caplog's root)."""
    logger = logging.getLogger(name)
    handler = _ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
