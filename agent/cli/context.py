"""What every subcommand gets: resolved paths, lazily loaded config, output helpers.

Configuration is loaded on first use, so ``--help`` and ``--version`` work
with a broken config file, and a bad config fails before any stored data is
opened (exit 2). The state directory is checked on first use too, before any
command (or the daemon) opens the journal: one that others could write, or a
symbolic link where a key belongs, is refused (exit 2, see ``agent/statedir.py``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..config import Config, LoadedConfig, check_backoffice_url, default_state_dir, load_config
from ..statedir import check_state_dir


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
            self._loaded = load_config(self.config_option)
        return self._loaded

    @property
    def config(self) -> Config:
        return self.loaded_config.config

    @property
    def state_dir(self) -> Path:
        """The state directory, checked once (StrictModes-like) before it is first used."""
        if self._checked_state_dir is None:
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


def _json_requested(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    cli = ctx.find_object(CliContext)
    if cli is None:  # a command group run on its own
        cli = ctx.obj = CliContext(state_dir_option=None, config_option=None, json_output=True)
    cli.json_output = True


def add_json_option(command: click.Command) -> None:
    """Accept ``--json`` after the subcommand too, on ``command`` and everything below it."""
    if not any(param.name == "json" for param in command.params):
        command.params.append(
            click.Option(
                ["--json"],
                is_flag=True,
                expose_value=False,
                callback=_json_requested,
                help="Print one JSON document on stdout (same as the global --json).",
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_json_option(sub)


def backoffice_url_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """Callback of the ``--backoffice URL`` options: ``sync.url``'s rules (a usage error,
    exit 2, names the option, the value and what is allowed)."""
    if value is None:
        return None
    try:
        return check_backoffice_url(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


def get_cli(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    if obj is None:  # pragma: no cover - the root group always sets it
        raise click.UsageError("internal: no CLI context")
    return obj
