"""The till's local API: HTTP on a Unix socket (and optionally loopback TCP) over the sales engine.

``create_app`` builds the Starlette app (:mod:`.app`), ``ApiServer`` serves it
with uvicorn inside the daemon's event loop (:mod:`.server`), and
``load_or_create_token`` provides the bearer token (:mod:`.bearer`). The
contract is docs/api.md and docs/openapi-api.json. Nothing in this package
may log tokens, request bodies or card data.
"""

from __future__ import annotations

from .app import create_app
from .bearer import load_or_create_token
from .openapi import OPENAPI_DOCUMENT
from .server import ApiPaths, ApiServer, check_listen_address, resolve_api_paths

__all__ = [
    "OPENAPI_DOCUMENT",
    "ApiPaths",
    "ApiServer",
    "check_listen_address",
    "create_app",
    "load_or_create_token",
    "resolve_api_paths",
]
