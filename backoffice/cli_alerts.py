"""``posedge backoffice alerts …``: the fleet's alerts, one evaluation, and receivers.

``alerts --db D [--state S] [--store S]`` lists stored alerts (a table fitting the
terminal, terminal ids never cut; ``--json``: one document); ``alerts evaluate`` runs
one evaluation and one delivery round (what ``serve`` does every ``--alert-interval``);
``alerts receivers add NAME --url URL [--kind webhook|alertmanager]`` adds a receiver
and prints a webhook's signing secret once; ``receivers list`` and ``receivers remove``.

Exit codes: 0 ok; 2 usage error (bad URL, name or kind, unknown store or receiver,
no such database, a wrong ``--db``); 4 PostgreSQL unreachable. Nothing here prints a
secret except ``receivers add``, once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from posedge.agent.cli.context import add_global_options, emit_to
from posedge.agent.cli.output import table

from .alerting.receivers import RECEIVER_KINDS, ReceiverError, Receivers
from .cli import db_option
from .store import BackofficeStore

F = TypeVar("F", bound=Callable[..., Any])
ALERTS_SCHEMA_VERSION = 6
STATES = ("pending", "firing", "flapping", "resolved")


def _open(db: Path | str, readonly: bool = False) -> BackofficeStore:
    from .cli_terminals import _open as open_store

    store = open_store(db, readonly=readonly)
    if store.schema_version < ALERTS_SCHEMA_VERSION:
        version = store.schema_version
        store.close()
        raise click.BadParameter(
            f"{store.display} is at back office schema version {version}, which has no "
            "alerts; start `posedge backoffice serve` of this posedge on it once (it migrates)",
            param_hint="--db",
        )
    return store


@click.group(invoke_without_command=True)
@db_option(required=False)
@click.option("--state", type=click.Choice(STATES), default=None, help="Only alerts in this state.")
@click.option("--store", "store_id", default=None, metavar="STORE", help="Only this store's.")
@click.pass_context
def alerts(
    ctx: click.Context, db: Path | str | None, state: str | None, store_id: str | None
) -> None:
    """The fleet's alerts (silence and anomalies), grouped by store; docs/alerts.md."""
    if ctx.invoked_subcommand is not None:
        return
    if db is None:
        raise click.UsageError("give --db (the database of `posedge backoffice serve`)")
    from .alerting.engine import known_stores, list_alerts

    with _open(db, readonly=True) as store:
        if store_id is not None:
            stores = known_stores(store)
            if store_id not in stores:
                shown = ", ".join(sorted(stores)[:20]) or "none yet"
                raise click.BadParameter(
                    f"no store {store_id[:80]!r} in {store.display}; known stores: {shown}",
                    param_hint="--store",
                )
        found = list_alerts(store, state=state, store_id=store_id)
        doc = {"db": store.display, "state": state, "store": store_id, "alerts": found}
    emit_to(ctx, doc, render_alerts(found))


