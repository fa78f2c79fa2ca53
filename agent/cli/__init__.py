"""The ``posedge`` command: global options, subcommand registry, exit codes.

Exit codes (DESIGN §3): 0 ok · 1 internal error · 2 usage or configuration
error · 3 a check found a problem · 4 a needed peer is unreachable.
Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

import click

from ..errors import PosedgeError
from ..logs import configure_logging
from .context import CliContext, add_json_option

EXIT_INTERNAL = 1

log = logging.getLogger("posedge.cli")


def _version() -> str:
    try:
        return version("posedge")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


COMMAND_ENTRY_POINTS = "posedge.commands"


class RootGroup(click.Group):
    """The ``posedge`` group: the command groups of the packages built on the agent
    (posedge.backoffice: ``backoffice``; posedge.simulator: ``simulate``, ``demo``) come
    from the ``posedge.commands`` entry points, so the agent never imports them. They load
    on the first command lookup, not when this module is imported: a plug-in module may
    import :mod:`posedge.agent.cli.context` (and so this package) before it is complete."""

    _plugins_loaded = False

    def load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in entry_points(group=COMMAND_ENTRY_POINTS):
            command = entry.load()
            if isinstance(command, click.Command) and entry.name not in self.commands:
                add_json_option(command)
                self.add_command(command, entry.name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
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
@click.version_option(_version(), "--version", prog_name="posedge")
@click.pass_context
def cli(
    ctx: click.Context, state_dir: Path | None, config_path: Path | None, json_output: bool
) -> None:
    """posedge — terminal-side edge agent for point-of-sale devices.

    Exit codes: 0 ok, 1 internal error, 2 usage or configuration error,
    3 a check found a problem, 4 a needed peer is unreachable.
    """
    ctx.obj = CliContext(
        state_dir_option=state_dir, config_option=config_path, json_output=json_output
    )


def _register() -> None:
    from . import devices, enroll, journal, run, sync, test_cmd

    cli.add_command(journal.journal)
    for module in (devices, test_cmd, sync, enroll, run):
        module.register(cli)
    for command in cli.commands.values():  # the plug-ins' ones: RootGroup.load_plugins
        add_json_option(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map errors to exit codes."""
    configure_logging()
    try:
        cli.main(args=argv, prog_name="posedge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERNAL)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PosedgeError as exc:
        click.echo(f"posedge: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        log.exception("internal error")
        click.echo("posedge: internal error (details logged above)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)
