"""``posedge backoffice …``: run the back office and report what it holds.

``serve`` runs in the foreground until SIGINT/SIGTERM; decline flags configure
the authorization policy at start (the admin API changes it at run time). The
same server with injected faults is ``posedge simulate backoffice``. ``report``
and ``reconcile`` open the database read-only, so they work while ``serve``
runs.

``--db`` is a SQLite file or a ``postgresql://user@host:port/dbname`` URL
(:mod:`posedge.backoffice.db`); ``--db-pool-size`` bounds a serving process's
PostgreSQL connections. A bad ``--db`` (unparsable URL, another scheme,
refused login, no such database, a schema newer than this posedge) exits 2,
an unreachable PostgreSQL server exits 4; the messages never show the URL's
password. Nothing here ever prints a token, a password or card data.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from posedge.agent.cli.context import CliContext
from posedge.agent.cli.lazy import LazyGroup
from posedge.agent.cli.output import human_age, table
from posedge.backoffice.db import (
    DEFAULT_POOL_SIZE,
    MAX_POOL_SIZE,
    DatabaseConfigError,
    DatabaseUnavailable,
    display_name,
    parse_target,
)

EXIT_CHECK_FAILED = 3
EXIT_UNREACHABLE = 4
DB_HELP = (
    "The database: a SQLite file (created by serve) or a PostgreSQL URL "
    "postgresql://user[:password]@host[:port]/dbname."
)


class DatabaseTarget(click.ParamType["Path | str"]):
    """``--db``: a SQLite path (a :class:`~pathlib.Path`) or a PostgreSQL URL (text)."""

    name = "FILE|URL"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | str:
        if isinstance(value, Path):
            return value
        try:
            target = parse_target(str(value))
        except DatabaseConfigError as exc:
            self.fail(str(exc), param, ctx)
        if isinstance(target, Path) and target.is_dir():
            self.fail(f"{target} is a directory; give a database file", param, ctx)
        return target


DB_TARGET = DatabaseTarget()
_F = TypeVar("_F", bound=Callable[..., Any])


def db_option(required: bool = True) -> Callable[[_F], _F]:
    """``--db`` of the commands that work on a running back office's database."""
    return click.option(
        "--db",
        type=DB_TARGET,
        required=required,
        help="The back office database: the --db of `posedge backoffice serve` (a SQLite "
        "file or a postgresql:// URL).",
    )


class DatabaseUnreachable(click.ClickException):
    """The PostgreSQL server of ``--db`` cannot be reached: exit 4."""

    exit_code = EXIT_UNREACHABLE


@contextmanager
def database_errors() -> Iterator[None]:
    """Opening ``--db`` failed: exit 2 for a wrong ``--db``, 4 for an unreachable server."""
    try:
        yield
    except DatabaseConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None
    except DatabaseUnavailable as exc:
        raise DatabaseUnreachable(str(exc)) from None
    except FileNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None


DEFAULT_LISTEN = "127.0.0.1:8700"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (loopback); port 0 picks a free port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise click.BadParameter(
            f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8700, [::1]:8700, :0)",
            param_hint="--listen",
        )
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def serve_options(command: Any) -> Any:
    """The options of ``serve`` (also those of ``posedge simulate backoffice``)."""
    for option in reversed(_SERVE_OPTIONS):
        command = option(command)
    return command


