"""The agent layer's error tree, mapped to exit codes at the CLI boundary.

    PosedgeError                      exit 1 unless a subclass says otherwise
    ├── ConfigError                   exit 2  bad configuration or usage
    ├── CheckFailed                   exit 3  a check found a problem
    ├── PeerUnreachable               exit 4  daemon or back office unreachable
    └── JournalError                  (agent.journal.errors)

Every message says what was wrong, where, and what to do. Messages never
carry card data or secrets.
"""

from __future__ import annotations


class PosedgeError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code: int = 1


class ConfigError(PosedgeError):
    """Configuration or usage is wrong; nothing stored was touched."""

    exit_code = 2


class CheckFailed(PosedgeError):
    """A check (device, journal, doctor) found a problem."""

    exit_code = 3


class PeerUnreachable(PosedgeError):
    """A peer the command needs (daemon, back office) cannot be reached."""

    exit_code = 4
