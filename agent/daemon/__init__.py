"""Reusable parts of the ``posedge run`` daemon: systemd notify, watchdog, signals, lock.

The daemon composition (``agent/service.py``) wires these together; nothing
here knows about sales, devices or the journal. This package must never import
from the rest of the agent beyond ``errors`` (so it stays reusable and cheap
to import).
"""

from __future__ import annotations

from .lockfile import LOCK_FILE_NAME, DaemonAlreadyRunning, StateDirLock
from .notify import Notifier, monotonic_usec, watchdog_interval
from .signals import SignalHandlers, install_signal_handlers
from .watchdog import TEST_STALL_ENV, Heartbeat, Verdict, WatchdogSupervisor

__all__ = [
    "LOCK_FILE_NAME",
    "TEST_STALL_ENV",
    "DaemonAlreadyRunning",
    "Heartbeat",
    "Notifier",
    "SignalHandlers",
    "StateDirLock",
    "Verdict",
    "WatchdogSupervisor",
    "install_signal_handlers",
    "monotonic_usec",
    "watchdog_interval",
]
