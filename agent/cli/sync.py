"""``posedge sync …``: push the backlog now, show the sync state."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..alerts import AlertBook
from ..enrolment import enrolled_config
from ..errors import ConfigError
from ..sync import BackofficeRejected, SyncError, SyncService, SyncState, open_sync, terminal_id
from ..sync.service import DrainReport
from .context import CliContext, backoffice_url_option, pass_cli
from .journal import open_reader, open_writer
from .output import human_age, table

EXIT_REJECTED = 3
EXIT_UNREACHABLE = 4
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
    alert is raised; the data is kept).
    """
    config = enrolled_config(cli.config, cli.state_dir)
    if not (url or config.sync.url):  # before the journal is opened: bad input touches nothing
        raise ConfigError(
            "no back office configured: set sync.url in the configuration or pass --backoffice URL"
        )
    with open_writer(cli) as jr:
        service = open_sync(config, jr, cli.state_dir, url)
        try:
            report = _drain_with_progress(cli, service.drain, jr.acked_seq(), jr.head().seq)
            heartbeat = report.complete and _heartbeat(service, report)
        finally:
            service.client.close()
    doc = report.as_dict() | {"terminal": service.client.terminal, "heartbeat": heartbeat}
    if report.complete:
        cli.emit(doc, f"synced: back office holds everything through seq {report.acked_seq}; "
                      "heartbeat answered")  # fmt: skip
        return
    error = report.errors[-1] if report.errors else "stopped"
    cli.emit(doc, f"sync incomplete: acknowledged through seq {report.acked_seq} of "
                  f"{report.head_seq}; last error: {error}")  # fmt: skip
    sys.exit(EXIT_REJECTED if report.rejected else EXIT_UNREACHABLE)


def _heartbeat(service: SyncService, report: DrainReport) -> bool:
    """Send the heartbeat; a failure makes the report incomplete (exit 4, or 3 if rejected)."""
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
    """Cursor, backlog, last success, last error and next retry."""
    config = enrolled_config(cli.config, cli.state_dir)
    with open_reader(cli) as jr:
        stats = jr.stats()
        state = SyncState.load(jr)
        active = AlertBook(jr).as_list()
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
        ("last success", str(doc["last_success"] or "-")),
        ("last error", str(doc["last_error"] or "-")),
        ("next retry", str(doc["next_retry_at"] or "-")),
        *((f"alert {a['kind']}", f"since {a.get('since')}: {a.get('detail')}") for a in active),
    ]
    cli.emit(doc, table(["sync", ""], rows))


def register(root: click.Group) -> None:
    root.add_command(sync)


__all__ = ["BackofficeRejected", "register", "sync"]
