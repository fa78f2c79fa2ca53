"""Benchmark (issue 12): a fleet of terminals uploading to back office replicas on PostgreSQL.

In one run:

1. **Ingest.** A private PostgreSQL server (system binaries, durable defaults:
   fsync on) and ``--replicas`` (2) ``posedge backoffice serve`` processes on
   it. ``--terminals`` (1,000) simulated terminals each upload a backlog of
   ``--events-per-terminal`` chained events in batches of ``--batch``, all at
   once, alternating replicas per request (asyncio + httpx, bounded
   concurrency). Bodies are built before the clock starts. Reported: events/s
   from the first request to the last acknowledgement, and what the database
   holds afterwards (every event once, acks at the head).
2. **Baseline.** The same rows inserted into an equivalent bare table (same
   columns, ``UNIQUE (terminal, seq)``) on the same server by one ``COPY``
   loop per terminal batch in one connection: what PostgreSQL itself does
   with no HTTP, validation or chain checks. Target: ingest ≥ 20,000 events/s
   and ≥ 0.5× the baseline.
3. **Heartbeats.** ``--heartbeat-terminals`` (10,000) terminals at one
   heartbeat per minute, compressed by ``--heartbeat-speed`` (open loop, each
   request at its scheduled instant whatever the previous replies did): p50,
   p99 and max latency. Target: p99 ≤ 50 ms.
4. **SQLite alongside.** Steps 1 and 3 against one ``serve`` on a SQLite file
   (SQLite is one process: no replicas).

Run: ``.venv/bin/python benchmarks/bench_fleet.py [--json] [--quick]``. Not a pytest module.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from posedge.simulator.fleet.runner import skip_missing_sniffio
from posedge.simulator.pgserver import PostgresServer

POSEDGE = Path(sys.executable).parent / "posedge"
TARGET_EVENTS_PER_S = 20_000
TARGET_BASELINE_SHARE = 0.5
TARGET_HEARTBEAT_P99_MS = 50.0
ZERO = "0" * 64


def terminal_batches(terminal: str, events: int, batch: int) -> list[tuple[int, int, bytes]]:
    """(first_seq, last_seq, body) of one terminal's backlog, chained like a journal."""
    out = []
    prev = ZERO
    for start in range(1, events + 1, batch):
        items = []
        for seq in range(start, min(start + batch, events + 1)):
            digest = hashlib.sha256(f"{terminal}{prev}{seq}".encode()).hexdigest()
            items.append(
                {
                    "seq": seq,
                    "ts": f"2026-12-07T10:{seq // 60 % 60:02d}:{seq % 60:02d}.000000+00:00",
                    "type": "sale.completed" if seq % 4 == 0 else "sale.created",
                    "txn": f"{terminal}-{(seq + 3) // 4:06d}",
                    "payload": {"amount": 1000 + seq % 977, "currency": "EUR", "lines": seq % 7},
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        doc = {"terminal": terminal, "first_seq": start, "last_seq": items[-1]["seq"],
               "events": items}  # fmt: skip
        out.append((start, items[-1]["seq"], json.dumps(doc, separators=(",", ":")).encode()))
    return out


@contextmanager
def serve(db: str, count: int, tmp: Path) -> Iterator[list[str]]:
    """``count`` ``posedge backoffice serve`` processes on ``db``; yields their URLs."""
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for index in range(count):
            proc = subprocess.Popen(
                [str(POSEDGE), "backoffice", "serve", "--db", db, "--listen", "127.0.0.1:0",
                 "--log-level", "warning"],
                stdout=subprocess.PIPE, stderr=open(tmp / f"replica{index}.log", "w"),  # noqa: SIM115
                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"listening on (http://\S+)", line)
            if not found:
                raise SystemExit(f"replica {index} did not start: {line!r}; see {tmp}")
            urls.append(found.group(1))
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _clients(count: int) -> list[httpx.AsyncClient]:
    """Many small clients: httpx's pool scans every connection per request, so one client
    with many connections costs the load generator several times the CPU per request."""
    skip_missing_sniffio()
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    return [httpx.AsyncClient(timeout=120.0, limits=limits) for _ in range(count)]


async def _upload_all(
    urls: list[str], work: dict[str, list[tuple[int, int, bytes]]], concurrency: int
) -> tuple[float, list[float], int]:
    """Every terminal uploads its batches in order; terminals run concurrently."""
    clients = _clients(max(1, concurrency // 2))
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    turn = 0
    retries = 0
    headers = {"Content-Type": "application/json"}
    try:

        async def terminal(index: int, name: str, batches: list[tuple[int, int, bytes]]) -> None:
            nonlocal turn, retries
            client = clients[index % len(clients)]
            for first, last, body in batches:
                while True:
                    url = urls[turn % len(urls)]
                    turn += 1
                    async with gate:
                        started = time.perf_counter()
                        reply = await client.post(
                            f"{url}/v1/terminals/{name}/events",
                            content=body,
                            headers={**headers, "Idempotency-Key": f"{name}:{first}-{last}"},
                        )
                        latencies.append(time.perf_counter() - started)
                    if reply.status_code == 200 and reply.json()["acked_seq"] == last:
                        break
                    if reply.status_code in (429, 503):
                        retries += 1
                        continue
                    raise SystemExit(f"{name} batch {first}-{last}: {reply.status_code} "
                                     f"{reply.text[:300]}")  # fmt: skip

        started = time.perf_counter()
        await asyncio.gather(*(terminal(i, n, b) for i, (n, b) in enumerate(work.items())))
        return time.perf_counter() - started, latencies, retries
    finally:
        for client in clients:
            await client.aclose()


def ingest(urls: list[str], work: dict[str, list[tuple[int, int, bytes]]],
           concurrency: int) -> dict[str, Any]:  # fmt: skip
    events = sum(b[-1][1] for b in work.values())
    elapsed, latencies, retries = asyncio.run(_upload_all(urls, work, concurrency))
    latencies.sort()
    return {
        "events": events,
        "batches": len(latencies),
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "batch_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "batch_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "retries": retries,
    }


def check_held_pg(url: str, work: dict[str, list[tuple[int, int, bytes]]]) -> dict[str, Any]:
    """What PostgreSQL holds: every event once, per terminal seqs 1..n."""
    with psycopg.connect(url) as conn:
        table = _events_table(conn)
        rows = conn.execute(
            f"SELECT terminal, count(*), count(DISTINCT seq), max(seq) FROM {table} GROUP BY 1"
        ).fetchall()
    held = {r[0]: (r[1], r[2], r[3]) for r in rows}
    bad = [t for t, b in work.items() if held.get(t) != (b[-1][1],) * 3]
    return {"terminals": len(held), "events": sum(v[0] for v in held.values()),
            "terminals_wrong": len(bad)}  # fmt: skip


def _events_table(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'prev_hash' "
        "AND table_schema = current_schema() AND table_name <> 'bare_events' LIMIT 1"
    ).fetchone()
    if row is None:
        raise SystemExit("no events table found in the back office database")
    return str(row[0])


def baseline_copy(url: str, work: dict[str, list[tuple[int, int, bytes]]]) -> dict[str, Any]:
    """The same rows into a bare table by one COPY per batch, one connection, commit per batch."""
    rows_by_batch = []
    for name, batches in work.items():
        for _first, _last, body in batches:
            doc = json.loads(body)
            rows_by_batch.append([
                (name, e["seq"], e["ts"], e["type"], e["txn"],
                 json.dumps(e["payload"], separators=(",", ":")), e["prev_hash"], e["hash"])
                for e in doc["events"]
            ])  # fmt: skip
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bare_events (terminal text NOT NULL, seq bigint NOT NULL, ts text, "
            "type text, txn text, payload text, prev_hash text, hash text, "
            "UNIQUE (terminal, seq))"
        )
        conn.commit()
        started = time.perf_counter()
        for rows in rows_by_batch:
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY bare_events (terminal, seq, ts, type, txn, payload, prev_hash, hash) "
                    "FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bare_events")
    events = sum(len(r) for r in rows_by_batch)
    return {"events": events, "seconds": round(elapsed, 3), "events_per_s": round(events / elapsed)}


async def _heartbeats(urls: list[str], terminals: int, span_s: float) -> list[float]:
    """Each terminal once in ``span_s`` seconds at evenly spread instants (open loop)."""
    clients = _clients(100)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    try:

        async def one(index: int, at: float) -> None:
            client = clients[index % len(clients)]
            await asyncio.sleep(max(0.0, at - loop.time()))
            name = f"hb-{index:05d}"
            doc = {"terminal": name, "sent_at": "2026-12-07T10:00:00+00:00",
                   "agent_version": "bench", "uptime_s": 3600.0,
                   "journal_head": {"seq": index, "hash": None}, "unsynced_count": 0,
                   "devices": {"printer": {"state": "ok"}, "reader": {"state": "ok"}}}  # fmt: skip
            started = time.perf_counter()
            reply = await client.post(f"{urls[index % len(urls)]}/v1/terminals/{name}/heartbeat",
                                      json=doc)  # fmt: skip
            latencies.append(time.perf_counter() - started)
            if reply.status_code != 200:
                raise SystemExit(f"heartbeat {name}: {reply.status_code} {reply.text[:200]}")

        start = loop.time() + 0.5
        await asyncio.gather(*(one(i, start + span_s * i / terminals) for i in range(terminals)))
    finally:
        for client in clients:
            await client.aclose()
    return latencies


def heartbeats(urls: list[str], terminals: int, span_s: float) -> dict[str, Any]:
    latencies = sorted(asyncio.run(_heartbeats(urls, terminals, span_s)))
    return {
        "terminals": terminals,
        "span_s": span_s,
        "per_s": round(terminals / span_s, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--events-per-terminal", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--heartbeat-terminals", type=int, default=10_000)
    parser.add_argument("--heartbeat-speed", type=float, default=1.0,
                        help="1: the real rate (10,000 per minute); 2: twice as fast")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a small run to try the harness")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.terminals, args.events_per_terminal, args.heartbeat_terminals = 50, 100, 500
        args.heartbeat_speed = 10.0
    span = 60.0 / args.heartbeat_speed
    work = {f"T{i:05d}": terminal_batches(f"T{i:05d}", args.events_per_terminal, args.batch)
            for i in range(args.terminals)}  # fmt: skip
    result: dict[str, Any] = {"terminals": args.terminals, "batch": args.batch,
                              "replicas": args.replicas}  # fmt: skip
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pg = stack.enter_context(PostgresServer(durable=True, max_connections=300))
        db = pg.url("fleet")
        with serve(db, args.replicas, tmp) as urls:
            result["postgresql"] = ingest(urls, work, args.concurrency)
            result["postgresql"]["held"] = check_held_pg(db, work)
            result["postgresql_heartbeats"] = heartbeats(urls, args.heartbeat_terminals, span)
        result["baseline_copy"] = baseline_copy(pg.url("baseline"), work)
        if not args.no_sqlite:
            with serve(str(tmp / "fleet.sqlite3"), 1, tmp) as urls:
                result["sqlite"] = ingest(urls, work, args.concurrency)
                result["sqlite_heartbeats"] = heartbeats(urls, args.heartbeat_terminals, span)
    pg_rate = result["postgresql"]["events_per_s"]
    share = pg_rate / result["baseline_copy"]["events_per_s"]
    result["share_of_baseline"] = round(share, 3)
    held = result["postgresql"]["held"]
    result["ok"] = {
        "ingest_events_per_s": pg_rate >= TARGET_EVENTS_PER_S,
        "share_of_baseline": share >= TARGET_BASELINE_SHARE,
        "heartbeat_p99": result["postgresql_heartbeats"]["p99_ms"] <= TARGET_HEARTBEAT_P99_MS,
        "every_event_once": held["terminals_wrong"] == 0
        and held["events"] == result["postgresql"]["events"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    p, b, h = result["postgresql"], result["baseline_copy"], result["postgresql_heartbeats"]
    print(
        f"PostgreSQL, {args.replicas} replicas, {args.terminals:,} terminals: "
        f"{p['events_per_s']:,} events/s ({p['events']:,} events in {p['seconds']} s, "
        f"batch p99 {p['batch_p99_ms']} ms, {p['retries']} retries)"
    )
    print(
        f"baseline COPY into a bare table: {b['events_per_s']:,} events/s; "
        f"ingest is {share:.2f}x of it"
    )
    print(f"held: {held}")
    print(
        f"heartbeats: {h['terminals']:,} terminals over {h['span_s']:.0f} s "
        f"({h['per_s']}/s): p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, max {h['max_ms']} ms"
    )
    if "sqlite" in result:
        s, sh = result["sqlite"], result["sqlite_heartbeats"]
        print(
            f"SQLite, 1 process: {s['events_per_s']:,} events/s; heartbeats p99 {sh['p99_ms']} ms"
        )
    print("targets: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}"
                                  for k, v in result["ok"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
