"""Drain a large journal backlog to the reference back office over loopback.

In one run:
  * the agent (a separate process, so its peak RSS is its own) drains an
    N-event backlog (default 1,000,000) to ``posedge backoffice serve`` (another
    process) with the production SyncService;
  * the peer baseline drains a 25,000-item persist-queue ``SQLiteAckQueue``
    with get + ack.
Reports events/s overall and for the first and last tenth, the agent's peak
RSS, and the ratios. Targets: ≥ 20,000 events/s end to end, ≥ 20 × the peer,
last tenth ≥ 0.8 × first tenth, peak RSS ≤ 80 MiB.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_sync_drain.py [--events 1000000] [--peer-items 25000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from posedge.agent.journal import Journal
from posedge.agent.journal.canonical import canonical_json
from posedge.agent.journal.chain import GENESIS_HASH, ChainSigner

POSEDGE = Path(sys.executable).parent / "posedge"
TERMINAL = "bench-lane"

AGENT = r"""
import json, resource, sys, time
from pathlib import Path
from posedge.agent.config import SyncConfig
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService

state, url = Path(sys.argv[1]), sys.argv[2]
settings = SyncConfig()
marks = []
with Journal.open(state) as jr:
    head = jr.head().seq
    client = BackofficeClient(url, "bench-lane", settings)
    service = SyncService(jr, client, settings, state_dir=state)
    start = time.perf_counter()
    def mark(acked, _head):
        marks.append((time.perf_counter() - start, acked))
    report = service.drain(progress=mark)
    elapsed = time.perf_counter() - start
    client.close()
print(json.dumps({
    "head": head, "acked": report.acked_seq, "complete": report.complete,
    "elapsed_s": elapsed, "marks": marks,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def build_backlog(state_dir: Path, count: int) -> None:
    """A real chained journal of ``count`` events, written in bulk (setup only)."""
    with Journal.open(state_dir) as jr:
        signer: ChainSigner = jr.signer
    conn = sqlite3.connect(state_dir / "journal.db", isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    prev = GENESIS_HASH
    conn.execute("BEGIN")
    rows = []
    for seq in range(1, count + 1):
        payload = canonical_json({"amount": 100 + seq % 5000, "currency": "EUR", "lane": 3})
        minute, second, milli = seq // 60000 % 60, seq // 1000 % 60, seq % 1000
        ts = f"2026-11-20T{seq // 3600000 % 24:02d}:{minute:02d}:{second:02d}.{milli:03d}000+00:00"
        txn = f"s{seq // 8}"
        kind = "sale.created"
        digest = signer.event_hash(prev, seq, ts, kind, txn, payload)
        rows.append((seq, ts, kind, txn, payload, prev, digest))
        prev = digest
        if len(rows) == 50_000:
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            rows.clear()
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_backoffice(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(POSEDGE), "backoffice", "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("back office did not start")


def tenth_rates(marks: list[tuple[float, int]], total: int) -> tuple[float, float]:
    """events/s over the first and the last tenth of the backlog."""
    tenth = total / 10

    def time_at(seq: float) -> float:
        for elapsed, acked in marks:
            if acked >= seq:
                return elapsed
        return marks[-1][0]

    first = tenth / max(time_at(tenth), 1e-9)
    last = tenth / max(marks[-1][0] - time_at(total - tenth), 1e-9)
    return first, last


def peer_drain(directory: Path, items: int) -> float:
    from persistqueue import SQLiteAckQueue  # type: ignore[import-untyped]

    queue = SQLiteAckQueue(str(directory), auto_commit=True, multithreading=False)
    record = canonical_json({"amount": 1234, "currency": "EUR", "lane": 3, "pad": "x" * 200})
    for _ in range(items):
        queue.put(record)
    start = time.perf_counter()
    for _ in range(items):
        item = queue.get(block=False)
        queue.ack(item)
    elapsed = time.perf_counter() - start
    return items / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--peer-items", type=int, default=25_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="posedge-sync-bench-") as tmp:
        root = Path(tmp)
        state = root / "state"
        setup_start = time.perf_counter()
        build_backlog(state, args.events)
        setup_s = time.perf_counter() - setup_start
        peer_rate = peer_drain(root / "peer", args.peer_items)
        backoffice, url = start_backoffice(root / "bo.sqlite3")
        try:
            done = subprocess.run(
                [sys.executable, "-c", AGENT, str(state), url],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            backoffice.terminate()
            backoffice.wait(timeout=30)
        agent = json.loads(done.stdout)
    rate = agent["acked"] / agent["elapsed_s"]
    first, last = tenth_rates([tuple(m) for m in agent["marks"]], agent["acked"])
    rss_mib = agent["peak_rss_kib"] / 1024
    report = {
        "events": args.events,
        "setup_s": round(setup_s, 1),
        "complete": agent["complete"],
        "agent_events_per_s": round(rate),
        "first_tenth_events_per_s": round(first),
        "last_tenth_events_per_s": round(last),
        "agent_peak_rss_mib": round(rss_mib, 1),
        "peer_persist_queue_get_ack_per_s": round(peer_rate),
        "ratios": {
            "agent_vs_peer": round(rate / peer_rate, 2),
            "last_vs_first_tenth": round(last / first, 3),
        },
        "targets": {
            "agent_events_per_s": 20_000,
            "agent_vs_peer": 20,
            "last_vs_first_tenth": 0.8,
            "agent_peak_rss_mib": 80,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.pop("POSEDGE_CONFIG", None)
    main()
