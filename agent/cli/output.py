"""Human output helpers: tables (rich, colour only on a TTY), sizes, ages."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> str:
    """Render a table to text; plain when stdout is not a terminal."""
    from rich.console import Console  # imported on use: `posedge … --help` stays quick
    from rich.table import Table

    tbl = Table(*headers, title=title, show_header=any(headers), box=None, pad_edge=False)
    for row in rows:
        tbl.add_row(*row)
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=sys.stdout.isatty(),
        no_color=not sys.stdout.isatty(),
        width=120,
    )
    console.print(tbl)
    return buf.getvalue().rstrip("\n")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
