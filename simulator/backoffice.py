"""The back office with fault injection, for tests, demos and chaos runs.

:class:`BackofficeServer` is the product's server (:mod:`posedge.backoffice.server`)
with :class:`~posedge.simulator.faults.FaultMiddleware` wrapped around its app::

    with BackofficeServer("bo.sqlite3") as bo:       # port 0: any free port
        bo.faults.add({"kind": "reset", "count": 1})
        bo.restart()                                  # same port, database and faults

The product names are re-exported so a test imports one module. The back
office itself never imports this package.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from posedge.backoffice import (
    AuthorizationPolicy,
    BackofficeConfig,
    BackofficeConfigError,
    BackofficeStore,
    IngestResult,
    create_app,
    load_tokens,
    report_document,
    terminal_report,
)
from posedge.backoffice.db import DEFAULT_POOL_SIZE
from posedge.backoffice.server import BackofficeServer as _ProductServer
from posedge.backoffice.server import serve_forever

from .faults import FaultMiddleware, FaultPlan, FaultRule

__all__ = [
    "AuthorizationPolicy",
    "BackofficeConfig",
    "BackofficeConfigError",
    "BackofficeServer",
    "BackofficeStore",
    "FaultPlan",
    "FaultRule",
    "IngestResult",
    "create_app",
    "create_faulty_app",
    "load_tokens",
    "report_document",
    "serve_faulty",
    "terminal_report",
]


def create_faulty_app(
    store: BackofficeStore, config: BackofficeConfig | None = None, faults: FaultPlan | None = None
) -> ASGIApp:
    """The back office app inside the fault middleware (``/admin/faults`` as admin allows)."""
    config = config or BackofficeConfig()
    return FaultMiddleware(create_app(store, config), faults or FaultPlan(), config.admin_enabled)


class BackofficeServer(_ProductServer):
    """The back office in a background thread, with a :class:`FaultPlan` in front of it."""

    def __init__(
        self,
        db: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        config: BackofficeConfig | None = None,
        log_level: str = "warning",
        store: BackofficeStore | None = None,
        faults: FaultPlan | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        config = config or BackofficeConfig()
        self.faults = faults or FaultPlan()
        super().__init__(
            db,
            host,
            port,
            config,
            log_level,
            store,
            wrap=lambda app: FaultMiddleware(app, self.faults, config.admin_enabled),
            pool_size=pool_size,
        )


def serve_faulty(
    db: Path | str,
    host: str,
    port: int,
    config: BackofficeConfig,
    faults: FaultPlan,
    log_level: str = "info",
    pool_size: int = DEFAULT_POOL_SIZE,
) -> None:
    """``posedge simulate backoffice``: the product server in the foreground, faults in front."""
    serve_forever(
        db,
        host,
        port,
        config,
        log_level=log_level,
        wrap=lambda app: FaultMiddleware(app, faults, config.admin_enabled),
        pool_size=pool_size,
    )
