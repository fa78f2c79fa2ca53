"""``posedge backoffice staff …``: the dashboard's staff logins (docs/dashboard.md).

``staff add USER`` and ``staff passwd USER`` read the password from a prompt (typed twice,
not echoed) on a terminal, else one line from standard input (for scripts:
``printf '%s\\n' "$PW" | posedge backoffice staff add alice --db …``); ``staff list``;
``staff remove USER``. Removing a user or changing its password ends its sessions.

Exit codes: 0 ok; 2 usage error (a user name or password that is not allowed, a user
that exists already or does not exist, a wrong ``--db``); 4 PostgreSQL unreachable.
Nothing here prints or logs a password; only its scrypt hash is stored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from posedge.agent.cli.context import add_global_options, emit_to
from posedge.agent.cli.output import table

from .cli import db_option
from .dashboard.staff import MAX_PASSWORD_CHARS, StaffAccounts, StaffError, check_password
from .store import BackofficeStore

F = TypeVar("F", bound=Callable[..., Any])


def _open(db: Path | str) -> BackofficeStore:
    from .cli_terminals import _open as open_store

    return open_store(db)  # migrates an older database to the staff tables


def read_password() -> str:
    """From a prompt (twice) on a terminal, else one line of standard input."""
    if sys.stdin.isatty():
        password: str = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    else:
        line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2)
        if not line:
            raise click.UsageError(
                "no password on standard input: pipe one line, or run on a terminal to be asked"
            )
        password = line.rstrip("\r\n")
    try:
        return check_password(password)
    except StaffError as exc:
        raise click.UsageError(str(exc)) from None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@click.group()
def staff() -> None:
    """Staff logins of the dashboard (not terminals); docs/dashboard.md."""


@staff.command()
@click.argument("username")
@db_option()
@click.pass_context
def add(ctx: click.Context, username: str, db: Path | str) -> None:
    """Add a staff user; the password comes from a prompt or standard input."""
    from .dashboard.staff import check_username

    try:
        check_username(username)
    except StaffError as exc:
        raise click.BadParameter(str(exc), param_hint="USERNAME") from None
    with _open(db) as store:
        password = read_password()
        try:
            user = StaffAccounts(store).add(username, password)
        except StaffError as exc:
            raise click.UsageError(str(exc)) from None
    emit_to(ctx, {"username": user.username, "created_at": _iso(user.created_at)},
          f"staff user {user.username} added")  # fmt: skip


@staff.command("list")
@db_option()
@click.pass_context
def list_(ctx: click.Context, db: Path | str) -> None:
    """The staff users (never their passwords)."""
    with _open(db) as store:
        users = StaffAccounts(store).list()
    doc = {
        "staff": [
            {"username": u.username, "created_at": _iso(u.created_at),
             "password_changed_at": _iso(u.password_changed_at)}
            for u in users
        ]
    }  # fmt: skip
    rows = [[u["username"], u["created_at"], u["password_changed_at"]] for u in doc["staff"]]
    human = (
        table(["user", "created", "password changed"], rows, keep_whole=(0,))
        if rows
        else "no staff users; add one with `posedge backoffice staff add USER --db …`"
    )
    emit_to(ctx, doc, human)


@staff.command()
@click.argument("username")
@db_option()
@click.pass_context
def remove(ctx: click.Context, username: str, db: Path | str) -> None:
    """Remove a staff user; its sessions end at once."""
    with _open(db) as store:
        try:
            ended = StaffAccounts(store).remove(username)
        except StaffError as exc:
            raise click.UsageError(str(exc)) from None
    emit_to(ctx, {"username": username, "removed": True, "sessions_ended": ended},
          f"staff user {username} removed ({ended} sessions ended)")  # fmt: skip


@staff.command()
@click.argument("username")
@db_option()
@click.pass_context
def passwd(ctx: click.Context, username: str, db: Path | str) -> None:
    """Set a staff user's password; its sessions end at once."""
    with _open(db) as store:
        password = read_password()
        try:
            ended = StaffAccounts(store).set_password(username, password)
        except StaffError as exc:
            raise click.UsageError(str(exc)) from None
    emit_to(ctx, {"username": username, "password_changed": True, "sessions_ended": ended},
          f"password of {username} changed ({ended} sessions ended)")  # fmt: skip


add_global_options(staff)
