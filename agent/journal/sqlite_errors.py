"""SQLite failures mapped to the journal's typed errors, each saying what to do."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import (
    JournalBusy,
    JournalCorrupt,
    JournalDiskFull,
    JournalError,
    JournalIOError,
    JournalReadOnly,
)

# SQLite primary result codes (sqlite3.h).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY) or not os.access(
            path.parent, os.W_OK
        )
    except OSError:
        return False


def map_write_error(exc: sqlite3.Error, path: Path) -> JournalError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    text = str(exc)
    if code == _SQLITE_FULL or "full" in text:
        return JournalDiskFull(
            f"journal {path}: disk full ({text}); free space on the state directory's "
            "filesystem — the event was not stored"
        )
    if (
        code == _SQLITE_READONLY
        or "readonly" in text
        or (code == _SQLITE_CANTOPEN and _read_only_fs(path))
    ):
        return JournalReadOnly(
            f"journal {path}: read-only ({text}); check file ownership, mode and that "
            "the filesystem is mounted read-write — the event was not stored"
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return JournalBusy(
            f"journal {path}: locked by another writer ({text}); only one posedge process "
            "may write the journal — stop the other one (is the daemon running?)"
        )
    if code == _SQLITE_CANTOPEN:
        return JournalIOError(
            f"journal {path}: cannot open the database file ({text}); check that the state "
            "directory exists and is readable by the posedge user"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return JournalCorrupt(
            f"journal {path} is damaged or not a posedge journal ({text}); it was left "
            "untouched — keep a copy and restore from the back office or a backup"
        )
    return JournalIOError(
        f"journal {path}: I/O error ({text}); check the disk and kernel log — "
        "the event was not stored"
    )


def rollback_quietly(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction after a failure, keeping the original error."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the original error is what the caller needs to see
