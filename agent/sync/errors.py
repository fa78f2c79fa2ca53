"""The sync layer's error tree; httpx exceptions are mapped here and go no further.

SyncError(PosedgeError)
├── BackofficeUnreachable(PeerUnreachable)   timeouts, connection errors (exit 4)
├── BackofficeBusy                           429/503/5xx: transient, retry after a wait
└── BackofficeRejected                       400/401/403/404/409 conflict/422: alert, keep data
"""

from __future__ import annotations

from ..errors import PeerUnreachable, PosedgeError


class SyncError(PosedgeError):
    """Base of sync failures. Nothing is ever dropped because of one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackofficeUnreachable(SyncError, PeerUnreachable):
    """No answer: connection refused or reset, DNS, TLS, timeout.

    ``delivered`` is False when the request certainly never reached the back
    office (the connection was never made), None when it may have: a timeout or
    reset after sending makes an authorization's outcome unknown.
    """

    exit_code = 4

    def __init__(
        self, message: str, *, delivered: bool | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.delivered = delivered


class BackofficeBusy(SyncError):
    """The back office answered 429, 503 or another 5xx: try again later."""

    exit_code = 4

    def __init__(
        self, message: str, *, status: int = 503, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status


class BackofficeRejected(SyncError):
    """A permanent rejection (4xx): raise an alert, keep the data, retry slowly."""

    exit_code = 3

    def __init__(self, message: str, *, status: int, problem_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem_type = problem_type
