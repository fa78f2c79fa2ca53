"""Benchmark: reconciling one business day of end-of-day closes for 1,000 lanes.

Setup (not timed): the fleet simulator's terminals (the agent's event types, payloads and
hash chain; ``posedge.simulator.fleet.terminal``) sell ``--sales`` sales each over one
business day, 10 lanes per store; each lane's ``day.closed`` is built with the agent's
close rules (lines, totals, digest: ``posedge.agent.close.compute``) and appended to its
chain; the money the back office decided is written as its authorization rows (every
approved sale captured once). Everything is ingested through
:meth:`BackofficeStore.ingest` (the events upload's own code), 1,000 events a batch.

Timed: :func:`posedge.backoffice.closes.reconciler.reconcile_open` for that business day
— every lane's close recomputed from the held events, compared, its captured money
checked, the result written (what ``posedge backoffice closes reconcile --day D`` runs).
Baseline, same run, same rows: one ``SELECT terminal, count(*), sum(length(payload))
FROM events GROUP BY terminal`` (reading every event of the day once). Target: ≤ 5 s on
PostgreSQL; SQLite reported alongside. Every close must come out ``reconciled``.

Run: ``.venv/bin/python benchmarks/bench_reconcile.py [--lanes 1000] [--sales 120]
[--backend both|postgresql|sqlite] [--json]``. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from posedge.backoffice.closes.recompute import HeldEvent, recompute
from posedge.backoffice.closes.reconciler import reconcile_open
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import EventBatch
from posedge.simulator.fleet.model import Lane, OpeningHours, Store
from posedge.simulator.fleet.terminal import SimTerminal

TARGET_S = 5.0
DAY = "2026-12-01"
DAY_START = 1_796_104_800.0  # 2026-12-01T06:00:00Z
LANES_PER_STORE = 10
BATCH_EVENTS = 1000


def build_lane(index: int, sales: int) -> tuple[str, list[dict[str, Any]], list[tuple[Any, ...]]]:
    """One lane's day: its events (with the close last) and its authorization rows."""
    store_id = f"S{index // LANES_PER_STORE:03d}"
    terminal = f"{store_id}-lane{index % LANES_PER_STORE + 1:02d}"
    store = Store(store_id, "Europe/Paris", OpeningHours.parse("mon-sun 00:00-24:00"))
    sim = SimTerminal(Lane(terminal, store_id, index % LANES_PER_STORE + 1), store, seed=7)
    sim.boot(DAY_START)
    gap = 14 * 3600.0 / sales
    for number in range(sales):
        sim.sell(DAY_START + number * gap)
    sim.commit_all()
    events = sim.events()
    held = [HeldEvent(e["seq"], e["ts"], e["type"], e["txn"], e["payload"]) for e in events]
    txns = {e.txn for e in held if e.txn is not None}
    computed = recompute(1, sim.head_seq, held, txns)
    payload = {
        "version": 1, "business_day": DAY, "timezone": "Europe/Paris", "day_starts": "00:00",
        "trigger": "schedule", "forced": False, "closed_at": events[-1]["ts"],
        "previous_close_seq": None, "seq_from": 1, "seq_to": sim.head_seq,
        "lines_count": len(computed.lines), "lines_digest": computed.digest,
        "totals": computed.totals(), "pending_count": len(computed.pending),
        "pending": [p.as_dict() for p in computed.pending[:500]],
    }  # fmt: skip
    # A close is journaled like any event (the simulator has no close of its own).
    sim._append(DAY_START + 15 * 3600.0, "day.closed", None, payload)
    events = sim.events()
    money = [
        (terminal, f"{line.txn}:online", line.txn, "0" * 64, "decided", line.amount,
         line.currency, "411111******1111", line.brand, None, 0, "approved", "{}",
         DAY_START, DAY_START, None)
        for line in computed.lines if line.outcome == "approved"
    ]  # fmt: skip
    return terminal, events, money


