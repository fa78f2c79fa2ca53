"""Benchmark: the dashboard's fleet overview for 10,000 terminals, rendered server-side.

Setup (not timed): ``--stores`` × ``--lanes`` terminals written into a back office database
as the protocol leaves them — a heartbeat each (2 % of them stale: offline), a last sale
for most (silence_lanes), open alerts for some (lane_not_selling, sales_not_arriving,
config_changed), 1 % more resolved — and a staff user. Then a real ``posedge backoffice
serve`` process (alert loop off) and a logged-in HTTP client on loopback.

Timed, in one run, through HTTP (a keep-alive connection, one request at a time):
``--requests`` overview pages — the first page, a state filter (silent), a search, a
middle page, in turn — against a baseline of as many ``GET /healthz`` (the same server,
connection and client: everything but the page's work). Reported: p50/p95/p99 per kind,
the overview's p95 against the target (≤ 300 ms) and its ratio to the baseline's p95. On
PostgreSQL and SQLite.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--stores 1000] [--lanes 10]
[--requests 200] [--backend both|postgresql|sqlite] [--json]``. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from posedge.backoffice.dashboard.staff import StaffAccounts
from posedge.backoffice.silence.model import pack, pack_times
from posedge.backoffice.store import BackofficeStore

TARGET_P95_S = 0.300
PASSWORD = "benchmark password 0123"
POSEDGE = Path(sys.executable).with_name("posedge")
ZEROS = pack([0.0] * 168)


def seed(target: Path | str, stores: int, lanes: int, now: float) -> dict[str, int]:
    """The fleet's rows, in one transaction; counts of what was written."""
    terminals, silence, alerts = [], [], []
    for s in range(stores):
        store = f"store{s:04d}"
        for n in range(1, lanes + 1):
            terminal = f"{store}-lane{n:02d}"
            i = s * lanes + n
            beat = now - (900.0 if i % 50 == 0 else 20.0)  # 2 % offline
            terminals.append((terminal, 1, 500, "ab" * 32, now - 86400.0, beat,
                              '{"devices":{"printer":{"state":"ready"}}}', 0, 500, "ab" * 32,
                              60))  # fmt: skip
            if i % 7:
                last_sale = now - (i % 11) * 600.0
                silence.append((terminal, 500, last_sale, now, 40, 30, ZEROS, ZEROS,
                                pack_times([last_sale]), now))  # fmt: skip
            kind = ("lane_not_selling" if i % 97 == 0 else "sales_not_arriving"
                    if i % 101 == 0 else "config_changed" if i % 61 == 0 else None)  # fmt: skip
            if kind is not None:
                summary = f"{terminal}: {kind}"
                alerts.append((f"{kind}/{terminal}", kind, terminal, store, "firing", "{}", 0,
                               summary, "{}", now - 600, now - 500, None, now))  # fmt: skip
            if i % 100 == 3:
                alerts.append((f"clock_skew/{terminal}", "clock_skew", terminal, store,
                               "resolved", "{}", 0, "resolved", "{}", now - 9000, now - 8000,
                               now - 7000, now - 7000))  # fmt: skip
    with BackofficeStore(target) as bo:
        with bo.transaction() as tx:
            tx.executemany(
                "INSERT INTO terminals (terminal, first_seq, held_seq, head_hash, enrolled_at,"
                " last_heartbeat_at, heartbeat_json, reported_backlog, reported_head_seq,"
                " reported_head_hash, interval_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                terminals,
            )
            tx.executemany(
                "INSERT INTO silence_lanes (terminal, scanned_seq, last_sale_at, learned_to,"
                " sales, runs, counts, exposure, recent, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                silence,
            )
            tx.executemany(
                "INSERT INTO alerts (fingerprint, alertname, terminal, store, state, lifecycle,"
                " inhibited, summary, details, active_since, firing_since, resolved_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                alerts,
            )
        StaffAccounts(bo).add("bench", PASSWORD)
    return {"terminals": len(terminals), "alerts": len(alerts)}


