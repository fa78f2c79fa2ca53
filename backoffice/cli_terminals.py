"""``posedge backoffice terminals …``: enrolment codes, the terminal registry, revocation.

``add STORE/LANE`` registers a terminal and prints its one-time enrolment code
(once: only its hash is stored); ``list`` shows the registry; ``revoke ID``
refuses the terminal's token, key and codes everywhere from now on;
``rotate-token ID`` makes the terminal's tokens stop working at once and
issues a new enrolment code, with which the terminal enrols again (``posedge
enroll --force --code CODE``: a new device key and token, the same journal) —
for a token or key that may have leaked, or a state directory restored from a
backup. A replaced device with a new journal is a new terminal: revoke the
old one and ``add`` the new one under another ``--terminal-id``.

These commands open the database the running ``serve`` uses, a SQLite file or
a PostgreSQL URL (the terminal registry is in it, so every replica sees a
change at once). Exit codes: 0 ok, 2 usage error (bad STORE/LANE or id,
unknown or revoked terminal, no such database file, a wrong ``--db``), 4 the
PostgreSQL server cannot be reached. Nothing here prints a token; a code is
printed once, when issued.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from posedge.agent.cli.context import emit_to
from posedge.agent.cli.output import table
from posedge.agent.config import parse_duration

from .cli import db_option
from .registry import (
    MAX_CODE_TTL_S,
    MIN_CODE_TTL_S,
    RegistryError,
    TerminalRecord,
    TerminalRegistry,
    terminal_id_for,
)
from .store import BackofficeStore

REGISTRY_SCHEMA_VERSION = 3


def _expires(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not MIN_CODE_TTL_S <= seconds <= MAX_CODE_TTL_S:
        raise click.BadParameter(f"{value!r}: a code may live from 1m to 30d")
    return seconds


def _expires_option(command: Any) -> Any:
    return click.option(
        "--expires",
        default="24h",
        show_default=True,
        callback=_expires,
        metavar="DURATION",
        help="How long the enrolment code works (1m to 30d), e.g. 30m, 24h, 7d.",
    )(command)


def _open(db: Path | str, readonly: bool = False) -> BackofficeStore:
    """The store; a SQLite file must exist (a typo would make a new one whose codes no
    server knows). A wrong --db is exit 2, an unreachable PostgreSQL server exit 4."""
    from .cli import database_errors

    if isinstance(db, Path) and not db.is_file():
        raise click.BadParameter(
            f"no back office database at {db}; pass the --db file that `posedge backoffice "
            "serve` uses (it creates the file on its first start)",
            param_hint="--db",
        )
    with database_errors():
        return BackofficeStore(db, readonly=readonly, pool_size=1)


def _time(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _code_lines(record: TerminalRecord, code: str, backoffice_hint: str) -> list[str]:
    return [
        f"  enrolment code: {code}",
        f"  expires:        {_time(record.code_expires_at)} (works once)",
        "  on the terminal, as the posedge user:",
        f"    posedge enroll --backoffice {backoffice_hint} --code {code}",
        "  this code is shown only now; if it is lost, issue a new one with: "
        f"posedge backoffice terminals rotate-token {record.terminal}",
    ]


_URL_HINT = "https://BACKOFFICE"


def _public_url_option(command: Any) -> Any:
    return click.option(
        "--public-url",
        default=_URL_HINT,
        metavar="URL",
        help="The back office URL terminals use, for the `posedge enroll` line printed "
        "[default: a placeholder].",
    )(command)


@click.group()
def terminals() -> None:
    """Enrolled terminals: enrolment codes, listing, token rotation, revocation."""


@terminals.command()
@click.argument("store_lane", metavar="STORE/LANE")
@click.option(
    "--terminal-id",
    default=None,
    metavar="ID",
    help="The terminal id [default: STORE-LANE]; 1-64 of A-Z a-z 0-9 . _ -.",
)
@_expires_option
@_public_url_option
@db_option()
@click.pass_context
def add(
    ctx: click.Context,
    store_lane: str,
    terminal_id: str | None,
    expires: float,
    public_url: str,
    db: Path | str,
) -> None:
    """Register a terminal of STORE/LANE and print its one-time enrolment code."""
    try:
        terminal, store_name, lane = terminal_id_for(store_lane, terminal_id)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="STORE/LANE or --terminal-id") from None
    with _open(db) as store:
        try:
            record, code = TerminalRegistry(store).add(terminal, store_name, lane, expires)
        except RegistryError as exc:
            raise click.UsageError(str(exc)) from None
    doc = record.public_document(store.clock()) | {"code": code}
    lines = [f"terminal {terminal} added (store {store_name}, lane {lane})"]
    emit_to(ctx, doc, "\n".join(lines + _code_lines(record, code, public_url)))


@terminals.command(name="list")
@db_option()
@click.pass_context
def list_(ctx: click.Context, db: Path | str) -> None:
    """The registry: id, store, lane, state, enrolment and revocation times."""
    with _open(db, readonly=True) as store:
        now = store.clock()
        records = (
            TerminalRegistry(store).terminals()
            if store.schema_version >= REGISTRY_SCHEMA_VERSION
            else []
        )
    docs = [record.public_document(now) for record in records]
    if not docs:
        human = (
            f"no terminals in the registry of {store.display}; add one: posedge backoffice "
            "terminals add STORE/LANE"
        )
    else:
        rows = [
            [
                r.terminal,
                r.store,
                r.lane,
                r.state(now),
                _time(r.enrolled_at),
                _time(r.code_expires_at) if r.code_used_at is None and r.code_hash else "-",
                _time(r.revoked_at),
                (r.public_key or "-")[:12],
            ]
            for r in records
        ]
        headers = ["terminal", "store", "lane", "state", "enrolled", "code expires", "revoked",
                   "key"]  # fmt: skip
        human = table(headers, rows, title=f"terminals of {store.display}")
    emit_to(ctx, {"db": store.display, "terminals": docs}, human)


@terminals.command()
@click.argument("terminal")
@db_option()
@click.pass_context
def revoke(ctx: click.Context, terminal: str, db: Path | str) -> None:
    """Revoke a terminal: its token, device key and codes are refused everywhere (403).

    Irreversible: a replacement is added as a new terminal (terminals add).
    """
    with _open(db) as store:
        try:
            record = TerminalRegistry(store).revoke(terminal)
        except RegistryError as exc:
            raise click.UsageError(str(exc)) from None
        now = store.clock()
    emit_to(
        ctx,
        record.public_document(now),
        f"terminal {terminal} revoked at {_time(record.revoked_at)}: the back office refuses "
        "its token, device key and enrolment codes from now on",
    )


@terminals.command(name="rotate-token")
@click.argument("terminal")
@_expires_option
@_public_url_option
@db_option()
@click.pass_context
def rotate_token(
    ctx: click.Context, terminal: str, expires: float, public_url: str, db: Path | str
) -> None:
    """Invalidate a terminal's token now and issue a new enrolment code for it.

    The terminal enrols again with the code (posedge enroll --force --code CODE),
    which registers a new device key and token; until then the back office accepts
    nothing from it. A terminal that still has its key rotates its own token without
    an operator: posedge token rotate.
    """
    with _open(db) as store:
        try:
            record, code = TerminalRegistry(store).new_code(terminal, expires)
        except RegistryError as exc:
            raise click.UsageError(str(exc)) from None
        now = store.clock()
    lines = [
        f"terminal {terminal}: its token no longer works; it must enrol again "
        "(posedge enroll --force)"
    ]
    command_lines = _code_lines(record, code, public_url)
    command_lines[3] = command_lines[3].replace("posedge enroll ", "posedge enroll --force ")
    emit_to(ctx, record.public_document(now) | {"code": code}, "\n".join(lines + command_lines))


__all__ = ["terminals"]
