"""Benchmark: wall time of ``posedge doctor`` with simulated devices (issue 13: ≤ 2 s).

Every run is the real console script in a subprocess, timed exec → exit, the way a
technician or a monitoring system (``--nagios``) runs it:

* **baseline** — ``posedge --version``: the interpreter and the CLI's own start;
* **local** — no daemon: the doctor opens the simulated printer and reader (``sim://``)
  and the journal (``--events`` events, default 10,000) read-only, verifies the chain, asks
  a reference back office over loopback (token checked), and runs every terminal check;
* **daemon** — ``posedge run --simulate`` running on another state directory: the doctor
  asks it over the till API and checks the embedded back office and the journal itself.

The three kinds run interleaved (``--runs`` rounds), so load on the machine hits them
alike; medians are reported with min/max and as ratios to the baseline's median.

Run: ``.venv/bin/python benchmarks/bench_doctor.py [--runs N] [--events N]``. Prints one
JSON document. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from posedge.agent.config import Config
from posedge.agent.errors import PeerUnreachable
from posedge.agent.health.daemonlink import DaemonLink
from posedge.agent.journal import Journal
from posedge.backoffice.app import BackofficeConfig
from posedge.simulator.backoffice import BackofficeServer

POSEDGE = Path(sys.executable).parent / "posedge"
TARGET_S = 2.0
READY_TIMEOUT_S = 60.0
TERMINAL = "bench-doctor-1"
TOKEN = "bench-doctor-token-0123456789"


def timed(argv: list[str]) -> tuple[float, int, list[str]]:
    """Wall time, exit code and (from doctor's JSON) the checks that did not pass."""
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, timeout=120, text=True)
    elapsed = time.perf_counter() - started
    try:
        checks = json.loads(done.stdout)["checks"]
    except (ValueError, KeyError, TypeError):
        checks = []
    flagged = [f"{c['name']}={c['status']}" for c in checks if c["status"] in ("warn", "fail")]
    return elapsed, done.returncode, flagged


def prepare_local(root: Path, events: int, backoffice_url: str) -> tuple[Path, Path]:
    state = root / "local"
    state.mkdir(mode=0o700)
    with Journal.open(state) as journal:
        for number in range(events):
            txn = f"s{number // 8}"
            journal.append("sale.created", {"amount": 100 + number, "currency": "EUR"}, txn=txn)
    token_file = root / "sync-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = root / "local.toml"
    config.write_text(
        f'[terminal]\nid = "{TERMINAL}"\n'
        f'[sync]\nurl = "{backoffice_url}"\ntoken_file = "{token_file}"\n'
        '[printer]\nurl = "sim://printer"\n[reader]\nurl = "sim://reader"\n'
    )
    return state, config


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    state = root / "daemon"
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    proc = subprocess.Popen(
        [str(POSEDGE), "--state-dir", str(state), "run", "--simulate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:  # ready once its API answers with the health checks run
        try:
            health = DaemonLink.connect(Config(), state).status().get("health") or {}
            if health.get("checks"):
                return proc, state
        except PeerUnreachable:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the daemon did not come up (exit {proc.poll()})")
        time.sleep(0.1)


def summary(samples: list[float], baseline: float) -> dict[str, Any]:
    median = statistics.median(samples)
    return {
        "median_s": round(median, 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "ratio_to_baseline": round(median / baseline, 2),
        "meets_target": median <= TARGET_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp:
        root = Path(tmp)
        backoffice = BackofficeServer(
            root / "bo.sqlite3", config=BackofficeConfig(tokens={TERMINAL: TOKEN})
        ).start()
        daemon, daemon_state = start_daemon(root)
        try:
            local_state, local_config = prepare_local(root, args.events, backoffice.url)
            argv = {
                "baseline": [str(POSEDGE), "--version"],
                "local": [str(POSEDGE), "--state-dir", str(local_state), "--config",
                          str(local_config), "--json", "doctor"],
                "daemon": [str(POSEDGE), "--state-dir", str(daemon_state), "--json", "doctor"],
            }  # fmt: skip
            samples: dict[str, list[float]] = {kind: [] for kind in argv}
            codes: dict[str, set[int]] = {kind: set() for kind in argv}
            flagged: dict[str, set[str]] = {kind: set() for kind in argv}
            for kind in argv:  # one warm-up each (page cache, bytecode)
                timed(argv[kind])
            for _ in range(args.runs):
                for kind, command in argv.items():
                    elapsed, code, found = timed(command)
                    samples[kind].append(elapsed)
                    codes[kind].add(code)
                    flagged[kind].update(found)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            backoffice.close()
    baseline = statistics.median(samples["baseline"])
    report = {
        "target_s": TARGET_S,
        "runs": args.runs,
        "journal_events": args.events,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "baseline_version": {"median_s": round(baseline, 3)},
        **{
            f"doctor_{kind}": summary(samples[kind], baseline)
            | {"exit_codes": sorted(codes[kind]), "not_ok": sorted(flagged[kind])}
            for kind in ("local", "daemon")
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
