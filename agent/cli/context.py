"""What every subcommand gets: resolved paths, lazily loaded config, output helpers.

Configuration is loaded on first use, so ``--help`` and ``--version`` work
with a broken config file, and a bad config fails before any stored data is
opened (exit 2). The state directory is checked on first use too, before any
command (or the daemon) opens the journal: one that others could write, or a
symbolic link where a key belongs, is refused (exit 2, see ``agent/statedir.py``).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..statedir import check_state_dir

if TYPE_CHECKING:  # agent.config imports pydantic: loaded on first use (posedge --help is quick)
    from ..config import Config, LoadedConfig


@dataclass
class CliContext:
    state_dir_option: Path | None
    config_option: Path | None
    json_output: bool
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _checked_state_dir: Path | None = field(default=None, repr=False)

    @property
    def loaded_config(self) -> LoadedConfig:
        if self._loaded is None:
            from ..config import load_config

            self._loaded = load_config(self.config_option)
        return self._loaded

    @property
    def config(self) -> Config:
        return self.loaded_config.config

    @property
    def state_dir(self) -> Path:
        """The state directory, checked once (StrictModes-like) before it is first used."""
        if self._checked_state_dir is None:
            from ..config import default_state_dir

            path = self.state_dir_option if self.state_dir_option else default_state_dir()
            check_state_dir(path)
            self._checked_state_dir = path
        return self._checked_state_dir

    def emit(self, document: Any, human: str | None = None) -> None:
        """Print exactly one JSON document with --json, else the human text."""
        if self.json_output:
            json.dump(document, sys.stdout, indent=2, sort_keys=True, default=str)
            sys.stdout.write("\n")
        elif human is not None:
            click.echo(human)


pass_cli = click.make_pass_decorator(CliContext)


def json_requested(ctx: click.Context) -> bool:
    """``--json`` was given (before the command or after it)."""
    cli = ctx.find_object(CliContext)
    return cli is not None and cli.json_output


def emit_to(ctx: click.Context, doc: Any, human: str) -> None:
    """One JSON document with ``--json``, else the human text (for commands that take
    ``click.Context`` rather than :class:`CliContext`)."""
    cli = ctx.find_object(CliContext)
    if cli is not None and cli.json_output:
        cli.emit(doc)
    else:
        click.echo(human)


def _context_of(ctx: click.Context) -> CliContext:
    cli = ctx.find_object(CliContext)
    if cli is None:  # a command group run on its own
        cli = ctx.obj = CliContext(state_dir_option=None, config_option=None, json_output=False)
    return cli


def _json_given(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _context_of(ctx).json_output = True


def _state_dir_given(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        _context_of(ctx).state_dir_option = value


def _config_given(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        cli = _context_of(ctx)
        cli.config_option = value
        cli._loaded = None  # loaded lazily, so never before an option is parsed; be sure


def _global_options() -> list[click.Option]:
    """The root's global options, as they are accepted after a subcommand: same meaning,
    same checks (the root's help explains the defaults)."""
    return [
        click.Option(
            ["--json"],
            is_flag=True,
            expose_value=False,
            callback=_json_given,
            help="Print one JSON document on stdout (same as the global --json).",
        ),
        click.Option(
            ["--state-dir"],
            type=click.Path(path_type=Path, file_okay=False),
            expose_value=False,
            callback=_state_dir_given,
            help="State directory (same as the global --state-dir).",
        ),
        click.Option(
            ["--config"],
            type=click.Path(path_type=Path, dir_okay=False, readable=False),
            expose_value=False,
            callback=_config_given,
            help="TOML configuration file (same as the global --config).",
        ),
    ]


def add_global_options(command: click.Command) -> None:
    """Accept ``--json``, ``--state-dir`` and ``--config`` after the subcommand too, on
    ``command`` and everything below it (lazily loaded subcommands included), and check a
    ``--config`` named explicitly before the command runs, even one that needs no setting:
    a file named explicitly must exist and be valid (exit 2). A command with an option of
    its own by one of those names keeps its own (that name then goes before the subcommand)."""
    from .lazy import LazyGroup

    taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
    names = {param.name for param in command.params}
    for option in _global_options():
        if option.name not in names and not taken.intersection(option.opts):
            command.params.append(option)
    _check_named_config_first(command)
    if isinstance(command, LazyGroup) and add_global_options not in command.preparers:
        command.preparers.append(add_global_options)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub)


def _check_named_config_first(command: click.Command) -> None:
    """Wrap the command's callback: load a ``--config`` named explicitly before it runs. A
    group's callback checks only when it is the command run (no subcommand: so that
    ``posedge --config BAD journal verify --help`` still shows help)."""
    callback = command.callback
    if callback is None or getattr(callback, "_checks_named_config", False):
        return
    is_group = isinstance(command, click.Group)

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        cli = ctx.find_object(CliContext)
        named = cli is not None and cli.config_option is not None
        if named and cli is not None and (not is_group or ctx.invoked_subcommand is None):
            cli.loaded_config  # noqa: B018 - loads and validates: ConfigError, exit 2
        return callback(*args, **kwargs)

    checked._checks_named_config = True  # type: ignore[attr-defined]
    command.callback = checked


def backoffice_url_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """Callback of the ``--backoffice URL`` options: ``sync.url``'s rules (a usage error,
    exit 2, names the option, the value and what is allowed)."""
    if value is None:
        return None
    from ..config import check_backoffice_url

    try:
        return check_backoffice_url(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


def get_cli(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    if obj is None:  # pragma: no cover - the root group always sets it
        raise click.UsageError("internal: no CLI context")
    return obj