class Serve:
    """``posedge backoffice serve`` in a child process (its URL from its announcement)."""

    def __init__(self, db: Path | str, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(POSEDGE), "backoffice", "serve", "--db", str(db), "--listen", "127.0.0.1:0",
             "--alert-interval", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self.log,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline, line = time.monotonic() + 60, b""
        while b"\n" not in line:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                raise RuntimeError("the back office did not start in time")
            line += os.read(self.proc.stdout.fileno(), 4096)
        found = re.search(r"http://127\.0\.0\.1:\d+", line.decode())
        assert found, line
        self.url = found.group()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def login(client: httpx.Client) -> None:
    form = client.get("/dashboard/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    reply = client.post("/dashboard/login", data={"csrf": csrf.group(1), "username": "bench",
                                                  "password": PASSWORD})  # fmt: skip
    assert reply.status_code == 303, reply.text


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 2), "p95_ms": round(cuts[94] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2), "n": len(samples)}  # fmt: skip


def measure(target: Path | str, backend: str, stores: int, lanes: int, requests: int,
            tmp: Path) -> dict[str, Any]:  # fmt: skip
    now = time.time()
    started = time.perf_counter()
    written = seed(target, stores, lanes, now)
    seed_s = time.perf_counter() - started
    server = Serve(target, tmp / f"serve-{backend}.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False) as client:
            login(client)
            kinds: dict[str, dict[str, str]] = {
                "first page": {},
                "state=silent": {"state": "silent"},
                "search": {"q": "store0420"},
                "middle page": {"page": str(stores // 50)},
            }
            for params in kinds.values():  # warm up: templates compiled, caches filled
                assert client.get("/dashboard/", params=params).status_code == 200
                client.get("/healthz")
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            baseline: list[float] = []
            names = list(kinds)
            for i in range(requests):
                kind = names[i % len(names)]
                t0 = time.perf_counter()
                reply = client.get("/dashboard/", params=kinds[kind])
                times[kind].append(time.perf_counter() - t0)
                assert reply.status_code == 200 and 'class="lane' in reply.text, kind
                t0 = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                baseline.append(time.perf_counter() - t0)
            counts = re.search(r"(\d+) terminals in (\d+) stores",
                               client.get("/dashboard/").text)  # fmt: skip
    finally:
        server.close()
    overall = [t for samples in times.values() for t in samples]
    overview = percentiles(overall)
    base = percentiles(baseline)
    return {
        "backend": backend, **written, "seed_s": round(seed_s, 1),
        "shown": counts.group() if counts else None,
        "overview": overview,
        "by_kind": {kind: percentiles(samples) for kind, samples in times.items()},
        "baseline_healthz": base,
        "ratio_p95_to_baseline": round(overview["p95_ms"] / max(base["p95_ms"], 1e-3), 1),
        "target_p95_ms": TARGET_P95_S * 1000,
        "ok": overview["p95_ms"] <= TARGET_P95_S * 1000,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"load_average": os.getloadavg(), "runs": []}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.backend in ("both", "postgresql"):
            from posedge.simulator.pgserver import PostgresServer

            pg = stack.enter_context(PostgresServer(durable=True))
            report["runs"].append(measure(pg.url("dashboard"), "postgresql", args.stores,
                                          args.lanes, args.requests, tmp))  # fmt: skip
        if args.backend in ("both", "sqlite"):
            report["runs"].append(measure(tmp / "dashboard.sqlite3", "sqlite", args.stores,
                                          args.lanes, args.requests, tmp))  # fmt: skip
    report["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average {', '.join(f'{x:.2f}' for x in report['load_average'])}")
    for run in report["runs"]:
        o, b = run["overview"], run["baseline_healthz"]
        print(
            f"{run['backend']:>10}: {run['terminals']} terminals, {run['alerts']} alerts "
            f"({run['shown']}); overview p50 {o['p50_ms']} ms p95 {o['p95_ms']} ms p99 "
            f"{o['p99_ms']} ms over {o['n']} requests; /healthz p50 {b['p50_ms']} ms p95 "
            f"{b['p95_ms']} ms (overview p95 x{run['ratio_p95_to_baseline']}); target p95 <= "
            f"{TARGET_P95_S * 1000:g} ms: {'met' if run['ok'] else 'NOT met'}"
        )
        for kind, p in run["by_kind"].items():
            print(f"{'':>12}{kind:<14} p50 {p['p50_ms']} ms  p95 {p['p95_ms']} ms")


if __name__ == "__main__":
    main()
