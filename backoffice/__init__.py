"""The back office: the sync protocol's server side (fault injection: posedge.simulator).

Public surface::

    BackofficeServer(db, host, port=0, config)  # uvicorn in a thread; .url, .restart()
    BackofficeConfig(tokens, admin, heartbeat_interval_s, policy)
    BackofficeStore(path)                       # ingest, head, heartbeats, auths, integrity,
                                                # captured(terminal), reversals(terminal)
    AuthorizationPolicy                         # approve / decline by rule / delay
    create_app(store, config)                   # the ASGI app
    report_document(store)                      # what `posedge backoffice report` prints

The contract it implements is docs/sync-protocol.md. Nothing in this package
ever stores or logs card data or tokens.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import BackofficeConfig, create_app
    from .policy import AuthorizationPolicy
    from .report import report_document, terminal_report
    from .server import BackofficeServer, serve_forever
    from .store import BackofficeStore, IngestResult
    from .tokens import BackofficeConfigError, load_tokens

_HOME = {
    "BackofficeConfig": ".app",
    "create_app": ".app",
    "AuthorizationPolicy": ".policy",
    "report_document": ".report",
    "terminal_report": ".report",
    "BackofficeServer": ".server",
    "serve_forever": ".server",
    "BackofficeStore": ".store",
    "IngestResult": ".store",
    "BackofficeConfigError": ".tokens",
    "load_tokens": ".tokens",
}
"""The public names' modules, imported on first use (PEP 562): importing this package, as
``posedge --help`` does to list the ``backoffice`` command (``.commands``), stays cheap."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthorizationPolicy",
    "BackofficeConfig",
    "BackofficeConfigError",
    "BackofficeServer",
    "BackofficeStore",
    "IngestResult",
    "create_app",
    "load_tokens",
    "report_document",
    "serve_forever",
    "terminal_report",
]
