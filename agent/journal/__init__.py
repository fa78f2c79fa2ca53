"""The tamper-evident transaction journal (SQLite, WAL, HMAC chain)."""

from .errors import (
    JournalBusy,
    JournalCorrupt,
    JournalDiskFull,
    JournalError,
    JournalIOError,
    JournalKeyError,
    JournalMissing,
    JournalReadOnly,
    JournalWriteError,
    PayloadRejected,
)
from .records import Checkpoint, Event, Head
from .schema import SCHEMA_VERSION
from .store import JOURNAL_FILE_NAME, Journal
from .verify import Anchor, Problem, VerifyResult, verify_journal

__all__ = [
    "JOURNAL_FILE_NAME",
    "SCHEMA_VERSION",
    "Anchor",
    "Checkpoint",
    "Event",
    "Head",
    "Journal",
    "JournalBusy",
    "JournalCorrupt",
    "JournalDiskFull",
    "JournalError",
    "JournalIOError",
    "JournalKeyError",
    "JournalMissing",
    "JournalReadOnly",
    "JournalWriteError",
    "PayloadRejected",
    "Problem",
    "VerifyResult",
    "verify_journal",
]
