"""``/metrics`` scrape latency with a 1,000,000-event journal, against same-run baselines.

In one run, two real agents in this process (``Agent(simulate=True)``: simulated printer
and reader, the daemon's health monitor when present, sync pointed at a closed loopback
port so the backlog stays and sync keeps failing, as on a terminal that is offline):

  * BIG: a journal of N events (default 1,000,000: 200,000 sales of five events each,
    chained and folded by the journal's own code, 90 % acknowledged);
  * EMPTY: a fresh journal (the baseline: what a scrape costs when the journal is small).

Each agent's metrics are scraped M times (default 2,000) in-process (``generate_latest``
on the agent's event loop, exactly what the HTTP handler does) and over HTTP (keep-alive
``GET /metrics`` on the agent's own metrics server); the HTTP baseline is ``GET
/-/healthy`` on the same server. Reports p50/p99/max in milliseconds and the ratios.
Target: HTTP scrape p99 ≤ 5 ms with the big journal; BIG/EMPTY p99 ratio near 1 (no
per-scrape cost grows with the journal). Measured after the health monitor's first round
of checks (its whole-chain journal verify); the scrapes made while it runs are reported
apart (``http_metrics_during_first_checks``).

    .venv/bin/python benchmarks/bench_metrics.py [--events 1000000] [--scrapes 2000] [--dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.exposition import generate_latest

from posedge.agent.config import Config
from posedge.agent.journal import Journal
from posedge.agent.journal.canonical import canonical_json
from posedge.agent.journal.chain import GENESIS_HASH, ChainSigner
from posedge.agent.journal.projection import PROJECTED_SEQ_KEY, rebuild_projection
from posedge.agent.metrics import MetricsServer, build_registry
from posedge.agent.service import Agent

T = TypeVar("T")
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused
SALE_TYPES = ("sale.created", "auth.requested", "auth.approved", "receipt.printing",
              "receipt.printed")  # fmt: skip


def build_journal(state_dir: Path, count: int, acked_fraction: float = 0.9) -> None:
    """A valid journal of ``count`` events written in bulk (setup only): chained with the
    terminal's own key, sales folded into the transactions projection by the journal's own
    fold, the sync cursor at ``acked_fraction`` of the head."""
    with Journal.open(state_dir) as journal:
        signer: ChainSigner = journal.signer
    conn = sqlite3.connect(state_dir / "journal.db", isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    prev, rows = GENESIS_HASH, []
    for seq in range(1, count + 1):
        sale, step = divmod(seq - 1, len(SALE_TYPES))
        kind, txn = SALE_TYPES[step], f"s-bench-{sale:08x}"
        amount = 100 + sale % 5000
        if kind == "sale.created":
            key = f"k{sale}"
            body: dict[str, Any] = {
                "amount": amount, "currency": "EUR", "reference": f"order-{sale}",
                "online": "prefer", "idempotency_key": key,
                "request_hash": hashlib.sha256(key.encode()).hexdigest(),
            }  # fmt: skip
        elif kind == "auth.requested":
            body = {"attempt": txn, "amount": amount, "currency": "EUR"}
        elif kind == "auth.approved":
            body = {"attempt": txn, "auth_code": "A1B2C3", "receipt": "pending"}
        else:
            body = {"copies": ["customer", "merchant"]}
        payload = canonical_json(body)
        clock = f"{seq // 3_600_000 % 24:02d}:{seq // 60_000 % 60:02d}:{seq // 1000 % 60:02d}"
        ts = f"2026-11-{1 + seq // 86_400_000 % 28:02d}T{clock}.{seq % 1000:03d}000+00:00"
        digest = signer.event_hash(prev, seq, ts, kind, txn, payload)
        rows.append((seq, ts, kind, txn, payload, prev, digest))
        prev = digest
        if len(rows) == 50_000:
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            rows.clear()
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    last = rebuild_projection(conn)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (PROJECTED_SEQ_KEY, str(last)),
    )
    conn.execute("UPDATE sync_cursor SET acked_seq = ?", (int(count * acked_fraction),))
    conn.execute("COMMIT")
    conn.close()


def config() -> Config:
    return Config.model_validate(
        {
            "terminal": {"id": "bench-metrics"},
            "sync": {"backoff_initial": "1s", "backoff_cap": "30s"},
            "log": {"level": "error"},
        }
    )


class Running:
    """An agent and its metrics server in a background event loop thread."""

    def __init__(self, state_dir: Path) -> None:
        self.agent = Agent(config(), state_dir, simulate=True, backoffice_url=UNREACHABLE)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.registry, _ = build_registry(self.agent)
        self.server = MetricsServer(self.registry, "127.0.0.1:0")

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 600) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def __enter__(self) -> Running:
        self.thread.start()
        self.run(self.server.start())
        self.run(self.agent.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.server.stop())
            self.run(self.agent.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def in_process(self, scrapes: int) -> tuple[list[float], list[float]]:
        """Per ``generate_latest`` on the agent's loop (one scrape per loop turn): wall-clock
        seconds, and CPU seconds of the loop's thread (what the scrape costs, whatever else
        the machine is doing)."""

        async def measure() -> tuple[list[float], list[float]]:
            wall, cpu = [], []
            for _ in range(scrapes):
                start, start_cpu = time.perf_counter(), time.thread_time()
                generate_latest(self.registry)
                cpu.append(time.thread_time() - start_cpu)
                wall.append(time.perf_counter() - start)
                await asyncio.sleep(0)
            return wall, cpu

        return self.run(measure())

    def over_http(self, path: str, scrapes: int) -> tuple[list[float], int]:
        assert self.server.url is not None
        url = self.server.url.removesuffix("/metrics") + path
        times, size = [], 0
        with httpx.Client(timeout=10.0) as client:
            client.get(url)  # connect once: keep-alive, as Prometheus scrapes
            for _ in range(scrapes):
                start = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.status_code
                size = len(response.content)
        return times, size


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def settle(running: Running, timeout_s: float = 900.0) -> tuple[float, list[float]]:
    """Wait until the health monitor (when the agent has one) has run its first round of
    checks, the whole-chain journal verify included, so that the steady state is measured,
    not the start. Meanwhile scrape over HTTP every 50 ms. (seconds waited, the scrapes'
    latencies)."""
    if getattr(running.agent, "health", None) is None:
        return 0.0, []
    assert running.server.url is not None
    start = time.monotonic()
    times: list[float] = []
    with httpx.Client(timeout=60.0) as client:
        while time.monotonic() - start < timeout_s:
            began = time.perf_counter()
            text = client.get(running.server.url).text
            times.append(time.perf_counter() - began)
            if 'check="journal.integrity"' in text:
                return time.monotonic() - start, times
            time.sleep(0.05)
    raise SystemExit(f"the health checks did not run within {timeout_s:.0f}s")


async def _scrape_text(running: Running) -> str:
    return generate_latest(running.registry).decode()


def describe(running: Running) -> dict[str, Any]:
    journal = running.agent.journal
    assert journal is not None
    return {
        "journal_head_seq": journal.head().seq,
        "unsynced_events": journal.backlog()[0],
        "journal_bytes": sum(p.stat().st_size for p in journal.path.parent.glob("journal.db*")),
    }


def measure(big_dir: Path, empty_dir: Path, scrapes: int, slices: int) -> dict[str, Any]:
    """Both agents run at once; their scrapes alternate in ``slices`` slices, so that the
    noise of other processes on the machine hits every series alike."""
    with Running(big_dir) as big, Running(empty_dir) as empty:
        settled = {"big": settle(big), "empty": settle(empty)}
        first_checks = settled["big"][1]
        for running in (big, empty):
            for _ in range(50):  # warm up: the tail's first look back, imports
                running.run(_scrape_text(running))
        series: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        per_slice = max(1, scrapes // slices)
        for _ in range(slices):
            for name, running in (("big", big), ("empty", empty)):
                wall, cpu = running.in_process(per_slice)
                series.setdefault(f"{name}_in_process", []).extend(wall)
                series.setdefault(f"{name}_in_process_cpu", []).extend(cpu)
                times, sizes[name] = running.over_http("/metrics", per_slice)
                series.setdefault(f"{name}_http_metrics", []).extend(times)
                times, _ = running.over_http("/-/healthy", per_slice)
                series.setdefault(f"{name}_http_healthy", []).extend(times)
        report: dict[str, Any] = {}
        for name, running in (("big", big), ("empty", empty)):
            report[f"{name}_journal"] = {
                **describe(running),
                "health_settle_s": round(settled[name][0], 1),
                "scrape_bytes": sizes[name],
                "in_process": summary(series[f"{name}_in_process"]),
                "in_process_cpu": summary(series[f"{name}_in_process_cpu"]),
                "http_metrics": summary(series[f"{name}_http_metrics"]),
                "http_healthy": summary(series[f"{name}_http_healthy"]),
            }
        if first_checks:
            report["big_journal"]["http_metrics_during_first_checks"] = {
                "scrapes": len(first_checks),
                **summary(first_checks),
            }
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="posedge-metrics-bench-") as tmp:
        root = Path(tmp)
        setup = time.perf_counter()
        build_journal(root / "big", args.events)
        setup_s = time.perf_counter() - setup
        measured = measure(root / "big", root / "empty", args.scrapes, args.slices)
    big, empty = measured["big_journal"], measured["empty_journal"]
    report = {
        "events": args.events,
        "scrapes": args.scrapes,
        "setup_s": round(setup_s, 1),
        **measured,
        "ratios": {
            "http_p99_big_vs_empty": round(
                big["http_metrics"]["p99_ms"] / empty["http_metrics"]["p99_ms"], 2
            ),
            "in_process_cpu_p99_big_vs_empty": round(
                big["in_process_cpu"]["p99_ms"] / empty["in_process_cpu"]["p99_ms"], 2
            ),
            "in_process_p99_big_vs_empty": round(
                big["in_process"]["p99_ms"] / empty["in_process"]["p99_ms"], 2
            ),
            "http_p99_metrics_vs_healthy": round(
                big["http_metrics"]["p99_ms"] / big["http_healthy"]["p99_ms"], 2
            ),
        },
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "targets": {"http_p99_ms_big_journal": 5.0},
        "met": big["http_metrics"]["p99_ms"] <= 5.0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.pop("POSEDGE_CONFIG", None)
    main()