_SERVE_OPTIONS: list[Any] = [
    click.option("--db", type=DB_TARGET, required=True, help=DB_HELP),
    click.option("--db-pool-size", type=click.IntRange(1, MAX_POOL_SIZE),
                 default=DEFAULT_POOL_SIZE, show_default=True,
                 help="PostgreSQL connections of this process (SQLite: one)."),
    click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
                 help="HOST:PORT (port 0: any)."),
    click.option("--tokens", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 default=None,
                 help="TOML/JSON file mapping terminal id to token; without it: open mode."),
    click.option("--admin", is_flag=True, help="Enable the admin API (/admin/policy) with tokens."),
    click.option("--heartbeat-interval", type=click.IntRange(min=1), default=60,
                 show_default=True),
    click.option("--alert-interval", type=click.FloatRange(min=0.0), default=30.0,
                 show_default=True, metavar="SECONDS",
                 help="Evaluate silence and anomaly alerts this often (0: never; "
                      "docs/alerts.md)."),
    click.option("--calendars", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 metavar="FILE",
                 help="Store calendars (TOML/JSON, docs/silence.md) for the alerts; read "
                      "again on SIGHUP. Without it every store is always open."),
    click.option("--decline-over", type=click.IntRange(min=0), default=None,
                 help="Decline amounts above this (minor units)."),
    click.option("--decline-amount-ending", multiple=True,
                 help='Decline amounts ending in, e.g. "51".'),
    click.option("--decline-pan-token", multiple=True, help="Decline this PAN token."),
    click.option("--decline-masked-suffix", multiple=True,
                 help="Decline masked PANs ending in this."),
    click.option("--currency", "currencies", multiple=True, help="Allowed currency (repeatable)."),
    click.option("--auth-delay", type=click.FloatRange(0.0, 300.0), default=0.0,
                 show_default=True),
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                 default="info", show_default=True),
]  # fmt: skip


@click.group(cls=LazyGroup)
def backoffice() -> None:
    """The back office: the sync protocol's server side, and what it holds."""


@backoffice.command()
@serve_options
def serve(db: Path | str, listen: str, tokens: Path | None, **opts: Any) -> None:
    """Serve the sync protocol over HTTP until SIGINT/SIGTERM.

    Without --tokens it runs in open mode: any terminal is accepted and the
    admin API is on. On PostgreSQL any number of serve processes (replicas)
    may share one database; the first to start creates or migrates the schema.
    """
    from posedge.backoffice.server import serve_forever

    host, port, config = prepare_serve(db, listen, tokens, **opts)
    try:
        with database_errors():
            serve_forever(
                db,
                host,
                port,
                config,
                log_level=opts["log_level"],
                pool_size=opts.get("db_pool_size") or DEFAULT_POOL_SIZE,
            )
    except OSError as exc:
        raise serve_error(host, port, db, exc) from None


def prepare_serve(
    db: Path | str, listen: str, tokens: Path | None, **opts: Any
) -> tuple[str, int, Any]:
    """Listen address and BackofficeConfig from the ``serve`` flags (bad input: exit 2)."""
    from posedge.backoffice.tokens import BackofficeConfigError, load_tokens

    host, port = parse_listen(listen)
    token_map = None
    if tokens is not None:
        try:
            token_map = load_tokens(tokens)
        except BackofficeConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--tokens") from None
    config = build_config(token_map, **opts)
    calendars = opts.get("calendars")
    if calendars is not None:
        from posedge.backoffice.silence import CalendarError, load_calendars

        try:
            config.calendars = load_calendars(Path(calendars))
        except CalendarError as exc:
            raise click.BadParameter(str(exc), param_hint="--calendars") from None
        config.calendars_file = Path(calendars)
    return host, port, config


def serve_error(host: str, port: int, db: Path | str, exc: OSError) -> click.UsageError:
    return click.UsageError(
        f"cannot listen on {host}:{port} or open {display_name(db)}: {exc.strerror or exc}; "
        "pick a free port or a writable --db path"
    )


def build_config(tokens: dict[str, str] | None, **opts: Any) -> Any:
    """A BackofficeConfig from the ``serve`` flags (also used by tests)."""
    from posedge.backoffice import AuthorizationPolicy, BackofficeConfig

    currencies = [c.upper() for c in opts.get("currencies") or ()]
    policy = AuthorizationPolicy(
        decline_over=opts.get("decline_over"),
        decline_amount_endings=list(opts.get("decline_amount_ending") or ()),
        decline_pan_tokens=list(opts.get("decline_pan_token") or ()),
        decline_masked_suffixes=list(opts.get("decline_masked_suffix") or ()),
        allowed_currencies=currencies or None,
        delay_s=opts.get("auth_delay") or 0.0,
    )
    return BackofficeConfig(
        tokens=tokens,
        admin=bool(opts.get("admin")),
        heartbeat_interval_s=opts.get("heartbeat_interval") or 60,
        alert_interval_s=float(opts.get("alert_interval") or 0.0),
        policy=policy,
    )


