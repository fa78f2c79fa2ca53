"""Commands imported on first use: a group lists names and one-line help without importing them.

``posedge --help`` must be quick (≤ 0.25 s; ``benchmarks/bench_cli_startup.py``), and the
command modules import pydantic, starlette, httpx, the drivers… A :class:`LazyCommand` is a
command known by its name, the ``module:attribute`` that defines it and its one-line help;
:class:`LazyGroup` shows that help in listings and imports the module only when the command
is looked up to run it (or to show its own ``--help``).

This module must stay light: it imports click and the standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    """A command by reference: ``target`` is ``"package.module:attribute"`` (or
    ``".module:attribute"`` relative to ``package``); ``short_help`` is what listings show,
    loaded or not (say what the command is for, as the first line of its help does); ``also``
    names modules that add subcommands to it when they are imported (``devices check``)."""

    target: str
    short_help: str
    also: tuple[str, ...] = ()
    package: str | None = None

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name, self.package)
        for extra in self.also:
            importlib.import_module(extra, self.package)
        command = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is {type(command).__name__}, not a click command")
        if command.short_help is None:  # listings read the same before and after loading
            command.short_help = self.short_help
        return command


class LazyGroup(click.Group):
    """A click group whose commands may be :class:`LazyCommand` references.

    Commands added the ordinary way (``add_command``) work as before. Every function in
    ``preparers`` runs on every command the first time it is handed out, lazily loaded or
    not, so options added to every command reach late ones too.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands: dict[str, LazyCommand] = {}
        self.preparers: list[Callable[[click.Command], None]] = []
        self._prepared: set[str] = set()

    def add_lazy(
        self,
        name: str,
        target: str,
        short_help: str,
        also: tuple[str, ...] = (),
        package: str | None = None,
    ) -> None:
        """Register ``name`` → ``target`` (``"module:attribute"``) without importing it."""
        self.lazy_commands[name] = LazyCommand(target, short_help, also, package)

    def known_names(self) -> set[str]:
        return set(self.commands) | set(self.lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.known_names())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None:
            spec = self.lazy_commands.get(cmd_name)
            if spec is None:
                return None
            command = spec.load()
            self.commands[cmd_name] = command
        if cmd_name not in self._prepared:
            self._prepared.add(cmd_name)
            for prepare in self.preparers:
                prepare(command)
        return command

    def load_all(self, ctx: click.Context | None = None) -> dict[str, click.Command]:
        """Import every command (tests and documentation generators walk the whole tree)."""
        context = ctx or click.Context(self)
        found = {name: self.get_command(context, name) for name in self.list_commands(context)}
        return {name: command for name, command in found.items() if command is not None}

    def short_help_of(self, ctx: click.Context, name: str, limit: int) -> str | None:
        """A listing's help for ``name``: the lazy reference's (or a loaded command's own),
        shortened the same way whether the command is loaded or not."""
        command = self.commands.get(name)
        spec = self.lazy_commands.get(name)
        if command is not None:
            if command.hidden:
                return None
            text = command.short_help
            if text is None:
                return command.get_short_help_str(limit)
        elif spec is not None:
            text = spec.short_help
        else:
            return None
        return click.Command(name, help=text).get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, without importing a command to read its help."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            help_text = self.short_help_of(ctx, name, limit)
            if help_text is not None:
                rows.append((name, help_text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
