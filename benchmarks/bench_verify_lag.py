"""Benchmark: the till API's latency while the daemon verifies a big journal.

The daemon verifies the whole hash chain at start and every ``health.verify_interval``
(24 h). At a million events that walk is ~5 s of hashing on a fast core. Done in a
thread of the daemon it took the interpreter lock in turns with the event loop: ``GET
/v1/status`` p99 went from 2.7 ms to 34 ms for the whole walk (ratio 12.5). The walk
now runs in a child process (``agent/health/verifyproc.py``): 2.5 ms (ratio 1.0).

One real ``posedge run --simulate`` on a state directory holding ``--events`` journal
events (built before, and uploaded by an earlier run of the daemon to its embedded back
office, so only the verify is left to do; the last verify cleared so the first health
run walks the chain). From READY, ``GET /v1/status`` is asked over the till API
socket every 20 ms:

* **during** — from READY until the verify is recorded in the journal's meta;
* **after** (the baseline, same daemon, same run) — the next ``--after-s`` seconds.

Reported: p50/p99/max of both, the ratio of the p99s, the walk's duration and events.
Target: p99 during ≤ 2 × p99 after.

Run: ``.venv/bin/python benchmarks/bench_verify_lag.py [--events 1000000] [--after-s 10]``.
Prints one JSON document. Not a pytest module; Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import NotifySocket

from posedge.agent.journal import Journal

POSEDGE = Path(sys.executable).parent / "posedge"
VERIFY_KEY = "health_last_verify"
READY_TIMEOUT_S = 60.0
PROBE_EVERY_S = 0.02
RATIO_TARGET = 2.0
SYNC_TIMEOUT_S = 600.0


class Daemon:
    def __init__(self, state: Path, work: Path) -> None:
        self._notify_dir = Path(tempfile.mkdtemp(prefix="pv-", dir="/tmp"))  # short sun_path
        self.notify = NotifySocket(self._notify_dir)
        config = work / "empty.toml"
        config.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSEDGE_", "WATCHDOG"))}
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.log = (work / "daemon.log").open("a")
        args = [str(POSEDGE), "--state-dir", str(state), "--config", str(config), "--json",
                "run", "--simulate"]  # fmt: skip
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=self.log)
        self.notify.wait_ready(READY_TIMEOUT_S)
        assert self.proc.stdout is not None
        self.socket = str(json.loads(self.proc.stdout.readline())["socket"])
        self.token = (state / "api-token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.notify.close()
        self._notify_dir.rmdir()
        self.log.close()


def build(state: Path, work: Path, events: int) -> float:
    """A journal of ``events`` events in a daemon's state directory; seconds taken."""
    Daemon(state, work).stop()  # keys, token and journal as the daemon makes them
    started = time.monotonic()
    with Journal.open(state) as journal:
        # Building only: no fsync per event (the daemon later opens it as it is).
        journal._conn.execute("PRAGMA synchronous = OFF")
        for n in range(events - journal.head().seq):
            journal.append("device.status", {"device": "printer", "state": "ready", "n": n})
    took = time.monotonic() - started
    # One run of the daemon uploads them to its embedded back office: the measured run
    # then has no backlog to sync, only the verify to do.
    daemon = Daemon(state, work)
    try:
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while not synced(state):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backlog was not synced in {SYNC_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
    finally:
        daemon.stop()
    with Journal.open(state) as journal:
        journal.set_meta(VERIFY_KEY, "")  # never verified: the first health run walks it
    return took


def synced(state: Path) -> bool:
    with Journal.open(state, readonly=True) as journal:
        return journal.acked_seq() >= journal.head().seq


def verified(state: Path) -> dict[str, Any] | None:
    conn = sqlite3.connect(f"file:{state / 'journal.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (VERIFY_KEY,)).fetchone()
    finally:
        conn.close()
    if not row or not row[0]:
        return None
    found: dict[str, Any] = json.loads(row[0])
    return found


def stats(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50_ms": round(ordered[len(ordered) // 2], 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "max_ms": round(ordered[-1], 2)}  # fmt: skip


def measure(state: Path, work: Path, after_s: float) -> dict[str, Any]:
    daemon = Daemon(state, work)
    ready = time.monotonic()
    during: list[float] = []
    after: list[float] = []
    done: dict[str, Any] | None = None
    walked_s = None
    try:
        transport = httpx.HTTPTransport(uds=daemon.socket)
        headers = {"Authorization": f"Bearer {daemon.token}"}
        with httpx.Client(transport=transport, base_url="http://posedge", headers=headers) as c:
            while True:
                asked = time.perf_counter()
                c.get("/v1/status").raise_for_status()
                took = (time.perf_counter() - asked) * 1000
                if done is None:
                    during.append(took)
                    done = verified(state)
                    if done is not None:
                        walked_s = time.monotonic() - ready
                        finished = time.monotonic()
                else:
                    after.append(took)
                    if time.monotonic() - finished >= after_s:
                        break
                time.sleep(PROBE_EVERY_S)  # the probe's pace, not a synchronisation
    finally:
        daemon.stop()
    assert done is not None and done["ok"], done
    return {"verified_events": done["events"], "verify_s_from_ready": round(walked_s or 0, 1),
            "during": stats(during), "after": stats(after)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--after-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="posedge-bench-verify-") as tmp:
        work = Path(tmp)
        state = work / "state"
        built_s = build(state, work, args.events)
        result = measure(state, work, args.after_s)
    ratio = result["during"]["p99_ms"] / result["after"]["p99_ms"]
    met = ratio <= RATIO_TARGET
    doc = {"events": args.events, "build_s": round(built_s, 1), **result,
           "p99_ratio_during_to_after": round(ratio, 2),
           "target": {"p99_ratio_max": RATIO_TARGET, "met": met}}  # fmt: skip
    print(json.dumps(doc, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
