"""Benchmark: idle CPU of ``posedge run --simulate`` with health checks vs without.

Issue 13 target: idle CPU with health checks running ≤ 1 % of one core.

Three daemons idle side by side for ``--idle-s`` (default 60) after READY and a settle
period, each a real subprocess on its own state directory with the simulated printer,
reader and embedded back office:

* **baseline** — ``[health] enabled = false``: devices are still polled every 10 s (as
  before issue 13), no checks run. The floor the checks add to.
* **checks** — the default ``[health]``: device checks every 10 s, the rest every 60 s.
* **checks_1s** — every check every second (``poll_interval = check_interval = 1s``): 10x
  (devices) and 60x (the rest) the default rate, to show what one run costs.

CPU is ``utime+stime`` of the whole process (all threads) from ``/proc/<pid>/stat`` over
the same window for all three. Reported: % of one core per mode, the checks' share above
the baseline, and the ratio to the baseline. Not a pytest module; Linux only.

Run: ``.venv/bin/python benchmarks/bench_health_idle.py [--idle-s 60] [--settle-s 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import CLK_TCK, NotifySocket, cpu_ticks

POSEDGE = Path(sys.executable).parent / "posedge"
CPU_TARGET_PCT = 1.0
READY_TIMEOUT_S = 30.0
MODES = {
    "baseline": "[health]\nenabled = false\n",
    "checks": "",
    "checks_1s": '[health]\npoll_interval = "1s"\ncheck_interval = "1s"\n',
}


class IdleDaemon:
    def __init__(self, mode: str, work: Path) -> None:
        self.mode = mode
        self._notify_dir = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))  # short sun_path
        self.notify = NotifySocket(self._notify_dir)
        config = work / f"{mode}.toml"
        config.write_text(MODES[mode])
        state = work / f"{mode}-state"
        args = [str(POSEDGE), "--state-dir", str(state), "--config", str(config), "run",
                "--simulate"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSEDGE_", "WATCHDOG"))}
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.log = (work / f"{mode}.log").open("w")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.notify.wait_ready(READY_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self._notify_dir.rmdir()
        self.log.close()


def measure(work: Path, idle_s: float, settle_s: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        daemons = {}
        for mode in MODES:
            daemon = IdleDaemon(mode, work)
            stack.callback(daemon.stop)
            daemons[mode] = daemon
        time.sleep(settle_s)  # start-up work (first poll, first full check run) is done
        started = time.monotonic()
        ticks = {mode: cpu_ticks(d.proc.pid) for mode, d in daemons.items()}
        time.sleep(idle_s)
        wall = time.monotonic() - started
        for mode, daemon in daemons.items():
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"{mode}: the daemon died while idle; see {daemon.log.name}")
            cpu_s = (cpu_ticks(daemon.proc.pid) - ticks[mode]) / CLK_TCK
            results[mode] = {"window_s": round(wall, 2), "cpu_s": round(cpu_s, 3),
                             "cpu_pct_of_one_core": round(100 * cpu_s / wall, 3)}  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="posedge-bench-health-") as tmp:
        results = measure(Path(tmp), args.idle_s, args.settle_s)
    base = results["baseline"]["cpu_s"]
    for row in results.values():
        row["ratio_to_baseline"] = round(row["cpu_s"] / base, 2) if base else None
        row["above_baseline_pct_of_one_core"] = round(
            100 * (row["cpu_s"] - base) / row["window_s"], 3
        )
    checks = results["checks"]["cpu_pct_of_one_core"]
    print(json.dumps({"idle_s": args.idle_s, "modes": results,
                      "target": {"checks_cpu_pct_max": CPU_TARGET_PCT,
                                 "met": checks <= CPU_TARGET_PCT}}, indent=2))  # fmt: skip
    return 0 if checks <= CPU_TARGET_PCT else 1


if __name__ == "__main__":
    raise SystemExit(main())
