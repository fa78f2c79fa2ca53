"""Benchmark: ``posedge run`` start-up time to ``READY=1``, idle memory, idle CPU.

Issue 6 targets on the reference machine: exec → ``READY=1`` ≤ 1.0 s, idle RSS
after one minute ≤ 60 MiB, idle CPU ≤ 1 % of one core with the default polling
intervals. Measured the way systemd sees the daemon: a real subprocess with
``NOTIFY_SOCKET`` on a datagram socket this script owns.

* **baseline** — ``python -c pass`` exec → exit (the interpreter's own start),
  median of ``--runs``; the READY time is also reported as a ratio to it.
* **exec → READY=1** — median (and min/max) of ``--runs`` cold starts, each on a
  fresh state directory (keys, journal and back office database are created),
  plus the same number of warm starts on an existing one.
* **idle** — one daemon per mode left alone for ``--idle-s`` (default 60) after
  READY; RSS (``VmRSS``, and ``VmHWM`` the peak) read from ``/proc/<pid>/status``
  at the end, CPU from ``utime+stime`` in ``/proc/<pid>/stat`` over the window
  (all threads of the process).

Two modes, idled side by side: ``simulate`` (``--simulate``: virtual printer and
reader polled every 10 s, and the embedded reference back office — in-process, so
it counts — receiving heartbeats every minute) and ``bare`` (no devices, no
back office: the agent's own floor). The targets are checked on ``simulate``,
the heavier of the two.

Run: ``.venv/bin/python benchmarks/bench_daemon.py [--runs N] [--idle-s S]``.
Prints one JSON document. Not a pytest module; Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

POSEDGE = Path(sys.executable).parent / "posedge"
READY_TARGET_S = 1.0
RSS_TARGET_MIB = 60.0
CPU_TARGET_PCT = 1.0
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("simulate", "bare")


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_ready(self, timeout_s: float) -> float:
        """Block until READY=1; the monotonic time it arrived."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no READY=1 within {timeout_s}s")
            self.sock.settimeout(remaining)
            data = self.sock.recv(4096)
            if b"READY=1" in data.split(b"\n"):
                return time.monotonic()

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


class RunningDaemon:
    """``posedge run`` in one mode, started and timed to READY=1."""

    def __init__(self, mode: str, state_dir: Path, work: Path) -> None:
        self.mode = mode
        notify_dir = Path(tempfile.mkdtemp(prefix="pb-", dir="/tmp"))  # short sun_path
        self.notify = NotifySocket(notify_dir)
        self._notify_dir = notify_dir
        config = work / "empty.toml"
        config.touch()
        args = [str(POSEDGE), "--state-dir", str(state_dir), "--config", str(config), "run"]
        if mode == "simulate":
            args.append("--simulate")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSEDGE_", "WATCHDOG"))}
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.log = (work / f"{mode}-{state_dir.name}.log").open("w")
        self.exec_at = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        try:
            self.ready_s = self.notify.wait_ready(READY_TIMEOUT_S) - self.exec_at
        except TimeoutError:
            self.proc.kill()
            self.stop()
            tail = Path(self.log.name).read_text().splitlines()[-20:]
            raise RuntimeError(
                f"{mode}: no READY=1 within {READY_TIMEOUT_S}s (exit {self.proc.returncode}); "
                "stderr:\n" + "\n".join(tail)
            ) from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.notify.close()
        self._notify_dir.rmdir()
        self.log.close()
        return code


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def memory_kib(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
    }


def baseline_python(runs: int) -> list[float]:
    """``python -c pass`` exec → exit, the floor any Python daemon starts from."""
    samples = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.monotonic() - started)
    return samples


def time_to_ready(mode: str, work: Path, runs: int) -> dict[str, Any]:
    cold, warm = [], []
    for run in range(runs):
        state = work / f"{mode}-ready-{run}"
        for samples in (cold, warm):  # a fresh state dir, then the same one again
            daemon = RunningDaemon(mode, state, work)
            samples.append(daemon.ready_s)
            if (code := daemon.stop()) != 0:
                raise RuntimeError(f"{mode}: posedge run exited {code}; see {daemon.log.name}")
    return {"cold_s": summary(cold), "warm_s": summary(warm)}


def idle(work: Path, idle_s: float, settle_s: float) -> dict[str, dict[str, Any]]:
    """All modes idle side by side for ``idle_s``; RSS at the end, CPU over the window."""
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        daemons = {}
        for mode in MODES:
            daemon = RunningDaemon(mode, work / f"{mode}-idle", work)
            stack.callback(daemon.stop)
            daemons[mode] = daemon
        time.sleep(settle_s)  # let start-up work (first poll, first sync) finish
        start_wall = time.monotonic()
        start_ticks = {mode: cpu_ticks(d.proc.pid) for mode, d in daemons.items()}
        time.sleep(idle_s)
        wall = time.monotonic() - start_wall
        for mode, daemon in daemons.items():
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"{mode}: the daemon died while idle; see {daemon.log.name}")
            cpu_s = (cpu_ticks(daemon.proc.pid) - start_ticks[mode]) / CLK_TCK
            mem = memory_kib(daemon.proc.pid)
            results[mode] = {
                "window_s": round(wall, 2),
                "cpu_s": round(cpu_s, 3),
                "cpu_pct_of_one_core": round(100 * cpu_s / wall, 3),
                "rss_mib": round(mem["VmRSS"] / 1024, 1),
                "peak_rss_mib": round(mem["VmHWM"] / 1024, 1),
                "threads": mem["Threads"],
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per mode (default 5)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle window (default 60)")
    parser.add_argument(
        "--settle-s", type=float, default=2.0, help="wait after READY before the idle window"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="posedge-bench-") as tmp:
        work = Path(tmp)
        base = baseline_python(max(args.runs, 5))
        base_median = statistics.median(base)
        ready = {mode: time_to_ready(mode, work, args.runs) for mode in MODES}
        for numbers in ready.values():
            numbers["cold_ratio_to_baseline"] = round(numbers["cold_s"]["median"] / base_median, 1)
        idle_numbers = idle(work, args.idle_s, args.settle_s)
    checked = "simulate"
    measured = {
        "ready_s": (ready[checked]["cold_s"]["median"], READY_TARGET_S),
        "idle_rss_mib": (idle_numbers[checked]["rss_mib"], RSS_TARGET_MIB),
        "idle_cpu_pct": (idle_numbers[checked]["cpu_pct_of_one_core"], CPU_TARGET_PCT),
    }
    report = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "baseline_python_c_pass_s": summary(base),
        "exec_to_ready": ready,
        "idle": idle_numbers,
        "targets_checked_on": checked,
        "targets": {
            name: {"value": value, "target": target, "ok": value <= target}
            for name, (value, target) in measured.items()
        },
    }
    print(json.dumps(report, indent=2))
    return 0 if all(value <= target for value, target in measured.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
