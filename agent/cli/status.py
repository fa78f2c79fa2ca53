"""``posedge status [--watch]``: the running daemon at a glance.

Sales today by outcome (counted from the journal, opened read-only), devices, the sync
backlog, in-doubt and forward work, and active alerts (from the daemon's ``/v1/status``).
``--watch`` refreshes until Ctrl-C: in place on a terminal (cursor home, clear), a block per
refresh otherwise (one JSON document per line with ``--json``).

"Today" is the host's local day. Sales are counted by the day their ``sale.created`` event
was journaled, each under its current state; the journal is read from the first event of
the day on (found by bisection on seq), then incrementally on each refresh.

Exit codes: 0 · 2 bad option or configuration · 4 no daemon runs (or it does not answer).
Ctrl-C ends ``--watch`` with 0. This module must never write the journal, never open a
device and never show card data (the journal holds none to show).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click

from ..errors import PeerUnreachable
from ..health.daemonlink import DaemonLink
from ..journal import JOURNAL_FILE_NAME, Journal
from ..journal.projection import STATE_AFTER
from .context import CliContext, pass_cli
from .output import human_age

DEFAULT_INTERVAL_S = 2.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"
"""Cursor home, then erase the screen: the next block is drawn in place."""
TAKEN_STATES = frozenset({"approved", "approved_offline"})
"""Outcomes whose amount counts as taken (a void or reversal takes it back)."""
IN_PROGRESS = "in_progress"
_FINAL = frozenset(STATE_AFTER.values()) - {"created", "card_read", "authorizing", "in_doubt"}


class SalesTally:
    """Sales created today (local day), by their current state, read from the journal
    incrementally: each :meth:`update` reads only the events appended since the last."""

    def __init__(self) -> None:
        self.day_start_s: float | None = None
        self.after_seq = 0
        self.states: dict[str, str] = {}
        self.amounts: dict[str, tuple[int, str]] = {}

    def update(self, journal: Journal, now_s: float | None = None) -> None:
        start = _local_midnight(time.time() if now_s is None else now_s)
        if start != self.day_start_s:  # first call, or the day turned
            self.day_start_s = start
            self.states.clear()
            self.amounts.clear()
            self.after_seq = first_seq_since(journal, start) - 1
        for event in journal.iter_events(since=self.after_seq):
            self.after_seq = event.seq
            txn = event.txn
            if txn is None:
                continue
            if event.type == "sale.created":
                self.states[txn] = "created"
                amount, currency = event.payload.get("amount"), event.payload.get("currency")
                if isinstance(amount, int) and isinstance(currency, str):
                    self.amounts[txn] = (amount, currency)
            elif txn in self.states and event.type in STATE_AFTER:
                self.states[txn] = STATE_AFTER[event.type]

    def as_dict(self) -> dict[str, Any]:
        outcomes = Counter(s if s in _FINAL else IN_PROGRESS for s in self.states.values())
        taken: Counter[str] = Counter()
        for txn, state in self.states.items():
            if state in TAKEN_STATES and txn in self.amounts:
                amount, currency = self.amounts[txn]
                taken[currency] += amount
        since = datetime.fromtimestamp(self.day_start_s or 0).astimezone()
        return {
            "since": since.isoformat(),
            "count": len(self.states),
            "by_outcome": dict(sorted(outcomes.items())),
            "taken": dict(sorted(taken.items())),
        }


def _local_midnight(now_s: float) -> float:
    local = datetime.fromtimestamp(now_s).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def first_seq_since(journal: Journal, start_s: float) -> int:
    """The first seq journaled at or after ``start_s`` (head + 1 when none): a bisection,
    as seq order is time order. A pruned seq counts as older (retention keeps the newest)."""
    low, high = 1, journal.head().seq + 1
    while low < high:
        middle = (low + high) // 2
        event = journal.get(middle)
        if event is None or datetime.fromisoformat(event.ts).timestamp() < start_s:
            low = middle + 1
        else:
            high = middle
    return low


@click.command("status")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C (in place on a terminal).")
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1, max=3600),
    default=None,
    metavar="S",
    help=f"Seconds between refreshes with --watch [default: {DEFAULT_INTERVAL_S:g}].",
)
@pass_cli
def status(cli: CliContext, watch: bool, interval_s: float | None) -> None:
    """The running daemon at a glance: sales today, devices, backlog, alerts.

    Exit 4 when no daemon runs on the state directory (or it does not answer). With
    --watch the view refreshes every --interval seconds until Ctrl-C (exit 0).
    """
    if interval_s is not None and not watch:
        raise click.UsageError("--interval sets the refresh period of --watch; add --watch")
    link = DaemonLink.connect(cli.config, cli.state_dir)
    tally = SalesTally()
    with _journal(cli.state_dir) as journal:
        if not watch:
            doc = snapshot(link, journal, tally)
            cli.emit(doc, render(doc))
            return
        _watch(cli, link, journal, tally, interval_s or DEFAULT_INTERVAL_S)


@contextlib.contextmanager
def _journal(state_dir: Path) -> Iterator[Journal]:
    if not (state_dir / JOURNAL_FILE_NAME).exists():
        raise PeerUnreachable(
            f"no journal in {state_dir}, though a daemon holds it: it is still starting; "
            "try again in a moment"
        )
    journal = Journal.open(state_dir, readonly=True)
    try:
        yield journal
    finally:
        journal.close()


def snapshot(link: DaemonLink, journal: Journal, tally: SalesTally) -> dict[str, Any]:
    """One view: the daemon's status with today's sales added."""
    doc = link.status()
    tally.update(journal)
    return {"daemon_pid": link.pid, "sales_today": tally.as_dict(), "status": doc}


def _watch(
    cli: CliContext, link: DaemonLink, journal: Journal, tally: SalesTally, interval_s: float
) -> None:
    out = sys.stdout
    in_place = out.isatty() and not cli.json_output
    try:
        while True:
            doc = snapshot(link, journal, tally)
            _draw(out, doc, in_place, cli.json_output, interval_s)
            time.sleep(interval_s)  # the refresh period itself, not a wait for anything
    except KeyboardInterrupt:
        if in_place:
            out.write("\n")
        out.flush()


def _draw(out: TextIO, doc: dict[str, Any], in_place: bool, as_json: bool, every: float) -> None:
    if as_json:
        out.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    else:
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        block = f"{render(doc)}\n(refreshed {stamp}, every {every:g}s; Ctrl-C to stop)\n"
        out.write((CLEAR_SCREEN + block) if in_place else (block + "\n"))
    out.flush()


def render(doc: dict[str, Any]) -> str:
    """The human block: daemon, sales today, devices, backlog and work, alerts."""
    status: dict[str, Any] = doc["status"]
    daemon = status.get("daemon") or {}
    rows = [("daemon", _daemon_line(doc["daemon_pid"], daemon, status))]
    rows.append(("sales today", _sales_line(doc["sales_today"])))
    devices = status.get("devices") or {}
    rows.append(("devices", " · ".join(_device(n, d) for n, d in sorted(devices.items()))))
    backlog = status.get("backlog") or {}
    rows.append(
        (
            "backlog",
            f"{backlog.get('unsynced', 0)} events unsynced"
            + (
                f", oldest {human_age(backlog['oldest_age_s'])}"
                if backlog.get("oldest_age_s") is not None
                else ""
            )
            + f" · network {(status.get('network') or {}).get('state', 'unknown')}",
        )
    )
    rows.append(
        (
            "work",
            f"{status.get('in_doubt', 0)} in doubt · "
            f"{status.get('forwards_pending', 0)} offline sales to forward",
        )
    )
    alerts = _alerts(status)
    rows.append(("alerts", alerts[0] if alerts else "none"))
    rows += [("", line) for line in alerts[1:]]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)


def _daemon_line(pid: int, daemon: dict[str, Any], status: dict[str, Any]) -> str:
    parts = [f"pid {pid}"]
    if isinstance(daemon.get("uptime_s"), int | float):
        parts.append(f"up {timedelta(seconds=int(daemon['uptime_s']))}")
    parts.append("accepting sales" if status.get("accepting") else "NOT accepting sales")
    watchdog = daemon.get("watchdog") or {}
    if watchdog.get("healthy") is False:
        parts.append(f"watchdog: {watchdog.get('reason') or 'unhealthy'}")
    return " · ".join(parts)


def _sales_line(sales: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in
                         sales["by_outcome"].items())  # fmt: skip
    text = f"{sales['count']}" + (f" ({outcomes})" if outcomes else "")
    taken = sales["taken"]
    if taken:
        from ..sales.policy import format_amount  # pydantic: imported here, --help is quick

        money = ", ".join(f"{cur} {format_amount(amount, cur)}" for cur, amount in taken.items())
        text += f" · taken {money}"
    return text


def _device(name: str, device: Any) -> str:
    if not isinstance(device, dict):
        return f"{name} {device}"
    text = f"{name} {device.get('state', 'unknown')}"
    problems = [*device.get("faults", []), *device.get("warnings", [])]
    return text + (f" ({', '.join(map(str, problems))})" if problems else "")


def _alerts(status: dict[str, Any]) -> list[str]:
    """The sales engine's active alerts (``alerts.active``), then the health checks' pending,
    firing and flapping ones (``health.alerts``)."""
    engine = status.get("alerts")
    health = status.get("health")
    found = [
        *(engine.get("active", []) if isinstance(engine, dict) else []),
        *(health.get("alerts", []) if isinstance(health, dict) else []),
    ]
    lines = []
    for alert in found:
        if isinstance(alert, dict):
            name = alert.get("kind") or alert.get("name") or "alert"
            state = f" ({alert['state']})" if alert.get("state") else ""
            since = f" since {alert['since']}" if alert.get("since") else ""
            detail = alert.get("detail") or alert.get("summary") or ""
            lines.append(f"{name}{state}{since}: {detail}".rstrip(": "))
    return lines


__all__ = ["SalesTally", "first_seq_since", "render", "snapshot", "status"]
