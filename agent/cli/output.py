"""Human output helpers: tables (rich, colour only on a TTY), sizes, ages."""

from __future__ import annotations

import io
import shutil
import sys
import textwrap
from collections.abc import Sequence

DEFAULT_WIDTH = 120
"""Columns of a table when the terminal's width is unknown (output piped, no $COLUMNS)."""


def output_width() -> int:
    """The terminal's width ($COLUMNS first, as ``shutil`` reads it), else DEFAULT_WIDTH."""
    return shutil.get_terminal_size(fallback=(DEFAULT_WIDTH, 24)).columns


FOLD_WIDTH = 8
"""A wrapped column is never narrower than its longest word, up to this; longer words fold."""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    title: str | None = None,
    *,
    keep_whole: Sequence[int] = (),
    width: int | None = None,
) -> str:
    """Render a table to text that fits ``width`` (default: the terminal's); plain when
    stdout is not a terminal. Columns whose index is in ``keep_whole`` (identifiers) are never
    wrapped or cut; the others wrap at spaces (longer words fold) to make room. When even
    that cannot fit, each row becomes a block of ``header: value`` lines."""
    from rich.console import Console  # imported on use: `posedge … --help` stays quick
    from rich.table import Table

    width = width or output_width()
    minimums = [_min_width(i, headers, rows, whole=i in keep_whole) for i in range(len(headers))]
    if keep_whole and sum(minimums) + 2 * (len(headers) - 1) > width:
        return _blocks(headers, rows, title, keep_whole, width)
    tbl = Table(title=title, show_header=any(headers), box=None, pad_edge=False)
    for index, header in enumerate(headers):
        whole = index in keep_whole
        tbl.add_column(header, no_wrap=whole, min_width=minimums[index], overflow="fold")
    for row in rows:
        tbl.add_row(*row)
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=sys.stdout.isatty(),
        no_color=not sys.stdout.isatty(),
        width=width,
    )
    console.print(tbl)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def _min_width(
    index: int, headers: Sequence[str], rows: Sequence[Sequence[str]], *, whole: bool
) -> int:
    cells = [headers[index], *(row[index] for row in rows)]
    if whole:
        return max(len(cell) for cell in cells)
    return min(max(len(word) for cell in cells for word in [*cell.split(), ""]), FOLD_WIDTH)


def _blocks(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    title: str | None,
    keep_whole: Sequence[int],
    width: int,
) -> str:
    """The narrow layout: per row, its identifiers on one line, then ``header: value``."""
    label = max(len(header) for header in headers)
    lines = textwrap.wrap(title, width, break_on_hyphens=False) if title else []
    for row in rows:
        lines.append(" ".join(row[i] for i in keep_whole))
        lines += [
            f"  {header + ':':<{label + 1}} {row[i]}"
            for i, header in enumerate(headers)
            if i not in keep_whole
        ]
    return "\n".join(lines)


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