@backoffice.command()
@click.option("--db", type=DB_TARGET, required=True, help=DB_HELP)
@click.pass_context
def report(ctx: click.Context, db: Path | str) -> None:
    """Per terminal: events held, seqs, gaps, chain breaks, duplicates, heartbeats, silence.

    Exit 3 when the held events have holes or chain breaks (never expected).
    """
    from posedge.backoffice import BackofficeStore, report_document

    with database_errors():
        store = BackofficeStore(db, readonly=True, pool_size=1)
    with store:
        doc = report_document(store)
    cli = ctx.find_object(CliContext)
    if cli is not None and cli.json_output:
        cli.emit(doc)
    else:
        click.echo(render_report(doc))
    bad = [t for t in doc["terminals"] if t["missing_seqs"] or t["chain_breaks_held"]]
    if bad:
        sys.exit(EXIT_CHECK_FAILED)


def render_report(doc: dict[str, Any]) -> str:
    if not doc["terminals"]:
        return f"no terminals in {doc['db']}"
    headers = ["terminal", "held", "seqs", "holes", "breaks", "rejected gap/chain", "dups",
               "conflicts", "heartbeat", "backlog", "head reported/held", "silent"]  # fmt: skip
    rows = []
    for t in doc["terminals"]:
        seqs = f"{t['first_seq']}..{t['last_seq']}" if t["first_seq"] else "-"
        reported = "-" if t["reported_head_seq"] is None else str(t["reported_head_seq"])
        rows.append(
            [
                t["terminal"],
                str(t["events_held"]),
                seqs,
                str(t["missing_seqs"]),
                str(t["chain_breaks_held"]),
                f"{t['gaps_rejected']}/{t['chain_mismatches_rejected']}",
                str(t["duplicates_absorbed"]),
                str(t["conflicts"]),
                human_age(t["last_heartbeat_age_s"])
                + (" ago" if t["last_heartbeat_age_s"] is not None else ""),
                "-" if t["reported_backlog"] is None else str(t["reported_backlog"]),
                f"{reported}/{t['last_seq']}",
                "SILENT" if t["silent"] else "no",
            ]
        )
    # Terminal ids are never cut: other columns wrap, or each terminal becomes a block.
    return table(headers, rows, title=f"back office {doc['db']}", keep_whole=(0,))


@backoffice.command()
@click.option("--db", type=DB_TARGET, required=True, help=DB_HELP)
@click.option(
    "--journal-export",
    "export",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The till's `posedge journal export` output (JSON Lines, whole journal).",
)
@click.option(
    "--terminal", default=None, help="The till's terminal id [default: the only one in --db]."
)
@click.pass_context
def reconcile(ctx: click.Context, db: Path | str, export: Path, terminal: str | None) -> None:
    """Check the money invariant: each sale's captured amount against the till's outcome.

    Exit 3 on a mismatch, a sale not final yet, a reversal the till still
    waits for, or money captured for a sale the journal does not have
    (uncollectable offline sales are listed, not failures). Exit 2 on bad input.
    """
    from posedge.backoffice import BackofficeStore
    from posedge.backoffice.reconcile import ExportError, read_export
    from posedge.backoffice.reconcile import reconcile as check

    try:
        events = read_export(export)
    except ExportError as exc:
        raise click.BadParameter(str(exc), param_hint="--journal-export") from None
    with database_errors():
        store = BackofficeStore(db, readonly=True, pool_size=1)
    try:
        with store:
            terminal = terminal or _only_terminal(store.display, store.money_terminals())
            doc = check(terminal, events, store.captured(terminal), store.reversals(terminal))
    except (sqlite3.DatabaseError, _psycopg_error()) as exc:
        raise click.BadParameter(
            f"{store.display} is not a readable back office database: {exc}", param_hint="--db"
        ) from None
    cli = ctx.find_object(CliContext)
    if cli is not None and cli.json_output:
        cli.emit(doc)
    else:
        click.echo(render_reconcile(doc))
    if not doc["ok"]:
        sys.exit(EXIT_CHECK_FAILED)


