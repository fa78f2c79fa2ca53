"""``posedge backoffice closes`` and ``posedge backoffice settlement``: the end-of-day closes
the back office received, their reconciliation, and a store's settlement CSV
(docs/reconciliation.md).

- ``closes --db D [--day YYYY-MM-DD] [--store S]``: one row per lane × business day
  (a table fitting the terminal, terminal ids never cut; ``--json``: one document);
  exit 3 when a listed close is not reconciled.
- ``closes reconcile --db D [--day] [--store] [--all]``: reconcile the closes that are
  not reconciled yet (``--all``: every close again) — what the server does when a close
  or a resent seq arrives; exit 3 when one is still not reconciled.
- ``settlement --db D --store S --day YYYY-MM-DD [--output FILE] [--per-lane]``: the
  store's settlement CSV; exit 3 (the file is written all the same) when a lane of the
  store has no close that day or its close is not reconciled, listed on stderr.

Exit 2 on bad input: a day that is not ``YYYY-MM-DD``, an unknown store, a database that
is not a back office database or predates the closes tables, an output file that cannot
be written (nothing is left half-written: the CSV is written to a temporary file and
renamed). Exit 4: PostgreSQL unreachable. Reading commands open the database read-only.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from posedge.agent.cli.context import add_global_options, emit_to, json_requested
from posedge.agent.cli.output import table

from .cli import db_option
from .closes.tables import SCHEMA_VERSION_CLOSES
from .store import BackofficeStore

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CHECK_FAILED = 3
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STATE_ORDER = ("invalid", "mismatch", "missing_seqs", "no_close", "reconciled")


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if not _DAY.match(value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value[:40]!r} is not a business day: give YYYY-MM-DD (e.g. 2026-12-01)"
        ) from None
    return value


def _open(db: Path | str, readonly: bool = True) -> BackofficeStore:
    from .cli_terminals import _open as open_store

    store = open_store(db, readonly=readonly)
    if store.schema_version < SCHEMA_VERSION_CLOSES:
        version = store.schema_version
        store.close()
        raise click.BadParameter(
            f"{store.display} is at back office schema version {version}, which has no "
            "close reconciliations; start `posedge backoffice serve` of this posedge on it "
            "once (it migrates)",
            param_hint="--db",
        )
    return store


def _stores_and_lanes(store: BackofficeStore) -> dict[str, set[str]]:
    """Every store the back office knows and its lanes (registry, terminals, closes)."""
    from .anomalies import registry_stores, store_of

    registry = registry_stores(store)
    lanes: dict[str, set[str]] = {}
    for terminal, home in registry.items():
        lanes.setdefault(home, set()).add(terminal)
    for (terminal,) in store.db.execute("SELECT terminal FROM terminals").rows:
        lanes.setdefault(store_of(str(terminal), registry), set()).add(str(terminal))
    for terminal, home in store.db.execute(
        "SELECT DISTINCT terminal, store FROM close_reconciliations"
    ).rows:
        lanes.setdefault(str(home), set()).add(str(terminal))
    return lanes


def _known_store(store: BackofficeStore, store_id: str | None) -> dict[str, set[str]]:
    lanes = _stores_and_lanes(store)
    if store_id is not None and store_id not in lanes:
        shown = ", ".join(sorted(lanes)[:20]) or "none yet"
        raise click.BadParameter(
            f"no store {store_id[:80]!r} in {store.display}; known stores: {shown}",
            param_hint="--store",
        )
    return lanes


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# -- closes ------------------------------------------------------------------------------------


def lane_days(found: list[Any]) -> list[dict[str, Any]]:
    """Reconciliations grouped per store × terminal × business day (a forced second close
    of a day joins the first); the state is the worst of the day's closes."""
    grouped: dict[tuple[str, str, str], list[Any]] = {}
    for result in found:
        grouped.setdefault((result.store, result.terminal, result.business_day), []).append(result)
    out = []
    for (home, terminal, day), closes in sorted(grouped.items()):
        state = min((c.state for c in closes), key=STATE_ORDER.index)
        out.append(
            {
                "store": home,
                "terminal": terminal,
                "business_day": day,
                "state": state,
                "closes": [c.as_dict() for c in closes],
                "seq_from": min(c.seq_from for c in closes),
                "seq_to": max(c.seq_to for c in closes),
                "missing_count": sum(c.missing_count for c in closes),
                "differences": sum(len(c.differences) for c in closes),
                "lines_count": sum(c.lines_count for c in closes),
                "pending_count": len(closes[-1].pending_txns),
                "reconciled_at": _when(max(c.reconciled_at for c in closes)),
            }
        )
    return out


def render_closes(days: list[dict[str, Any]]) -> str:
    if not days:
        return "no closes"
    headers = ["store", "terminal", "day", "state", "seqs", "missing", "differences", "lines",
               "pending", "reconciled at"]  # fmt: skip
    rows = [
        [d["store"], d["terminal"], d["business_day"], d["state"],
         f"{d['seq_from']}..{d['seq_to']}", str(d["missing_count"]), str(d["differences"]),
         str(d["lines_count"]), str(d["pending_count"]), d["reconciled_at"]]
        for d in days
    ]  # fmt: skip
    return table(headers, rows, keep_whole=(0, 1, 2))


