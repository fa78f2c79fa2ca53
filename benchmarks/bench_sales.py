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

    .venv/bin/python benchmarks/bench_sales.py [--sales 500] [--dir DIR] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx

from posedge.agent.api import ApiServer, create_app, load_or_create_token
from posedge.agent.config import Config
from posedge.agent.journal import Journal
from posedge.agent.service import Agent

T = TypeVar("T")
WARMUP_SALES = 20
TARGET_SALES_PER_S = 100.0
TARGET_P99_MS = 50.0


def bench_config() -> Config:
    return Config.model_validate({"terminal": {"id": "bench-lane"}, "log": {"level": "error"}})


class AgentThread:
    """The agent and its API in their own event loop thread (the till is another thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.agent = Agent(bench_config(), state_dir, simulate=True, card_delay_s=0.0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.api: ApiServer | None = None
        self.token = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    async def _start(self) -> None:
        await self.agent.start()
        assert self.agent.engine is not None
        self.token = load_or_create_token(self.agent.config, self.state_dir)
        app = create_app(
            self.agent.engine, token=self.token, currencies=self.agent.config.sales.currencies
        )
        self.api = ApiServer(app, self.state_dir / "api.sock", log_level="error")
        await self.api.start()

    async def _stop(self) -> None:
        if self.api is not None:
            await self.api.stop()
        await self.agent.stop()

    def __enter__(self) -> AgentThread:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


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


def run_sales(
    directory: Path, count: int, profile: cProfile.Profile | None, without: set[str]
) -> dict[str, Any]:
    state = directory / "agent"
    with AgentThread(state) as running:
        # Diagnostics (--without): what the background sync and the device counters cost.
        if "sync" in without and running.agent.runner is not None:
            running.agent.runner.stop()
        if "device-stats" in without:
            for device in (running.agent.printer, running.agent.reader):
                stats = getattr(device, "stats", None)
                if stats is not None:
                    stats.path = None
        transport = httpx.HTTPTransport(uds=str(state / "api.sock"))
        with httpx.Client(
            transport=transport,
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {running.token}"},
            timeout=30,
        ) as http:
            warm = [sell(http, 100 + n)[0] for n in range(WARMUP_SALES)]
            wait_receipts(http, warm)
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            results = [sell(http, 1000 + n) for n in range(count)]
            ids = [sale_id for sale_id, _ in results]
            wait_receipts(http, ids)
            elapsed = time.perf_counter() - start
            if profile is not None:
                profile.disable()
        journal = running.agent.journal
        assert journal is not None
        latencies, steps, types = running.run(_async(timeline, journal, set(ids)))
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


async def _async(fn: Any, *args: Any) -> Any:
    return fn(*args)


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
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    parser.add_argument(
        "--without",
        action="append",
        choices=["sync", "device-stats"],
        default=[],
        help="diagnostic: stop the background sync, or the device counters' file saves",
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="posedge-bench-sales-") as tmp:
        sales = run_sales(Path(tmp), args.sales, profile, set(args.without))
        events = round(sales["events_per_sale"] * args.sales)
        baseline = run_baseline(Path(tmp), events)
    if profile is not None:
        profile.dump_stats(str(args.profile))
    p99 = sales["card_read_to_receipt_printed"]["p99_ms"]
    report = {
        "without": sorted(args.without),
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
