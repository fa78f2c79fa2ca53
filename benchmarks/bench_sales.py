"""Sales through the till API, end to end, against bare journal appends in the same run.

(a) sales: an in-process agent in simulate mode (virtual reader presenting a
    card at once, virtual printer, embedded reference back office, sync running)
    behind the real API server on a Unix socket; a till thread drives N sales
    one after the other over real HTTP (POST, then long-poll until final) — the
    next sale starts as soon as the reader is free, as a real till would.
    Reported: sustained sales/s (wall clock, first POST to last receipt printed)
    and p50/p99 from card read to receipt printed, taken from the journal's own
    event timestamps (``card.read`` → ``receipt.printed``); also POST → final
    as the till sees it.
(b) baseline: the same number of events as (a) journaled per sale, appended to a
    fresh journal in the same directory, one event per commit.

Targets (issue 5): ≥ 100 sales/s, p99 card read → receipt printed ≤ 50 ms.
Not run by CI.

    .venv/bin/python benchmarks/bench_sales.py [--sales 500] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx

from posedge.agent.journal import Journal

T = TypeVar("T")
WARMUP_SALES = 20
TARGET_SALES_PER_S = 100.0
TARGET_P99_MS = 50.0


POSEDGE = Path(sys.executable).parent / "posedge"
BENCH_CONFIG = """
[terminal]
id = "bench-lane"
[log]
level = "error"
"""


class AgentProcess:
    """``posedge run --simulate`` as its own process: the till (this process) is another,
    as on a real lane, so the two do not share an interpreter lock."""

    def __init__(self, state_dir: Path, config: Path) -> None:
        self.state_dir = state_dir
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.where: dict[str, Any] = {}

    @property
    def token(self) -> str:
        return (self.state_dir / "api-token").read_text().strip()

    def __enter__(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
        self.proc = subprocess.Popen(
            [str(POSEDGE), "--state-dir", str(self.state_dir), "--config", str(self.config),
             "--json", "run", "--simulate", "--card-delay", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the agent is ready
        if not line:
            raise RuntimeError("the agent did not start")
        self.where = json.loads(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def sell(http: httpx.Client, amount: int) -> tuple[str, float]:
    """One sale as the till does it: (sale id, seconds from POST to final)."""
    start = time.perf_counter()
    reply = http.post(
        "/v1/sales",
        json={"amount": amount, "currency": "EUR", "reference": f"bench-{amount}"},
        headers={"Idempotency-Key": f"bench-sale-{amount}"},
    )
    if reply.status_code != 202:
        raise RuntimeError(f"sale refused: {reply.status_code} {reply.text}")
    sale_id = reply.json()["id"]
    while True:
        doc = http.get(f"/v1/sales/{sale_id}", params={"wait": 10}).json()
        if doc["final"]:
            if doc["state"] != "approved":
                raise RuntimeError(f"sale {sale_id} ended {doc['state']}")
            return sale_id, time.perf_counter() - start


def wait_receipts(http: httpx.Client, sale_ids: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    for sale_id in sale_ids:
        while http.get(f"/v1/sales/{sale_id}").json()["receipt"]["state"] != "printed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"receipt of {sale_id} not printed")
            time.sleep(0.001)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


STEPS = ("sale.created", "card.read", "auth.requested", "auth.approved", "receipt.printing",
         "receipt.printed")  # fmt: skip


def timeline(
    journal: Journal, sale_ids: set[str]
) -> tuple[list[float], dict[str, dict[str, float]], Counter[str]]:
    """Per sale, card.read ts → receipt.printed ts; p50/p99 of each step (event to next
    event of the sale); the event types per sale. From the journal's own timestamps."""
    times: dict[str, dict[str, datetime]] = {txn: {} for txn in sale_ids}
    types: Counter[str] = Counter()
    for event in journal.iter_events():
        if event.txn not in sale_ids:
            continue
        types[event.type] += 1
        times[event.txn].setdefault(event.type, datetime.fromisoformat(event.ts))
    card_to_printed = [
        (t["receipt.printed"] - t["card.read"]).total_seconds() for t in times.values()
    ]
    steps = {
        f"{a} -> {b}": percentiles([(t[b] - t[a]).total_seconds() for t in times.values()])
        for a, b in pairwise(STEPS)
    }
    return card_to_printed, steps, types


def run_sales(directory: Path, count: int) -> dict[str, Any]:
    state = directory / "agent"
    config = directory / "bench.toml"
    config.write_text(BENCH_CONFIG)
    with AgentProcess(state, config) as running:
        transport = httpx.HTTPTransport(uds=running.where["socket"])
        with httpx.Client(
            transport=transport,
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {running.token}"},
            timeout=30,
        ) as http:
            warm = [sell(http, 100 + n)[0] for n in range(WARMUP_SALES)]
            wait_receipts(http, warm)
            start = time.perf_counter()
            results = [sell(http, 1000 + n) for n in range(count)]
            ids = [sale_id for sale_id, _ in results]
            wait_receipts(http, ids)
            elapsed = time.perf_counter() - start
    with Journal.open(state, readonly=True) as journal:
        latencies, steps, types = timeline(journal, set(ids))
    events_per_sale = sum(types.values()) / count
    return {
        "sales": count,
        "seconds": round(elapsed, 3),
        "sales_per_s": round(count / elapsed, 1),
        "card_read_to_receipt_printed": percentiles(latencies),
        "post_to_final_at_the_till": percentiles([t for _, t in results]),
        "steps": steps,
        "events_per_sale": round(events_per_sale, 2),
        "event_types": dict(types),
    }


def run_baseline(directory: Path, events: int) -> dict[str, Any]:
    """Bare journal appends: the floor under any sale, one fsync'd commit per event."""
    latencies = []
    with Journal.open(directory / "baseline") as journal:
        payload = {"masked_pan": "411111******1111", "brand": "visa", "amount": 1234}
        start = time.perf_counter()
        for number in range(events):
            t0 = time.perf_counter()
            journal.append("bench.event", payload, txn=f"b-{number // 6}")
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return {
        "appends": events,
        "seconds": round(elapsed, 3),
        "appends_per_s": round(events / elapsed, 1),
        "append": percentiles(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sales", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="posedge-bench-sales-") as tmp:
        sales = run_sales(Path(tmp), args.sales)
        events = round(sales["events_per_sale"] * args.sales)
        baseline = run_baseline(Path(tmp), events)
    p99 = sales["card_read_to_receipt_printed"]["p99_ms"]
    report = {
        "sales": sales,
        "baseline_journal_appends": baseline,
        "ratios": {
            "sales_seconds_vs_bare_appends_seconds": round(
                sales["seconds"] / baseline["seconds"], 2
            ),
            "sale_ms_vs_its_appends_ms": {
                "sale_ms": round(1000 * sales["seconds"] / args.sales, 3),
                "appends_ms": round(1000 * baseline["seconds"] / args.sales, 3),
            },
        },
        "targets": {
            "sales_per_s": TARGET_SALES_PER_S,
            "p99_ms": TARGET_P99_MS,
            "met": sales["sales_per_s"] >= TARGET_SALES_PER_S and p99 <= TARGET_P99_MS,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
