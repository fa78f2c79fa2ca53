"""``serve``'s alert loop in a child process: it runs rounds on the server's database, a
child that dies is started again, a reload restarts it with the new configuration, stop
leaves no process behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from posedge.backoffice.alerting.config import AlertConfig
from posedge.backoffice.alerting.process import ALERT_NICENESS, AlertProcess
from posedge.backoffice.store import BackofficeStore

from .support import T0, Till, sim_terminal


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it runs nothing.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def flag_count(target: Path | str) -> int:
    with BackofficeStore(target) as store:
        return int(store.db.execute("SELECT count(*) FROM anomaly_flags").rows[0][0])


def test_the_child_evaluates_restarts_after_a_crash_and_stops(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:  # the server made the schema
        till = Till(sim_terminal())
        till.add(T0, "config.changed", None, {"changed": ["sales"], "restart_required": []})
        till.upload(store)
    process = AlertProcess(db_target, AlertConfig(interval_s=0.2), restart_pause_s=0.1).start()
    try:
        first = process.pid
        assert alive(first)
        # A round in the child flags the configuration change (an anomaly, in the database).
        wait_for(lambda: flag_count(db_target) >= 1, 60, "the child's first round")
        assert first is not None
        # Background work: the server's requests get the CPU first.
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, first) == min(19, ours + ALERT_NICENESS)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: process.pid != first and alive(process.pid), 30, "a new child")
        assert process.starts == 2
        second = process.pid
        process.reload(replace(process.config, interval_s=0.3))
        assert process.pid != second and alive(process.pid) and not alive(second)
        assert process.config.interval_s == 0.3
    finally:
        last = process.pid
        process.stop()
    assert not alive(last)
