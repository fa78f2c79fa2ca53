"""``posedge close-day``: close the business day, show a close, reprint its Z-report.

With a daemon running on the state directory the command asks it through the till API
(``POST /v1/close``), so the daemon's printer and journal are used as they are. With no
daemon it takes the state directory's daemon lock itself (no daemon can start meanwhile),
closes directly on the journal and prints on the configured printer. Exit codes: 0 closed
(even when the Z-report could not be printed: the close is journaled, reprint it later) ·
2 bad option, bad/future/earlier business day, unknown close · 3 the day is already closed
(``--force``) or another close runs · 4 the daemon does not answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import PeerUnreachable
from .context import CliContext, pass_cli

if TYPE_CHECKING:
    from ..close.closer import Closer

DAEMON_TIMEOUT_S = 60.0
"""A close reads a day of events and prints; the daemon answers within seconds."""


@click.command("close-day")
@click.option(
    "--business-day",
    metavar="YYYY-MM-DD",
    default=None,
    help="The business day to close [default: the current one in [close] timezone].",
)
@click.option("--force", is_flag=True, help="Close a business day that already has a close.")
@click.option(
    "--reprint",
    metavar="[CLOSE]",
    is_flag=False,
    flag_value="latest",
    default=None,
    help="Print a close's Z-report again: a close seq, a business day, or the latest.",
)
@click.option(
    "--show",
    metavar="[CLOSE]",
    is_flag=False,
    flag_value="latest",
    default=None,
    help="Show a close (a close seq, a business day, or the latest) without closing.",
)
@click.option("--lines", is_flag=True, help="With --show: the per-sale lines too.")
@pass_cli
def close_day(
    cli: CliContext,
    business_day: str | None,
    force: bool,
    reprint: str | None,
    show: str | None,
    lines: bool,
) -> None:
    """Close the business day: totals journaled as day.closed, Z-report printed.

    Totals by currency, outcome, card brand and entry mode over every sale settled since
    the previous close (docs/close.md). Exit 0 closed (also when the Z-report did not
    print: --reprint later), 2 bad business day or option, 3 already closed (--force) or a
    close is running, 4 the daemon does not answer.
    """
    from ..close.businessday import parse_business_day

    if reprint is not None and show is not None:
        raise click.UsageError("--reprint and --show cannot be combined; choose one")
    action = "reprint" if reprint is not None else "show" if show is not None else "close"
    if action != "close" and (business_day is not None or force):
        raise click.UsageError(f"--business-day and --force close a day; not with --{action}")
    if lines and action != "show":
        raise click.UsageError("--lines goes with --show")
    if business_day is not None:
        parse_business_day(business_day)  # exit 2 before anything is opened
    ref = reprint if reprint is not None else show
    _check_ref(ref)
    cli.loaded_config  # noqa: B018 - a bad configuration is exit 2 before the journal opens
    doc = _via_daemon_or_journal(cli, action, ref, business_day, force, lines)
    cli.emit(doc, _human(action, doc))


def _check_ref(ref: str | None) -> None:
    from ..close.businessday import parse_business_day

    if ref is None or ref == "latest" or (ref.isascii() and ref.isdigit()):
        return
    parse_business_day(ref)


def _via_daemon_or_journal(
    cli: CliContext, action: str, ref: str | None, day: str | None, force: bool, lines: bool
) -> dict[str, Any]:
    from ..daemon.lockfile import DaemonAlreadyRunning, StateDirLock

    lock = StateDirLock.for_state_dir(cli.state_dir)
    try:
        lock.acquire()
    except DaemonAlreadyRunning as exc:
        return _ask_daemon(cli, exc.pid, action, ref, day, force, lines) | {"via": "daemon"}
    try:
        return _on_journal(cli, action, ref, day, force, lines) | {"via": "journal"}
    finally:
        lock.release()


def _on_journal(
    cli: CliContext, action: str, ref: str | None, day: str | None, force: bool, lines: bool
) -> dict[str, Any]:
    from ..close.closer import close_document
    from ..journal import Journal
    from ..sync.terminal import terminal_id

    config = cli.config
    printer: Any = None

    def open_printer_once() -> Any:
        nonlocal printer
        if printer is None and config.printer.url:
            from ..devices import open_printer

            printer = open_printer(config, cli.state_dir)
        return printer

    with Journal.open(cli.state_dir, busy_timeout_s=config.journal.busy_timeout_s) as jr:
        closer = _closer(jr, config, terminal_id(config.terminal.id, cli.state_dir))
        closer.printer = open_printer_once
        try:
            if action == "close":
                record = closer.close(day, trigger="manual", force=force)
                return close_document(record, closer.print_report(record))
            record = closer.find(None if ref == "latest" else ref)
            if action == "reprint":
                return close_document(record, closer.print_report(record, reprint=True))
            return close_document(record, None, closer.lines(record) if lines else None)
        finally:
            if printer is not None:
                printer.close()


def _closer(jr: Any, config: Any, terminal: str) -> Closer:
    from ..close.closer import Closer

    return Closer(jr, lambda: config, terminal=terminal)


def _ask_daemon(
    cli: CliContext,
    pid: int | None,
    action: str,
    ref: str | None,
    day: str | None,
    force: bool,
    lines: bool,
) -> dict[str, Any]:

    from ..health.daemonlink import DaemonLink

    try:
        link = DaemonLink.connect(cli.config, cli.state_dir)
    except PeerUnreachable:
        _busy_if_close_day(pid)
        raise
    target = ref or "latest"
    if action == "close":
        body: dict[str, Any] = {"force": force} | ({"business_day": day} if day else {})
        method, path = "POST", "/v1/close"
    elif action == "reprint":
        method, path, body = "POST", f"/v1/close/{target}/reprint", {}
    else:
        method, path, body = "GET", f"/v1/close/{target}?lines={'true' if lines else 'false'}", {}
    where = f"the daemon (pid {link.pid}) on {link.socket}"
    try:
        reply = link.request(
            method,
            path,
            body if method == "POST" else None,
            timeout_s=DAEMON_TIMEOUT_S,
            stuck_hint="see its log (journalctl -u posedge); the close may still complete: "
            "posedge close-day --show",
        )
    except PeerUnreachable:
        _busy_if_close_day(link.pid)
        raise
    return _answer(reply, where, path)


def _answer(reply: Any, where: str, path: str) -> dict[str, Any]:
    from ..close.errors import AlreadyClosed, CloseBusy, CloseNotFound, CloseRefused

    try:
        doc = reply.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise PeerUnreachable(f"{where} answered {path} with HTTP {reply.status_code}, not JSON")
    if reply.status_code in (200, 201):
        return doc
    detail = str(doc.get("detail") or f"HTTP {reply.status_code}")
    kind = str(doc.get("type", "")).rsplit("/", 1)[-1]
    if kind == "already-closed":
        raise AlreadyClosed(detail)
    if kind == "close-in-progress":
        raise CloseBusy(detail)
    if reply.status_code == 404 and kind == "not-found":
        if "no such endpoint" in detail:
            raise PeerUnreachable(f"{where} predates the close (no {path}); upgrade it")
        raise CloseNotFound(detail)
    if reply.status_code in (400, 422):
        raise CloseRefused(detail)
    raise PeerUnreachable(f"{where} answered {path} with HTTP {reply.status_code}: {detail}")


def _busy_if_close_day(pid: int | None) -> None:
    """The lock's holder is another ``posedge close-day`` (no daemon): a close is running."""
    from ..close.errors import CloseBusy

    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"close-day" in cmdline:
        raise CloseBusy(
            f"another posedge close-day (pid {pid}) is closing on this state directory; "
            "wait for it to finish"
        )


