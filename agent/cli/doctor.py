"""``posedge doctor``: every health check once, one line each, and what to fix.

Output (docs/doctor.md): one line per check — ``✓`` ok, ``!`` warning, ``✗`` failed, ``-``
skipped — with a ``fix:`` line under every warning and failure, then a summary line.
``--json`` prints one document (checks, summary, exit code); ``--nagios`` one Nagios plugin
line; ``--list-checks`` names and describes the checks.

Exit codes: 0 nothing failed · 2 usage or configuration error (an unknown check name lists
the known ones) · 3 a check failed · 4 the back office, or the daemon that holds the
devices, is unreachable. With ``--nagios``: 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN (the
doctor could not run: bad configuration, unknown check, internal error).

The engine is :mod:`posedge.agent.health.doctor`; this module only parses and prints.
"""

from __future__ import annotations

import logging
import sys

import click

from ..errors import PosedgeError
from ..health.doctor import DoctorReport, Finding, catalogue, run_doctor, select
from ..health.model import Status
from .context import CliContext, pass_cli

log = logging.getLogger("posedge.doctor")

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
_COLOURS = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: None}
_MODES = {
    "daemon": "answers from the running daemon (pid {pid})",
    "local": "no daemon: devices and journal opened by the doctor",
    "unreachable": "the daemon (pid {pid}) holds the devices but does not answer",
}


@click.command("doctor")
@click.argument("checks", nargs=-1, metavar="[CHECK]...")
@click.option("--list-checks", is_flag=True, help="Name and describe the checks; run none.")
@click.option(
    "--nagios",
    is_flag=True,
    help="Print one Nagios plugin line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
)
@pass_cli
def doctor(cli: CliContext, checks: tuple[str, ...], list_checks: bool, nagios: bool) -> None:
    """Check the whole terminal once and say what to fix.

    Runs every check (or only the CHECKs named: a name such as printer.paper, or a group
    such as printer): the daemon and its watchdog, the back office and the token, the
    journal's chain, and the terminal's device, journal, sync, vault, state-directory and
    configuration checks. With the daemon running it asks the daemon (it never opens the
    devices the daemon holds); without it, it opens them itself, read-only where it can.

    Exit 0 when nothing failed, 3 when a check failed, 4 when the back office (or the
    daemon) is unreachable, 2 for an unknown check name.
    """
    if nagios and cli.json_output:
        raise click.UsageError("--nagios and --json are two output formats; choose one")
    try:
        if cli.config_option is not None:  # a --config named explicitly must be valid
            cli.loaded_config  # noqa: B018 - loads and validates it: ConfigError, exit 2
    except PosedgeError as exc:
        if not nagios:
            raise
        click.echo(f"POSEDGE UNKNOWN - {_one_line(str(exc))}")
        sys.exit(NAGIOS_UNKNOWN)
    if list_checks:
        _list(cli, list(checks))
        return
    if nagios:
        sys.exit(_nagios(cli, list(checks)))
    report = _run(cli, list(checks))
    cli.emit(report.as_dict(), render(report, colour=sys.stdout.isatty()))
    sys.exit(report.exit_code())


# The doctor checks a --config named explicitly itself (above), not before its callback as
# every other command (agent/cli/context.py): so that --nagios reports it as UNKNOWN (3).
doctor.callback._checks_named_config = True  # type: ignore[union-attr]


def _run(cli: CliContext, names: list[str]) -> DoctorReport:
    from ..enrolment import enrolled_config  # cryptography: imported here, --help is quick

    select(names)  # an unknown name is a usage error before anything is opened
    config = enrolled_config(cli.config, cli.state_dir)
    return run_doctor(config, cli.state_dir, names)


def _list(cli: CliContext, names: list[str]) -> None:
    specs = select(names) if names else catalogue()
    width = max((len(spec.name) for spec in specs), default=0)
    doc = {
        "checks": [
            {"name": s.name, "description": s.description, "live_only": s.live_only} for s in specs
        ]
    }
    lines = [
        f"{s.name:<{width}}  {s.description}" + (" (daemon only)" if s.live_only else "")
        for s in specs
    ]
    cli.emit(doc, "\n".join(lines))


def render(report: DoctorReport, *, colour: bool = False) -> str:
    """The human text: a line per check, ``fix:`` under the non-OK ones, the summary."""
    width = max((len(f.result.name) for f in report.findings), default=0)
    lines = [line for finding in report.findings for line in _lines(finding, width, colour)]
    counts = report.counts()
    mode = _MODES[report.mode].format(pid=report.daemon_pid)
    lines.append(
        f"{counts['ok']} ok, {counts['warn']} {_plural(counts['warn'], 'warning')}, "
        f"{counts['fail']} failed, {counts['skip']} skipped ({mode})"
    )
    return "\n".join(lines)


def _lines(finding: Finding, width: int, colour: bool) -> list[str]:
    result = finding.result
    symbol = result.status.symbol
    hue = _COLOURS[result.status]
    if colour:
        symbol = click.style(symbol, fg=hue, bold=True) if hue else click.style(symbol, dim=True)
    lines = [f"{symbol} {result.name:<{width}}  {result.summary}"]
    if result.status in (Status.WARN, Status.FAIL):
        lines.append(f"  fix: {result.fix}")
    return lines


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _nagios(cli: CliContext, names: list[str]) -> int:
    """Print the plugin line; return the Nagios exit code (3 UNKNOWN when doctor cannot run)."""
    try:
        report = _run(cli, names)
    except PosedgeError as exc:
        click.echo(f"POSEDGE UNKNOWN - {_one_line(str(exc))}")
        return NAGIOS_UNKNOWN
    except Exception:  # the plugin contract: UNKNOWN, never a traceback for Nagios to parse
        log.exception("internal error")
        click.echo("POSEDGE UNKNOWN - internal error in posedge doctor (details in its log)")
        return NAGIOS_UNKNOWN
    line, code = nagios_line(report)
    click.echo(line)
    return code


def nagios_line(report: DoctorReport) -> tuple[str, int]:
    """``POSEDGE CRITICAL - 2 failed: a, b; 1 warning: c | ok=5 warn=1 crit=2`` and its code."""
    failed = [f.result.name for f in report.findings if f.result.status is Status.FAIL]
    warned = [f.result.name for f in report.findings if f.result.status is Status.WARN]
    counts = report.counts()
    perf = f"ok={counts['ok']} warn={counts['warn']} crit={counts['fail']}"
    parts = []
    if failed:
        parts.append(f"{len(failed)} failed: {', '.join(failed)}")
    if warned:
        parts.append(f"{len(warned)} {_plural(len(warned), 'warning')}: {', '.join(warned)}")
    if failed:
        state, code = "CRITICAL", NAGIOS_CRITICAL
    elif warned:
        state, code = "WARNING", NAGIOS_WARNING
    else:
        state, code = "OK", NAGIOS_OK
        parts.append(f"{counts['ok']} {_plural(counts['ok'], 'check')} ok")
    return f"POSEDGE {state} - {'; '.join(parts)} | {perf}", code


def _one_line(text: str) -> str:
    """Nagios reads the first line only, and ``|`` starts performance data."""
    return " ".join(text.split()).replace("|", "/")


__all__ = ["doctor", "nagios_line", "render"]
