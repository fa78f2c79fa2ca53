"""Benchmark: what batch signatures cost, on the terminal and at the back office.

Three measurements, each against a baseline in the same run:

1. **Agent, building a batch**: ``next_batch`` (the fast path) from a real
   journal, 2,000 events per batch, unsigned (baseline) and signed with the
   device key; the signature's share of building a batch.
2. **Signature alone**: ``sign_batch`` and ``verify_batch`` per batch (µs).
3. **Back office, ingest over loopback HTTP**: the same chained events uploaded
   by an open-mode terminal (unsigned, baseline) and by an enrolled terminal
   (registry token + signed batches; every batch verified before it is
   stored), events/s and the ratio.

Run: ``.venv/bin/python benchmarks/bench_signed_ingest.py [--events N] [--batch N] [--json]``.
Not a pytest module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from posedge.agent.journal import Journal
from posedge.agent.sync.batch import next_batch
from posedge.backoffice import BackofficeServer
from posedge.backoffice.registry import TerminalRegistry
from posedge.protocol.signing import new_device_key, public_key_text, sign_batch, verify_batch


def chained(total: int, batch: int, terminal: str, key: Any | None) -> list[bytes]:
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
        doc: dict[str, Any] = {
            "terminal": terminal,
            "first_seq": events[0]["seq"],
            "last_seq": events[-1]["seq"],
            "events": events,
        }
        if key is not None:
            doc["signature"] = sign_batch(
                key, terminal, doc["first_seq"], doc["last_seq"], events[-1]["hash"]
            )
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


def bench_build(batch: int, rounds: int) -> dict[str, float]:
    key = new_device_key()
    with tempfile.TemporaryDirectory() as tmp, Journal.open(Path(tmp) / "state") as journal:
        for n in range(batch):
            journal.append("sale.created", {"amount": 100 + n, "currency": "EUR"}, txn=f"s{n}")
        times: dict[str, list[float]] = {"unsigned": [], "signed": []}
        for _ in range(rounds):
            for label, signing in (("unsigned", None), ("signed", key)):
                start = time.perf_counter()
                built = next_batch(journal, "bench-1", 0, batch, 64 << 20, signing)
                times[label].append(time.perf_counter() - start)
                assert built is not None and built.count == batch
    unsigned = statistics.median(times["unsigned"])
    signed = statistics.median(times["signed"])
    return {
        "build_unsigned_ms": unsigned * 1e3,
        "build_signed_ms": signed * 1e3,
        "build_ratio_signed_to_unsigned": signed / unsigned,
    }


def bench_primitives(rounds: int) -> dict[str, float]:
    key = new_device_key()
    public = key.public_key()
    digest = "ab" * 32
    start = time.perf_counter()
    signatures = [sign_batch(key, "bench-1", i, i + 1999, digest) for i in range(rounds)]
    sign_s = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for i, sig in enumerate(signatures):
        assert verify_batch(public, sig, "bench-1", i, i + 1999, digest)
    verify_s = (time.perf_counter() - start) / rounds
    return {"sign_us": sign_s * 1e6, "verify_us": verify_s * 1e6}


def upload(url: str, terminal: str, bodies: list[bytes], token: str | None) -> float:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.perf_counter()
        for body in bodies:
            reply = client.post(f"/v1/terminals/{terminal}/events", content=body, headers=headers)
            assert reply.status_code == 200, reply.text
        return time.perf_counter() - start


def bench_ingest(total: int, batch: int) -> dict[str, float]:
    key = new_device_key()
    with tempfile.TemporaryDirectory() as tmp, BackofficeServer(Path(tmp) / "bo.sqlite3") as bo:
        assert bo.store is not None
        registry = TerminalRegistry(bo.store)
        _, code = registry.add("enrolled-1", "bench", "1")
        reply = httpx.post(
            f"{bo.url}/v1/enrol", json={"code": code, "public_key": public_key_text(key)}
        )
        token = reply.json()["token"]
        plain = chained(total, batch, "open-1", None)
        signed = chained(total, batch, "enrolled-1", key)
        # Alternate the two in quarters, each going first as often as the other, so neither
        # profits from a warmer cache or a smaller table.
        results: dict[str, list[float]] = {"unsigned": [], "signed": []}
        quarter = max(1, len(plain) // 4)
        parts = [slice(i * quarter, (i + 1) * quarter if i < 3 else None) for i in range(4)]
        for index, part in enumerate(parts):
            runs = [
                ("unsigned", lambda p=part: upload(bo.url, "open-1", plain[p], None)),
                ("signed", lambda p=part: upload(bo.url, "enrolled-1", signed[p], token)),
            ]
            for label, run in runs if index in (0, 3) else reversed(runs):
                results[label].append(run())
        assert bo.store.head("open-1")[0] == bo.store.head("enrolled-1")[0] == total
    unsigned_rate = total / sum(results["unsigned"])
    signed_rate = total / sum(results["signed"])
    return {
        "ingest_unsigned_events_per_s": unsigned_rate,
        "ingest_signed_events_per_s": signed_rate,
        "ingest_ratio_signed_to_unsigned": signed_rate / unsigned_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    doc = {
        "events": args.events,
        "batch": args.batch,
        **bench_primitives(2000),
        **bench_build(args.batch, 30),
        **bench_ingest(args.events, args.batch),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"sign one batch:   {doc['sign_us']:.1f} µs   verify: {doc['verify_us']:.1f} µs")
    print(
        f"build a {args.batch}-event batch: unsigned {doc['build_unsigned_ms']:.2f} ms, "
        f"signed {doc['build_signed_ms']:.2f} ms "
        f"(×{doc['build_ratio_signed_to_unsigned']:.3f})"
    )
    print(
        f"ingest over loopback: unsigned {doc['ingest_unsigned_events_per_s']:,.0f} events/s, "
        f"signed+enrolled {doc['ingest_signed_events_per_s']:,.0f} events/s "
        f"(×{doc['ingest_ratio_signed_to_unsigned']:.3f})"
    )


if __name__ == "__main__":
    main()
