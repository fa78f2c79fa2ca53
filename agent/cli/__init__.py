"""The ``posedge`` command: global options, subcommand registry, exit codes.

Exit codes (DESIGN §3): 0 ok · 1 internal error · 2 usage or configuration
error · 3 a check found a problem · 4 a needed peer is unreachable · 130
interrupted (Ctrl-C). Each command group lives in its own module and is
registered in :func:`_register` by one line: its name, ``module:attribute`` and
one-line help. Nothing is imported until the command runs, so ``posedge --help``
stays quick (tests/agent/test_cli_usability.py checks no heavy module loads).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from ..errors import PosedgeError
from ..logs import configure_logging
from .context import CliContext, add_global_options
from .error_report import ErrorReport, json_requested
from .lazy import LazyCommand, LazyGroup

EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130

log = logging.getLogger("posedge.cli")

COMMAND_ENTRY_POINTS = "posedge.commands"


class RootGroup(LazyGroup):
    """The ``posedge`` group: the agent's own commands from :func:`_register`; the command
    groups of the packages built on the agent (posedge.backoffice: ``backoffice``;
    posedge.simulator: ``simulate``, ``demo``) from the ``posedge.commands`` entry points,
    so the agent never imports them. An entry point names a :class:`LazyCommand` (cheap to
    list) or a click command. They load on the first lookup of a name not registered here,
    or when listing, never when this module is imported: a plug-in module may import
    :mod:`posedge.agent.cli.context` (and so this package) before it is complete."""

    _plugins_loaded = False

    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=COMMAND_ENTRY_POINTS):
            if entry.name in self.known_names():
                continue
            found = entry.load()
            if isinstance(found, LazyCommand):
                self.lazy_commands[entry.name] = found
            elif isinstance(found, click.Command):
                self.add_command(found, entry.name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.known_names():
            self.load_plugins()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugins()
        return super().list_commands(ctx)


@click.group(
    cls=RootGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the journal, keys and device statistics live "
    "[default: $POSEDGE_STATE_DIR, $STATE_DIRECTORY, /var/lib/posedge as root, "
    "else $XDG_STATE_HOME/posedge].",
)
@click.option(
    "--config",
    "config_path",
    # readable=False: an unreadable file reaches posedge's own loader, whose message (exit 2)
    # is the same for --config, POSEDGE_CONFIG and the default file.
    type=click.Path(path_type=Path, dir_okay=False, readable=False),
    default=None,
    help="TOML configuration file [default: $POSEDGE_CONFIG, else /etc/posedge/posedge.toml "
    "if it exists, else built-in defaults].",
)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
@click.version_option(None, "--version", package_name="posedge", prog_name="posedge")
@click.pass_context
def cli(
    ctx: click.Context, state_dir: Path | None, config_path: Path | None, json_output: bool
) -> None:
    """posedge — terminal-side edge agent for point-of-sale devices.

    Global options may also follow the subcommand (posedge journal verify --json).
    Exit codes: 0 ok, 1 internal error, 2 usage or configuration error,
    3 a check found a problem, 4 a needed peer is unreachable, 130 interrupted.
    """
    ctx.obj = CliContext(
        state_dir_option=state_dir, config_option=config_path, json_output=json_output
    )


# ``--json``, ``--state-dir`` and ``--config`` are accepted after every subcommand too, and a
# --config named explicitly is checked before any command runs (exit 2 when missing or bad).
cli.preparers.append(add_global_options)


def _register(root: RootGroup) -> None:
    """One line per command: name, ``.module:attribute`` (under posedge.agent.cli) and the
    one-line help listings show (loaded or not), plus the modules that add subcommands to
    it. Nothing is imported here."""

    def add(name: str, target: str, short_help: str, also: tuple[str, ...] = ()) -> None:
        root.add_lazy(name, target, short_help, also, package=__name__)

    add("close-day", ".close:close_day", "Close the business day: totals journaled as day.closed, Z-report printed.")  # fmt: skip  # noqa: E501
    add("devices", ".devices:devices", "List serial ports and USB devices, known models, and whether you can open them.", also=(".test_cmd",))  # fmt: skip  # noqa: E501
    add("doctor", ".doctor:doctor", "Check the whole terminal once and say what to fix.")
    add("enroll", ".enroll:enroll", "Enrol this terminal at the back office with a one-time code.")
    add("journal", ".journal:journal", "Inspect and annotate the tamper-evident transaction journal.")  # fmt: skip  # noqa: E501
    add("run", ".run:run", "Run the agent until SIGTERM/SIGINT; SIGHUP reloads the configuration.")
    add("status", ".status:status", "The running daemon at a glance: sales today, devices, backlog, alerts.")  # fmt: skip  # noqa: E501
    add("support-bundle", ".bundle:support_bundle", "Write a support bundle for the vendor: diagnostics without card data, keys or tokens.")  # fmt: skip  # noqa: E501
    add("sync", ".sync:sync", "Upload the journal to the back office and inspect the sync state.")
    add("test", ".test_cmd:test_group", "Exercise one device: print a test receipt, read a test swipe.")  # fmt: skip  # noqa: E501
    add("token", ".enroll:token", "The sync token of an enrolled terminal.")


_register(cli)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map errors to exit codes (and, with --json, to a
    JSON error document on stdout: ``{"error": {"message", "exit_code", "kind"}}``)."""
    configure_logging()
    args = sys.argv[1:] if argv is None else argv
    if argv is None and "run" in args:
        # posedge run: SIGUSR1 (a device dump once the daemon handles it) must not kill it
        # while it imports and starts; ignored from here (docs/diagnostics.md).
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    ctx_json = json_requested(args)
    try:
        cli.main(args=args, prog_name="posedge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        ErrorReport("aborted", EXIT_INTERRUPTED, "interrupted").show(ctx_json)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        ErrorReport.from_click(exc).show(ctx_json, exc)
        sys.exit(exc.exit_code)
    except PosedgeError as exc:
        ErrorReport.from_posedge(exc).show(ctx_json)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        ErrorReport("interrupted", EXIT_INTERRUPTED, "interrupted").show(ctx_json)
        sys.exit(EXIT_INTERRUPTED)
    except Exception:
        log.exception("internal error")
        ErrorReport("internal error (details logged above)", EXIT_INTERNAL, "internal").show(
            ctx_json
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)
