"""How a failed command reports itself: a line on stderr, and with ``--json`` one JSON
document on stdout too (``{"error": {"message", "exit_code", "kind"}}``), so a script that
asked for JSON can always parse what it gets. Never puts card data or secrets in a message
(the messages are the errors' own, which never carry them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import click

from ..errors import PosedgeError

KIND_BY_EXIT_CODE = {1: "internal", 2: "config", 3: "check", 4: "unreachable", 130: "interrupted"}
"""``kind`` of a posedge error by its exit code; click's usage errors are ``usage``."""


def json_requested(args: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (before any ``--``), wherever it was given:
    errors may happen before click has parsed it."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


@dataclass(frozen=True)
class ErrorReport:
    message: str
    exit_code: int
    kind: str

    @classmethod
    def from_posedge(cls, exc: PosedgeError) -> ErrorReport:
        return cls(str(exc), exc.exit_code, KIND_BY_EXIT_CODE.get(exc.exit_code, "error"))

    @classmethod
    def from_click(cls, exc: click.ClickException) -> ErrorReport:
        usage = isinstance(exc, click.UsageError) or exc.exit_code == 2
        kind = "usage" if usage else KIND_BY_EXIT_CODE.get(exc.exit_code, "error")
        return cls(exc.format_message(), exc.exit_code, kind)

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {"error": {"message": self.message, "exit_code": self.exit_code, "kind": self.kind}}

    def show(self, as_json: bool, click_exc: click.ClickException | None = None) -> None:
        """stderr gets the human text (click's own usage display for its errors); with
        ``as_json`` stdout gets the document."""
        if click_exc is not None:
            click_exc.show()
        else:
            click.echo(f"posedge: error: {self.message}", err=True)
        if as_json:
            json.dump(self.as_dict(), sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