def render_alerts(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no alerts"
    rows = []
    for a in found:
        state = a["state"] + (" (inhibited)" if a["inhibited"] else "")
        if a.get("acknowledged_by"):
            state += f" (acknowledged by {a['acknowledged_by']})"
        since = a["ends_at"] if a["state"] == "resolved" else a["starts_at"] or a["active_since"]
        rows.append([state, a["alertname"], a["store"], a["terminal"] or "-", since or "-",
                     a["summary"]])  # fmt: skip
    headers = ["state", "alert", "store", "terminal", "since", "summary"]
    return table(headers, rows, keep_whole=(1, 2, 3))


@alerts.command()
@click.option(
    "--calendars",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Store calendars (TOML/JSON, docs/silence.md): opening hours for the silence "
    "model and the outside_hours anomaly.",
)
@db_option()
@click.pass_context
def evaluate(ctx: click.Context, db: Path | str, calendars: Path | None) -> None:
    """Evaluate once (anomaly scan, silence signals, lifecycle) and deliver what is due."""
    from .alerting.config import AlertConfig
    from .alerting.engine import evaluate as run
    from .alerting.outbox import deliver_due, pending
    from .silence import CalendarError, SilenceConfig, load_calendars

    config = AlertConfig()
    if calendars is not None:
        try:
            found = load_calendars(calendars)
        except CalendarError as exc:
            raise click.BadParameter(str(exc), param_hint="--calendars") from None
        config = AlertConfig(silence=SilenceConfig(calendars=found))
    with _open(db) as store:
        done = run(store, config=config)
        delivery = deliver_due(store)
        left = len(pending(store))
    doc = done.as_dict() | {
        "delivered": len(delivery.delivered),
        "failed": len(delivery.failed),
        "undelivered": left,
    }
    moves = "; ".join(f"{t.key} {t.kind.value}" for t in done.transitions) or "no changes"
    human = (f"{moves}\n{done.new_flags} new anomaly flags, {done.notifications} notifications "
             f"queued, {len(delivery.delivered)} delivered, {len(delivery.failed)} failed "
             f"(retried later), {left} undelivered")  # fmt: skip
    if not done.evaluated:
        human = f"nothing done this round: {done.notes[-1]}"
    emit_to(ctx, doc, human)


@alerts.group()
def receivers() -> None:
    """Where notifications go: signed webhooks and Alertmanager."""


@receivers.command()
@click.argument("name")
@click.option("--url", required=True, help="Webhook URL, or Alertmanager's base URL.")
@click.option("--kind", type=click.Choice(RECEIVER_KINDS), default="webhook", show_default=True)
@db_option()
@click.pass_context
def add(ctx: click.Context, name: str, url: str, kind: str, db: Path | str) -> None:
    """Add a receiver; a webhook's signing secret is printed now, once."""
    with _open(db) as store:
        try:
            added = Receivers(store).add(name, kind, url)
        except ReceiverError as exc:
            hint = "--url" if "URL" in str(exc) else "NAME" if "name" in str(exc) else None
            raise click.BadParameter(str(exc), param_hint=hint) from None
    doc = added.public_document() | {"secret": added.secret}
    lines = [f"receiver {added.name} ({added.kind}) -> {doc['url']}"]
    if added.secret:
        lines += [f"  signing secret: {added.secret}",
                  "  shown only now: configure it in the receiver to verify the "
                  "Posedge-Signature header (docs/alerts.md)"]  # fmt: skip
    emit_to(ctx, doc, "\n".join(lines))


@receivers.command(name="list")
@db_option()
@click.pass_context
def list_(ctx: click.Context, db: Path | str) -> None:
    """List receivers (never their secrets)."""
    from .alerting.outbox import pending

    with _open(db, readonly=True) as store:
        found = [r.public_document() for r in Receivers(store).list()]
        waiting = pending(store)
    for doc in found:
        doc["undelivered"] = sum(1 for p in waiting if p["receiver"] == doc["name"])
    rows = [[d["name"], d["kind"], d["url"], "yes" if d["signed"] else "no",
             str(d["undelivered"])] for d in found]  # fmt: skip
    human = table(["name", "kind", "url", "signed", "undelivered"], rows, keep_whole=(0,))
    emit_to(ctx, {"receivers": found}, human if found else "no receivers")


@receivers.command()
@click.argument("name")
@db_option()
@click.pass_context
def remove(ctx: click.Context, name: str, db: Path | str) -> None:
    """Remove a receiver (its undelivered notifications are dropped)."""
    with _open(db) as store:
        try:
            dropped = Receivers(store).remove(name)
        except ReceiverError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None
    emit_to(ctx, {"removed": name, "dropped_notifications": dropped},
          f"removed receiver {name} ({dropped} undelivered notifications dropped)")  # fmt: skip


# ``--json`` after the subcommand too (``alerts evaluate --json``), as on every command.
add_global_options(alerts)
