"""The daemon's whole-chain journal verify, in a child process of its own.

Walking a journal of a million events is about 5 s of hashing in Python on a fast core
(several times that on a terminal's). In a thread of the daemon it took the interpreter
lock in turns with the event loop, and every till request paid for it: ``GET
/v1/status`` p99 went from 2.7 ms to 34 ms for the whole walk
(``benchmarks/bench_verify_lag.py``; 2.5 ms with the child). A child competes for CPU
only, at a lower priority (``nice`` +10) where the service may lower it: the unit's
``SystemCallFilter=~@resources`` refuses ``setpriority``, and the child then runs at the
daemon's priority.

The child is ``python -m posedge.agent.health.verifyproc STATE_DIR PARENT_PID``. It
opens the journal read-only through a connection of its own, as the in-process verify
did, and prints one JSON document: the :class:`~..journal.verify.VerifyResult` as a
dict (plus ``verified_by``: its pid and niceness), or the journal error that stopped
it. On Linux the kernel kills it with the daemon (a SIGKILLed daemon leaves no orphan
walking the journal). When no child can be started, or it dies without an answer, the
verify runs in this process as before: a slower till for a while beats a chain left
unverified.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..daemon.children import BACKGROUND_NICENESS, die_with_parent, lower_priority

log = logging.getLogger("posedge.health")

VERIFY_NICENESS = BACKGROUND_NICENESS
EXIT_JOURNAL_ERROR = 3


class VerifyChildError(RuntimeError):
    """The child could not verify: the journal error it met, by kind and message."""


def verify_in_child(state_dir: Path) -> dict[str, Any]:
    """``VerifyResult.as_dict()`` of the journal in ``state_dir``, computed by a child
    (in this process when no child answers). Raises :class:`VerifyChildError` for a
    journal the child could not open (missing, corrupt, wrong key)."""
    argv = [sys.executable, "-m", __name__, str(state_dir), str(os.getpid())]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        log.warning("cannot start the journal verify process (%s); verifying here", exc)
        return verify_here(state_dir)
    answer = _answer(done.stdout)
    if done.returncode == 0 and answer is not None and "ok" in answer:
        return answer
    if done.returncode == EXIT_JOURNAL_ERROR and answer is not None and "error" in answer:
        raise VerifyChildError(f"{answer['error']}: {answer.get('message', '')}")
    log.warning(
        "the journal verify process ended without an answer (exit code %s: %s); verifying here",
        done.returncode,
        done.stderr.strip()[-300:] or "no output",
    )
    return verify_here(state_dir)


def verify_here(state_dir: Path) -> dict[str, Any]:
    from ..journal import Journal
    from ..journal.verify import verify_journal

    with Journal.open(state_dir, readonly=True) as reader:
        return verify_journal(reader).as_dict()


def _answer(stdout: str) -> dict[str, Any] | None:
    try:
        found = json.loads(stdout)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def main(argv: list[str]) -> int:
    from ..journal.errors import JournalError

    state_dir, parent = Path(argv[0]), int(argv[1])
    die_with_parent(parent)
    lower_priority(VERIFY_NICENESS)
    try:
        doc = verify_here(state_dir)
    except JournalError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return EXIT_JOURNAL_ERROR
    doc["verified_by"] = {"pid": os.getpid(), "niceness": os.nice(0)}
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
