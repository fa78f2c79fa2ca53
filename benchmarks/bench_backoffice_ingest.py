"""Benchmark: events/s the reference back office ingests over loopback HTTP.

Uploads N chained events (default 200,000) in batches of 2,000 with one httpx
client to a :class:`BackofficeServer` (uvicorn in a thread, SQLite WAL on a
temporary disk file), and reports events/s overall and for the first and last
tenth (ingest must not slow down as the table grows). The baseline, in the
same run, is the same bodies POSTed to a bare ASGI endpoint on the same uvicorn
settings that reads the body and answers 200: the cost of loopback HTTP alone.
Request bodies are serialised before the clock starts, so the numbers are the
server's (parse, validate, check, store) plus the transport's. Target: well
over 20,000 events/s (the agent's 1,000,000-event drain goes through it).

Run: ``.venv/bin/python benchmarks/bench_backoffice_ingest.py [--events N] [--batch N] [--json]``.
Not a pytest module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from posedge.backoffice.server import _bind, _uvicorn_config
from posedge.simulator.backoffice import BackofficeServer

TARGET_EVENTS_PER_S = 20_000


def bodies(total: int, batch: int, terminal: str = "bench-1") -> list[bytes]:
    out = []
    prev = "0" * 64
    for start in range(1, total + 1, batch):
        events = []
        for seq in range(start, min(start + batch, total + 1)):
            digest = hashlib.sha256(f"{prev}{seq}".encode()).hexdigest()
            events.append(
                {
                    "seq": seq,
                    "ts": "2026-11-26T10:00:00.000000+00:00",
                    "type": "sale.created",
                    "txn": f"s-{seq:08d}",
                    "payload": {"amount": 1234 + seq % 100, "currency": "EUR", "lines": 3},
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        doc = {
            "terminal": terminal,
            "first_seq": events[0]["seq"],
            "last_seq": events[-1]["seq"],
            "events": events,
        }
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


def upload(url: str, payloads: list[bytes]) -> list[float]:
    """POST every body in order; return the wall time of each request."""
    times = []
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for body in payloads:
            started = time.perf_counter()
            reply = client.post("/v1/terminals/bench-1/events", content=body, headers=headers)
            times.append(time.perf_counter() - started)
            if reply.status_code != 200:
                raise SystemExit(f"upload failed: {reply.status_code} {reply.text[:300]}")
    return times


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Baseline: read the body, answer a small JSON reply."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"acked_seq":0}'})


def baseline(payloads: list[bytes]) -> list[float]:
    import asyncio
    import threading

    sock = _bind("127.0.0.1", 0)
    server = uvicorn.Server(_uvicorn_config(bare_app, "warning", access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        return upload(f"http://127.0.0.1:{sock.getsockname()[1]}", payloads)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    payloads = bodies(args.events, args.batch)
    tenth = max(1, len(payloads) // 10)
    with (
        tempfile.TemporaryDirectory() as tmp,
        BackofficeServer(Path(tmp) / "bench.sqlite3") as bo,
    ):
        times = upload(bo.url, payloads)
        assert bo.store is not None
        integrity = bo.store.held_integrity("bench-1")
    base_times = baseline(payloads)
    total = sum(times)
    result: dict[str, Any] = {
        "events": args.events,
        "batch": args.batch,
        "events_per_s": round(rate(args.events, total)),
        "first_tenth_events_per_s": round(rate(tenth * args.batch, sum(times[:tenth]))),
        "last_tenth_events_per_s": round(rate(tenth * args.batch, sum(times[-tenth:]))),
        "baseline_http_only_events_per_s": round(rate(args.events, sum(base_times))),
        "held": integrity,
        "target_events_per_s": TARGET_EVENTS_PER_S,
    }
    result["share_of_http_baseline"] = round(
        result["events_per_s"] / result["baseline_http_only_events_per_s"], 3
    )
    result["ok"] = (
        result["events_per_s"] >= TARGET_EVENTS_PER_S
        and integrity["events"] == args.events
        and integrity["missing_seqs"] == 0
        and integrity["chain_breaks"] == 0
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"back office ingest: {result['events_per_s']:,} events/s over loopback "
        f"({args.events:,} events, batches of {args.batch:,}); first tenth "
        f"{result['first_tenth_events_per_s']:,}/s, last tenth "
        f"{result['last_tenth_events_per_s']:,}/s"
    )
    print(
        f"baseline (same bodies, bare ASGI endpoint): "
        f"{result['baseline_http_only_events_per_s']:,} events/s; back office reaches "
        f"{result['share_of_http_baseline']:.0%} of it"
    )
    print(f"held: {integrity}; target >= {TARGET_EVENTS_PER_S:,}/s: "
          f"{'OK' if result['ok'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
