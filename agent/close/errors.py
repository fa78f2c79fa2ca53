"""The close's refusals (exit codes per DESIGN §3, statuses for the till API).

    CloseError
    ├── CloseRefused   ConfigError exit 2, 422  bad, future or already passed business day
    ├── CloseNotFound  ConfigError exit 2, 404  reprint/show of a close that does not exist
    ├── AlreadyClosed  CheckFailed exit 3, 409  the day has a close (``--force`` closes again)
    └── CloseBusy      CheckFailed exit 3, 409  another close is running

Every refusal is decided before anything is journaled: nothing is stored half.
"""

from __future__ import annotations

from ..errors import CheckFailed, ConfigError, PosedgeError


class CloseError(PosedgeError):
    status = 500
    problem = "internal"
    field = "(body)"


class CloseRefused(CloseError, ConfigError):
    status = 422
    problem = "validation"

    def __init__(self, message: str, *, field: str = "business_day") -> None:
        super().__init__(message)
        self.field = field


class CloseNotFound(CloseError, ConfigError):
    status = 404
    problem = "not-found"
    field = "close"


class AlreadyClosed(CloseError, CheckFailed):
    status = 409
    problem = "already-closed"
    field = "business_day"


class CloseBusy(CloseError, CheckFailed):
    status = 409
    problem = "close-in-progress"
