"""``posedge sync …``: push the backlog now, show the sync state.

The sync machinery (httpx, the protocol models) is imported when a command runs, not when
this module is: ``posedge sync --help`` stays quick.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from .context import CliContext, backoffice_url_option, pass_cli
from .journal import open_reader, open_writer
from .output import human_age, table

if TYPE_CHECKING:
    from ..sync import SyncService
    from ..sync.service import DrainReport, SyncState

EXIT_REJECTED = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
NOW_MAX_ATTEMPTS = 3
NOW_MAX_WAIT_S = 5.0


@click.group()
def sync() -> None:
    """Upload the journal to the back office and inspect the sync state."""


@sync.command()
@click.option(
    "--backoffice",
    "url",
    default=None,
    metavar="URL",
    callback=backoffice_url_option,
    help="Back office base URL (https, or http to a loopback host) [default: sync.url].",
)
@pass_cli
def now(cli: CliContext, url: str | None) -> None:
    """Push the whole backlog once, send a heartbeat, and exit.

    The back office is always contacted, even with nothing to upload (the
    heartbeat), so this tests the link. Exit 0 when everything is acknowledged
    and the heartbeat answered, 4 when the back office cannot be reached (after
    a few quick retries), 3 when it rejects the upload or the heartbeat (an
    alert is raised; the data is kept), 130 on Ctrl-C (it says what the back
    office holds and what remains; nothing is lost).
    """
    from ..enrolment import enrolled_config
    from ..sync import open_sync

    config = enrolled_config(cli.config, cli.state_dir)
    if not (url or config.sync.url):  # before the journal is opened: bad input touches nothing
        raise ConfigError(
            "no back office configured: set sync.url in the configuration or pass --backoffice URL"
        )
    interrupted = False
    with open_writer(cli) as jr:
        service = open_sync(config, jr, cli.state_dir, url)
        started_acked = jr.acked_seq()
        try:
            report = _drain_with_progress(cli, service.drain, started_acked, jr.head().seq)
            heartbeat = report.complete and _heartbeat(service, report)
        except KeyboardInterrupt:
            interrupted = True  # reported once the journal is closed (what is durable)
        finally:
            service.client.close()
    if interrupted:
        _interrupted(cli, service.client.terminal, started_acked)
    doc = report.as_dict() | {"terminal": service.client.terminal, "heartbeat": heartbeat}
    if report.complete:
        cli.emit(doc, f"synced: back office holds everything through seq {report.acked_seq}; "
                      "heartbeat answered")  # fmt: skip
        return
    error = report.errors[-1] if report.errors else "stopped"
    cli.emit(doc, f"sync incomplete: acknowledged through seq {report.acked_seq} of "
                  f"{report.head_seq}; last error: {error}")  # fmt: skip
    sys.exit(EXIT_REJECTED if report.rejected else EXIT_UNREACHABLE)


def _interrupted(cli: CliContext, terminal: str, started_acked: int) -> None:
    """Ctrl-C: what the back office acknowledged is kept (the cursor moves only on an
    acknowledgement), the rest stays in the journal for the next sync; exit 130. Read from
    the journal reopened, so the numbers are what is committed, not what was in memory."""
    with open_reader(cli) as jr:
        acked, head = jr.acked_seq(), jr.head().seq
    doc = {
        "interrupted": True,
        "terminal": terminal,
        "uploaded_events": acked - started_acked,
        "acked_seq": acked,
        "head_seq": head,
        "remaining_events": head - acked,
        "lost_events": 0,
    }
    remains = (
        f"events {acked + 1}-{head} ({head - acked}) stay in the journal for the next sync"
        if head > acked
        else "nothing remains"
    )
    cli.emit(
        doc,
        f"interrupted: {acked - started_acked} events uploaded in this run; the back office "
        f"holds everything through seq {acked}; {remains}; nothing was lost",
    )
    sys.stdout.flush()
    sys.exit(EXIT_INTERRUPTED)


def _heartbeat(service: SyncService, report: DrainReport) -> bool:
    """Send the heartbeat; a failure makes the report incomplete (exit 4, or 3 if rejected)."""
    from ..sync import BackofficeRejected, SyncError

    try:
        service.check_link(max_attempts=NOW_MAX_ATTEMPTS, max_wait_s=NOW_MAX_WAIT_S)
    except SyncError as exc:
        report.complete = False
        report.errors.append(f"heartbeat: {exc}")
        report.rejected = isinstance(exc, BackofficeRejected)
        return False
    return True


def _drain_with_progress(cli: CliContext, drain: Any, acked: int, head: int) -> DrainReport:
    kwargs: dict[str, Any] = {"max_attempts": NOW_MAX_ATTEMPTS, "max_wait_s": NOW_MAX_WAIT_S}
    if cli.json_output or not sys.stderr.isatty():
        result: DrainReport = drain(**kwargs)
        return result
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("syncing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    ) as bar:
        task = bar.add_task("sync", total=max(0, head - acked))
        result = drain(
            progress=lambda done, total: bar.update(
                task, completed=done - acked, total=total - acked
            ),
            **kwargs,
        )
        return result


@sync.command()
@pass_cli
def status(cli: CliContext) -> None:
    """Cursor, backlog, last success, last error (when, and whether still current), next retry."""
    from ..alerts import AlertBook
    from ..enrolment import enrolled_config
    from ..sync import SyncState, terminal_id

    config = enrolled_config(cli.config, cli.state_dir)
    with open_reader(cli) as jr:
        stats = jr.stats()
        state = SyncState.load(jr)
        active = AlertBook(jr).as_list()
    current = error_is_current(state)
    doc: dict[str, Any] = {
        "terminal": terminal_id(config.terminal.id, cli.state_dir) if config.terminal.id or
        (cli.state_dir / "terminal-id").exists() else None,
        "backoffice": config.sync.url or state.backoffice,
        "acked_seq": stats["acked_seq"],
        "head_seq": stats["head_seq"],
        "backlog": stats["unsynced"],
        "oldest_unsynced_age_s": stats["oldest_unsynced_age_s"],
        "last_success": state.last_success,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "last_error_age_s": _age_s(state.last_error_at),
        "last_error_current": current,
        "next_retry_at": state.next_retry_at,
        "consecutive_failures": state.consecutive_failures,
        "clock_skew_s": state.last_skew_s,
        "alerts_active": bool(active),
        "alerts": active,
    }  # fmt: skip
    rows = [
        ("terminal", str(doc["terminal"] or "(not yet assigned)")),
        ("back office", str(doc["backoffice"] or "(not configured)")),
        ("acknowledged through", str(doc["acked_seq"])),
        ("head", str(doc["head_seq"])),
        ("backlog", f"{doc['backlog']} events, oldest {human_age(doc['oldest_unsynced_age_s'])}"),
        ("last success", _when(state.last_success)),
        ("last error", _last_error_text(state, current)),
        ("next retry", str(doc["next_retry_at"] or "-")),
        *((f"alert {a['kind']}", f"since {a.get('since')}: {a.get('detail')}") for a in active),
    ]
    cli.emit(doc, table(["sync", ""], rows))


def error_is_current(state: SyncState) -> bool | None:
    """Whether the last error still stands: failures since the last success (None: no error
    was ever recorded). An error followed by a success is history, not a current problem."""
    if not state.last_error_at:
        return None
    if state.consecutive_failures > 0:
        return True
    return not (state.last_success and state.last_success > state.last_error_at)


def _last_error_text(state: SyncState, current: bool | None) -> str:
    if current is None or not state.last_error:
        return "-"
    when = _when(state.last_error_at)
    if current:
        failures = state.consecutive_failures
        streak = f", {failures} failed attempt{'s' if failures != 1 else ''} in a row"
        return f"CURRENT — {state.last_error} (at {when}{streak if failures else ''})"
    return f"recovered — {state.last_error} (at {when}; succeeded since, at {state.last_success})"


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def _when(iso: str | None) -> str:
    age = _age_s(iso)
    return "-" if not iso else f"{iso} ({human_age(age)} ago)" if age is not None else iso


def register(root: click.Group) -> None:
    root.add_command(sync)


__all__ = ["register", "sync"]
