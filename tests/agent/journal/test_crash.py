"""A writer killed with SIGKILL at random moments never loses an acknowledged append."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from posedge.agent.journal import Journal, verify_journal

ROUNDS = 20

WRITER = r"""
import sys
from pathlib import Path
from posedge.agent.journal import Journal

with Journal.open(Path(sys.argv[1])) as jr:
    n = 0
    while True:
        event = jr.append("test.crash", {"n": n, "pad": "z" * 200}, txn=f"t{n % 7}")
        # Printed only after append returned: the event is promised durable.
        sys.stdout.write(f"{event.seq} {event.hash}\n")
        sys.stdout.flush()
        n += 1
"""


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    acknowledged: dict[int, str] = {}
    for _ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        wanted = rng.randint(1, 120)
        for _line in range(wanted):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "writer died"
            seq, digest = line.split()
            acknowledged[int(seq)] = digest
        proc.send_signal(signal.SIGKILL)  # mid-append, most of the time
        proc.wait(timeout=10)
        for line in proc.stdout:  # lines written before the kill landed
            if line.endswith("\n"):
                seq, digest = line.split()
                acknowledged[int(seq)] = digest
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    with Journal.open(tmp_path) as jr:
        stored = {e.seq: e.hash for e in jr.iter_events()}
        result = verify_journal(jr)
    assert result.ok, result.problem
    missing = [seq for seq, digest in acknowledged.items() if stored.get(seq) != digest]
    assert missing == []
    assert sorted(stored) == list(range(1, len(stored) + 1))
    assert len(acknowledged) >= ROUNDS
