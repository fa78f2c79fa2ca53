"""What a background child process of a long-running posedge process does first.

Used by the daemon's journal verify (``agent/health/verifyproc.py``) and the back
office's alert process (``backoffice/alerting/process.py``): die with the parent, and
leave the CPU to it when both want it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
BACKGROUND_NICENESS = 10
"""Added to the parent's niceness; as ``nice`` runs background jobs."""


def die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when the thread that started it ends (a
    SIGKILLed parent leaves no orphan working on). Elsewhere the child must notice
    ``os.getppid()`` change itself. Exits at once if ``parent`` is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before prctl took effect
        os._exit(0)


def lower_priority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Add ``niceness``; False where ``setpriority`` is refused (a systemd unit with
    ``SystemCallFilter=~@resources``, a seccomp profile): the child then runs as is."""
    try:
        os.nice(niceness)
    except OSError:
        return False
    return True
