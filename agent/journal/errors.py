"""The journal's error tree.

    JournalError(PosedgeError)
    ├── JournalWriteError          append failed ⇒ the caller must not act
    │   ├── JournalDiskFull        no space (or the configured page limit)
    │   ├── JournalReadOnly        file or filesystem is read-only
    │   ├── JournalBusy            another writer holds the database
    │   └── JournalIOError         the disk reported an I/O error
    ├── JournalCorrupt             integrity, schema or chain-head check failed at open
    ├── JournalKeyError            the device key is missing, unreadable or does not match
    ├── JournalMissing             a reader found no journal (exit 2: check --state-dir)
    └── PayloadRejected            the payload is not storable (card data, size, type)

A failed append never leaves a partial event: the SQLite transaction is
rolled back and the in-memory head is not advanced.
"""

from __future__ import annotations

from ..errors import CheckFailed, ConfigError, PosedgeError


class JournalError(PosedgeError):
    """Base of every journal error."""


class JournalWriteError(JournalError):
    """An event could not be made durable; nothing was stored."""


class JournalDiskFull(JournalWriteError):
    pass


class JournalReadOnly(JournalWriteError):
    pass


class JournalBusy(JournalWriteError):
    pass


class JournalIOError(JournalWriteError):
    pass


class JournalCorrupt(JournalError, CheckFailed):
    """The database failed a check at open; it is left exactly as found."""


class JournalKeyError(JournalError, CheckFailed):
    """The device key cannot be used with this journal."""


class JournalMissing(JournalError, ConfigError):
    """A read-only open found no journal file: the state directory is wrong or new (exit 2)."""


class PayloadRejected(JournalError, ConfigError):
    """The event payload cannot be stored (card data, size, non-JSON value)."""
