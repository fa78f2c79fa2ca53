"""Benchmark: wall time of ``posedge --help`` (and of a few ``posedge <cmd> --help``).

Each command runs as a fresh process, as a user types it: the console script
``posedge`` of this venv, N times in turn with the baseline ``python -c pass``
(the interpreter's own start-up, with the same site-packages and editable-install
finder), so both see the same machine load. Reports the median and p90 of each,
the extra time over the baseline, and the ratio. Target: ``posedge --help`` within
0.25 s (issue 13: lazily imported commands; it took ~0.75 s when every command
module was imported up front). Also prints what ``python -X importtime`` says the
slowest imports of ``posedge.agent.cli`` are, for the next person chasing it.

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py [--runs N] [--json]``.
Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_HELP_S = 0.25
POSEDGE = Path(sys.executable).parent / "posedge"
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "posedge --help": [str(POSEDGE), "--help"],
    "posedge sync --help": [str(POSEDGE), "sync", "--help"],
    "posedge backoffice report --help": [str(POSEDGE), "backoffice", "report", "--help"],
    "posedge simulate --help": [str(POSEDGE), "simulate", "--help"],
}


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def slowest_imports(top: int = 8) -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time under posedge.agent.cli."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import posedge.agent.cli"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda row: row[1], reverse=True)[:top]


def measure(runs: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the page cache and .pyc files
        once(argv)
    for _ in range(runs):
        for name, argv in COMMANDS.items():  # interleaved: same load for all
            samples[name].append(once(argv))
    base = statistics.median(samples["python -c pass (baseline)"])
    results = {}
    for name, values in samples.items():
        median = statistics.median(values)
        results[name] = {
            "median_s": round(median, 4),
            "p90_s": round(statistics.quantiles(values, n=10)[-1], 4),
            "over_baseline_s": round(median - base, 4),
            "ratio_to_baseline": round(median / base, 2),
        }
    help_s = results["posedge --help"]["median_s"]
    return {
        "runs": runs,
        "results": results,
        "target_help_s": TARGET_HELP_S,
        "help_within_target": help_s <= TARGET_HELP_S,
        "slowest_imports_s": slowest_imports(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.runs} runs each, interleaved\n")
    print(f"{'command':<36} {'median':>8} {'p90':>8} {'+base':>8} {'ratio':>6}")
    for name, row in report["results"].items():
        print(f"{name:<36} {row['median_s']:>7.3f}s {row['p90_s']:>7.3f}s "
              f"{row['over_baseline_s']:>7.3f}s {row['ratio_to_baseline']:>5.2f}x")  # fmt: skip
    verdict = "within" if report["help_within_target"] else "OVER"
    print(f"\nposedge --help: {verdict} the {TARGET_HELP_S} s target")
    print("\nslowest imports of posedge.agent.cli (cumulative):")
    for module, seconds in report["slowest_imports_s"]:
        print(f"  {seconds * 1000:7.1f} ms  {module}")


if __name__ == "__main__":
    main()