def _human(action: str, doc: dict[str, Any]) -> str:
    from ..sales.policy import format_amount
    from .output import table

    close = doc["close"]
    head = {
        "close": f"closed business day {close['business_day']} as close #{close['close_seq']}",
        "reprint": f"Z-report of close #{close['close_seq']} ({close['business_day']})",
        "show": f"close #{close['close_seq']} of business day {close['business_day']}",
    }[action]
    parts = [
        f"{head}: seqs {close['seq_from']}-{close['seq_to']}, {close['lines_count']} sales, "
        f"{close['pending_count']} pending, digest {close['lines_digest']}"
    ]
    rows = [
        (
            t["currency"],
            t["outcome"],
            t["brand"],
            t["entry_mode"],
            str(t["count"]),
            format_amount(int(t["amount"]), t["currency"]),
        )
        for t in close["totals"]
    ]
    if rows:
        parts.append(table(["currency", "outcome", "brand", "entry", "count", "amount"], rows))
    printed = doc.get("print")
    if printed is not None:
        parts.append(
            "Z-report printed"
            if printed["printed"]
            else f"Z-report NOT printed ({printed['error']}); the close is kept: "
            f"posedge close-day --reprint {close['close_seq']}"
        )
    for line in doc.get("lines") or []:
        parts.append(
            f"  {line['txn']} {line['outcome']} (was {line['previous_outcome'] or '-'}) "
            f"{line['currency']} {format_amount(int(line['amount']), line['currency'])}"
        )
    return "\n".join(parts)