def load(store: BackofficeStore, lanes: list[tuple[str, list[dict[str, Any]], list[Any]]]) -> int:
    count = 0
    for terminal, events, _ in lanes:
        for start in range(0, len(events), BATCH_EVENTS):
            part = events[start : start + BATCH_EVENTS]
            batch = EventBatch.model_validate(
                {
                    "terminal": terminal,
                    "first_seq": part[0]["seq"],
                    "last_seq": part[-1]["seq"],
                    "events": part,
                }
            )
            result = store.ingest(batch)
            if result.status != "ok":
                raise SystemExit(f"{terminal}: ingest refused: {result.detail}")
            count += len(part)
    rows = [row for _, _, money in lanes for row in money]
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO authorizations (terminal, idem_key, txn, body_sha256, state, amount,"
            " currency, masked_pan, brand, pan_token, forwarded, outcome, response_json,"
            " created_at, decided_at, reversed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return count


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(target: Path | str, lanes: list[Any], label: str, workers: int) -> dict[str, Any]:
    with BackofficeStore(target) as store:
        started = time.perf_counter()
        events = load(store, lanes)
        load_s = time.perf_counter() - started
        if store.db.dialect == "postgresql":
            with store.transaction() as tx:
                tx.execute("ANALYZE")
        started = time.perf_counter()
        base = store.db.execute(
            "SELECT terminal, count(*), sum(length(payload)) FROM events GROUP BY terminal"
        ).rows
        baseline_s = time.perf_counter() - started
        cpu = _cpu_s()
        started = time.perf_counter()
        done = reconcile_open(store, business_day=DAY, workers=workers, target=target)
        reconcile_s = time.perf_counter() - started
        cpu_s = _cpu_s() - cpu
        loadavg = os.getloadavg()
        states: dict[str, int] = {}
        for result in done:
            states[result.state] = states.get(result.state, 0) + 1
    return {
        "backend": label,
        "lanes": len(lanes),
        "events": events,
        "load_s": round(load_s, 2),
        "baseline_group_by_s": round(baseline_s, 3),
        "baseline_rows": len(base),
        "reconcile_s": round(reconcile_s, 3),
        "reconcile_cpu_s": round(cpu_s, 3),
        "load_average": [round(x, 2) for x in loadavg],
        "workers": workers,
        "ratio_to_baseline": round(reconcile_s / baseline_s, 1) if baseline_s else None,
        "closes": len(done),
        "states": states,
        "ok": reconcile_s <= TARGET_S and states == {"reconciled": len(lanes)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=1000)
    parser.add_argument("--sales", type=int, default=120, help="sales per lane in the day")
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--workers", type=int, default=1, help="reconciling processes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    lanes = [build_lane(i, args.sales) for i in range(args.lanes)]
    report: dict[str, Any] = {"build_s": round(time.perf_counter() - started, 1),
                              "target_s": TARGET_S, "load_average": os.getloadavg(),
                              "runs": []}  # fmt: skip
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.backend in ("both", "postgresql"):
            from posedge.simulator.pgserver import PostgresServer

            pg = stack.enter_context(PostgresServer(durable=True))
            report["runs"].append(measure(pg.url("reconcile"), lanes, "postgresql", args.workers))
        if args.backend in ("both", "sqlite"):
            report["runs"].append(measure(tmp / "reconcile.sqlite3", lanes, "sqlite", args.workers))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.lanes} lanes x {args.sales} sales (built in {report['build_s']} s), "
          f"load average {', '.join(f'{x:.2f}' for x in report['load_average'])}")  # fmt: skip
    for run in report["runs"]:
        print(
            f"{run['backend']:>10}: {run['events']} events; reconcile {run['closes']} closes "
            f"{run['reconcile_s']:.2f} s (cpu {run['reconcile_cpu_s']:.2f} s, {run['workers']} "
            f"workers, load {run['load_average'][0]:.1f}), baseline "
            f"GROUP BY {run['baseline_group_by_s']:.3f} s (x{run['ratio_to_baseline']}); "
            f"states {run['states']}; target <= {TARGET_S:g} s: "
            f"{'met' if run['ok'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