def _psycopg_error() -> type[Exception]:
    """psycopg's base error (psycopg is imported only when PostgreSQL is used)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg.Error if psycopg is not None else sqlite3.DatabaseError


def _only_terminal(db: str, terminals: list[str]) -> str:
    if len(terminals) == 1:
        return terminals[0]
    if not terminals:
        raise click.BadParameter(
            f"{db} holds no terminal yet; name the till with --terminal", param_hint="--terminal"
        )
    raise click.BadParameter(
        f"{db} holds {len(terminals)} terminals ({', '.join(terminals)}); "
        "name the till's with --terminal",
        param_hint="--terminal",
    )


def render_reconcile(doc: dict[str, Any]) -> str:
    parts = []
    if doc["mismatches"]:
        headers = ["txn", "till state", "forward", "expected", "captured", "amount", "currency"]
        rows = [
            [m["txn"], m["till_state"], m["forward"] or "-", str(m["expected_captured"]),
             str(m["captured"]), str(m["amount"]), m["currency"] or "-"]
            for m in doc["mismatches"]
        ]  # fmt: skip
        parts.append(table(headers, rows, title="mismatches: captured ≠ the till's outcome"))
    if doc["reversals_pending"]:
        rows = [
            [r["txn"], r["attempt"], "yes (answer lost)" if r["at_backoffice"] else "no"]
            for r in doc["reversals_pending"]
        ]
        parts.append(
            table(["txn", "attempt", "recorded at back office"], rows, title="reversals pending")
        )
    if doc["unknown_at_till"]:
        rows = [[u["txn"], str(u["captured"])] for u in doc["unknown_at_till"]]
        parts.append(table(["txn", "captured"], rows, title="unknown at the till"))
    if doc["uncollectable"]:
        rows = [[u["txn"], u["forward"], str(u["amount"])] for u in doc["uncollectable"]]
        parts.append(table(["txn", "forward", "amount"], rows, title="uncollectable"))
    if doc["not_final"]:
        parts.append("not final yet: " + ", ".join(doc["not_final"]))
    parts.append(
        f"terminal {doc['terminal']}: {doc['sales']} sales, {doc['matched']} matched, "
        f"{len(doc['mismatches'])} mismatched, {len(doc['not_final'])} not final, "
        f"{len(doc['reversals_pending'])} reversals pending, "
        f"{len(doc['unknown_at_till'])} unknown at the till, "
        f"{len(doc['uncollectable'])} uncollectable — {'OK' if doc['ok'] else 'NOT OK'}"
    )
    return "\n\n".join(parts)


@backoffice.command()
@click.option("--write", "target", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file instead of stdout (docs/openapi-sync.json).")  # fmt: skip
def openapi(target: Path | None) -> None:
    """Print the protocol's OpenAPI 3.1 document (what GET /openapi.json serves)."""
    from posedge.protocol.openapi import render

    if target is None:
        click.echo(render(), nl=False)
        return
    try:
        target.write_text(render(), encoding="utf-8")
    except OSError as exc:  # a wrong path is the user's to fix (exit 2), not a crash
        raise click.BadParameter(
            f"cannot write {target}: {exc.strerror or exc}", param_hint="--write"
        ) from None


# Imported when run (the registry needs cryptography): `posedge backoffice --help` is quick.
backoffice.add_lazy(
    "terminals",
    "posedge.backoffice.cli_terminals:terminals",
    "Enrolled terminals: enrolment codes, listing, token rotation, revocation.",
)
backoffice.add_lazy(
    "alerts",
    "posedge.backoffice.cli_alerts:alerts",
    "The fleet's alerts (silence and anomalies), grouped by store; docs/alerts.md.",
)
backoffice.add_lazy(
    "staff",
    "posedge.backoffice.cli_staff:staff",
    "Staff logins of the dashboard (not terminals); docs/dashboard.md.",
)
backoffice.add_lazy(
    "closes",
    "posedge.backoffice.cli_closes:closes",
    "End-of-day closes received and their reconciliation; docs/reconciliation.md.",
)
backoffice.add_lazy(
    "settlement",
    "posedge.backoffice.cli_closes:settlement",
    "A store's settlement CSV for one business day; docs/reconciliation.md.",
)
