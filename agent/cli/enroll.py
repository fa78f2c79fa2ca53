"""``posedge enroll`` and ``posedge token rotate``: the terminal's identity at the back office.

``enroll --backoffice URL --code C`` generates the Ed25519 device key, registers
its public half with the one-time code and keeps what the back office answers
(docs/sync-protocol.md, "Enrolment and signed history"; files in
:mod:`posedge.agent.enrolment`). ``token rotate`` proves the device key to get a
new bearer token, replaces the token file and tells a running daemon to reload
it (SIGHUP).

Exit codes: 0 done · 2 usage, configuration, or the back office refused (a bad,
used or expired code; a revoked terminal; a token or key it does not accept:
the message says what to do) · 4 the back office cannot be reached or is busy.
Neither command ever prints or logs the token or the private key.
"""

from __future__ import annotations

from pathlib import Path

import click

from .context import CliContext, backoffice_url_option, pass_cli


def daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon running on ``state_dir`` (see :func:`.enrolling.daemon_pid`)."""
    from .enrolling import daemon_pid as holder_pid

    return holder_pid(state_dir)


@click.command()
@click.option(
    "--backoffice",
    "url",
    default=None,
    metavar="URL",
    callback=backoffice_url_option,
    help="Back office base URL (https, or http to a loopback host) [default: sync.url].",
)
@click.option(
    "--code",
    required=True,
    metavar="CODE",
    help="The one-time enrolment code from `posedge backoffice terminals add`.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Enrol again although this state directory is enrolled (a new device key and "
    "token replace the old ones; the journal is kept).",
)
@pass_cli
def enroll(cli: CliContext, url: str | None, code: str, force: bool) -> None:
    """Enrol this terminal at the back office with a one-time code.

    Generates the Ed25519 device key (STATE_DIR/signing.key, mode 0600), registers its
    public key and stores the bearer token the back office returns (sync.token_file,
    else STATE_DIR/sync-token, mode 0600). STATE_DIR/enrolment.json records the terminal
    id, store, lane and back office; the agent uses them unless the configuration sets
    terminal.id, sync.url or sync.token_file. Every events batch is then signed with
    the device key. Stop the daemon first; start it again afterwards.
    """
    from .enrolling import enroll_terminal  # imported here: `posedge enroll --help` is quick

    enroll_terminal(cli, url, code, force)


@click.group()
def token() -> None:
    """The sync token of an enrolled terminal."""


@token.command()
@click.option(
    "--no-reload",
    is_flag=True,
    help="Do not send SIGHUP to a running daemon (reload it yourself: systemctl reload posedge).",
)
@pass_cli
def rotate(cli: CliContext, no_reload: bool) -> None:
    """Get a new sync token from the back office; the old one stops working at once.

    The request is authenticated by the current token and proves the device key (a
    signature over the terminal id and a fresh nonce). The new token replaces the token
    file atomically (mode 0600) and a running daemon is told to reload it (SIGHUP).
    """
    from .enrolling import rotate_token

    rotate_token(cli, no_reload)


def register(root: click.Group) -> None:
    root.add_command(enroll)
    root.add_command(token)


__all__ = ["daemon_pid", "enroll", "register", "token"]
