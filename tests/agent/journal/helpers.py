"""Shared helpers for journal tests: filled journals, the sqlite3 CLI, real mounts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.journal import Journal

REPO = Path(__file__).resolve().parents[3]
POSEDGE_EXE = Path(sys.executable).parent / "posedge"


def fill(journal: Journal, count: int, txn_every: int = 3) -> None:
    for number in range(count):
        txn = f"t{number // txn_every}" if txn_every else None
        journal.append(
            "test.event", {"n": number, "amount": 100 + number, "currency": "EUR"}, txn=txn
        )


def sqlite_cli(db: Path, sql: str) -> None:
    """Tamper with the database the way an attacker would: the sqlite3 CLI."""
    exe = shutil.which("sqlite3")
    if exe is None:
        pytest.skip("the sqlite3 command-line tool is not installed (CI installs it)")
    subprocess.run([exe, str(db), sql], check=True, capture_output=True, text=True)


DROP_TRIGGERS = "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"


def posedge(
    *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real console command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("POSEDGE_CONFIG", None)
    cmd = [str(POSEDGE_EXE), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, check=check, timeout=60
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, size-limited filesystem (needs root and mount rights; skips otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