@click.group(invoke_without_command=True)
@db_option(required=False)
@click.option(
    "--day", callback=_day, default=None, metavar="YYYY-MM-DD", help="Only this business day."
)
@click.option("--store", "store_id", default=None, metavar="STORE", help="Only this store's lanes.")
@click.pass_context
def closes(
    ctx: click.Context, db: Path | str | None, day: str | None, store_id: str | None
) -> None:
    """End-of-day closes received and their reconciliation, per lane and business day."""
    if ctx.invoked_subcommand is not None:
        return
    if db is None:
        raise click.UsageError("give --db (the database of `posedge backoffice serve`)")
    from .closes.reconciler import results

    with _open(db) as store:
        _known_store(store, store_id)
        days = lane_days(results(store, business_day=day, store_id=store_id))
        doc = {"db": store.display, "business_day": day, "store": store_id, "lanes": days}
    emit_to(ctx, doc, render_closes(days))
    if any(d["state"] != "reconciled" for d in days):
        sys.exit(EXIT_CHECK_FAILED)


@closes.command()
@db_option()
@click.option(
    "--day", callback=_day, default=None, metavar="YYYY-MM-DD", help="Only this business day."
)
@click.option("--store", "store_id", default=None, metavar="STORE", help="Only this store's lanes.")
@click.option(
    "--all", "everything", is_flag=True, help="Reconcile every close again, not only open ones."
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes sharing the lanes (the recomputation is CPU work).")  # fmt: skip
@click.pass_context
def reconcile(
    ctx: click.Context,
    db: Path | str,
    day: str | None,
    store_id: str | None,
    everything: bool,
    workers: int,
) -> None:
    """Reconcile received closes now (the server does it when a close or a resent seq arrives)."""
    from .closes.reconciler import reconcile_open

    with _open(db, readonly=False) as store:
        _known_store(store, store_id)
        done = reconcile_open(store, business_day=day, store_id=store_id,
                              everything=everything, workers=workers, target=db)  # fmt: skip
    counts: dict[str, int] = {}
    for result in done:
        counts[result.state] = counts.get(result.state, 0) + 1
    doc = {"reconciled": len(done), "states": counts, "closes": [r.as_dict() for r in done]}
    human = f"{len(done)} closes reconciled: " + (
        ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none open"
    )
    emit_to(ctx, doc, human)
    if any(r.state != "reconciled" for r in done):
        sys.exit(EXIT_CHECK_FAILED)


# -- settlement ----------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    """The whole file or nothing: a temporary file in the same directory, then renamed."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {path}: {exc.strerror or exc}; give a writable file path",
            param_hint="--output",
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise click.BadParameter(
            f"cannot write {path}: {exc.strerror or exc}; give a writable file path",
            param_hint="--output",
        ) from None


@click.command()
@db_option()
@click.option("--store", "store_id", required=True, metavar="STORE", help="The store to settle.")
@click.option("--day", required=True, callback=_day, metavar="YYYY-MM-DD", help="The business day.")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the CSV to this file (replaced whole) instead of stdout.",
)
@click.option("--per-lane", is_flag=True, help="Sales rows per lane, and totals per lane.")
@click.pass_context
def settlement(
    ctx: click.Context,
    db: Path | str,
    store_id: str,
    day: str,
    output: Path | None,
    per_lane: bool,
) -> None:
    """A store's settlement for one business day as CSV, from the reconciled closes.

    One row per currency × brand × outcome (``--per-lane``: per lane too), integer minor
    units and a decimal column, then totals per currency (captured, adjustment,
    net_captured). Exit 3 when a lane has no close that day or its close is not
    reconciled (the CSV is written all the same); docs/reconciliation.md.
    """
    from .closes.reconciler import results
    from .closes.settlement import render_csv, settlement_rows

    with _open(db) as store:
        lanes = _known_store(store, store_id)[store_id]
        found = results(store, business_day=day, store_id=store_id)
    rows = settlement_rows(found, store_id, day, per_lane=per_lane)
    text = render_csv(rows)
    days = {d["terminal"]: d for d in lane_days(found)}
    problems = [(t, days[t]["state"] if t in days else "no_close") for t in sorted(lanes)]
    problems = [(t, state) for t, state in problems if state != "reconciled"]
    if output is not None:
        _write_atomically(output, text)
    if json_requested(ctx):
        doc = {"store": store_id, "business_day": day, "columns": list(rows[0]) if rows else [],
               "rows": rows, "output": None if output is None else str(output),
               "lanes": {t: days[t]["state"] if t in days else "no_close" for t in sorted(lanes)},
               "ok": not problems}  # fmt: skip
        emit_to(ctx, doc, "")
    elif output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"settlement of store {store_id} for {day}: {len(rows)} rows -> {output}")
    if problems:
        listed = ", ".join(f"{t} ({state.replace('_', ' ')})" for t, state in problems)
        click.echo(f"warning: not every lane of store {store_id} is reconciled for {day}: "
                   f"{listed}; the figures cover the reconciled closes and those listed as "
                   "they are held", err=True)  # fmt: skip
        sys.exit(EXIT_CHECK_FAILED)


# ``--json`` after the subcommand too, as on every command.
add_global_options(closes)
add_global_options(settlement)
