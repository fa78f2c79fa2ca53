"""Journal append throughput and latency against two same-run baselines.

(a) raw: append 300 bytes to a file and fsync, one write per event;
(b) persist-queue ``SQLiteAckQueue.put`` with the same payload (a peer library);
(c) posedge journal appends, one event per commit, chain included.

All three run in one directory, interleaved in small slices so that the
disk's noise hits each alike. Reports events/s, p50/p99 latency and the ratios.
Targets: (c) ≥ 0.8 × (a) and ≥ 1.0 × (b).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_journal.py [--slice 100] [--slices 40] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from posedge.agent.journal import Journal

PAYLOAD_BYTES = 300


def payload_text() -> str:
    return "x" * PAYLOAD_BYTES


class RawFsync:
    """(a) append 300 bytes to a file and fsync."""

    def __init__(self, directory: Path) -> None:
        self.record = (payload_text() + "\n").encode()
        self.fd = os.open(directory / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def step(self, number: int) -> None:
        os.write(self.fd, self.record)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class PersistQueuePut:
    """(b) persist-queue SQLiteAckQueue.put, the peer library."""

    def __init__(self, directory: Path) -> None:
        from persistqueue import SQLiteAckQueue  # type: ignore[import-untyped]

        self.queue = SQLiteAckQueue(str(directory / "pq"), auto_commit=True, multithreading=False)
        self.text = payload_text()

    def step(self, number: int) -> None:
        self.queue.put(self.text)

    def close(self) -> None:
        del self.queue


class JournalAppend:
    """(c) posedge journal append: one event per commit, chain and projection included."""

    def __init__(self, directory: Path) -> None:
        self.journal = Journal.open(directory / "journal")
        self.pad = "x" * (PAYLOAD_BYTES - 40)  # ~300 bytes of payload per event

    def step(self, number: int) -> None:
        self.journal.append("bench.event", {"n": number, "pad": self.pad}, txn=f"t{number // 6}")

    def close(self) -> None:
        self.journal.close()


def timed(
    runner: RawFsync | PersistQueuePut | JournalAppend, first: int, count: int
) -> list[float]:
    latencies = []
    for number in range(first, first + count):
        start = time.perf_counter()
        runner.step(number)
        latencies.append(time.perf_counter() - start)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    total = sum(latencies)
    return {
        "events": len(latencies),
        "events_per_s": round(len(latencies) / total, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slice", type=int, default=100, help="events per interleaved slice")
    parser.add_argument("--slices", type=int, default=40, help="slices per contender")
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to test")
    args = parser.parse_args()
    kinds = {"raw_fsync": RawFsync, "persist_queue": PersistQueuePut, "journal": JournalAppend}
    results: dict[str, list[float]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="posedge-bench-") as tmp:
        runners = {}
        for name, kind in kinds.items():
            directory = Path(tmp) / name
            directory.mkdir()
            runners[name] = kind(directory)
        # Small interleaved slices: the disk's noise falls on all three alike.
        for slice_no in range(args.slices):
            for name, runner in runners.items():
                results[name] += timed(runner, slice_no * args.slice, args.slice)
        for runner in runners.values():
            runner.close()
    report = {name: summary(lat) for name, lat in results.items()}
    journal_rate = report["journal"]["events_per_s"]
    report["ratios"] = {
        "journal_vs_raw_fsync": round(journal_rate / report["raw_fsync"]["events_per_s"], 3),
        "journal_vs_persist_queue": round(
            journal_rate / report["persist_queue"]["events_per_s"], 3
        ),
        "targets": {"journal_vs_raw_fsync": 0.8, "journal_vs_persist_queue": 1.0},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
