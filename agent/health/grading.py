"""Turning a measured value into ok / warn / fail against a ``[health]`` threshold pair."""

from __future__ import annotations

from typing import Any

from .model import CheckResult, Status


def grade(
    name: str,
    value: float,
    warn: float,
    fail: float,
    *,
    low_is_bad: bool = False,
    summary: str,
    fix: str,
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """``fail`` past ``fail``, ``warn`` past ``warn``, else ``ok`` (past: above, or below
    when ``low_is_bad``)."""

    def past(line: float) -> bool:
        return value <= line if low_is_bad else value >= line

    status = Status.FAIL if past(fail) else Status.WARN if past(warn) else Status.OK
    return CheckResult(
        name,
        status,
        summary,
        fix=fix if status is not Status.OK else None,
        value=value,
        details=details or {},
    )


def human_s(seconds: float) -> str:
    """``90061`` → ``1d 1h``: two units at most, for summaries."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count = int(seconds // size)
            seconds -= count * size
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def human_bytes(size: float) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        scale = {"GiB": 1024**3, "MiB": 1024**2, "KiB": 1024}[unit]
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"
