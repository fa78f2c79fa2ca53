"""``GET /v1/devices/dump`` on the till API: the running daemon's device dump.

Same bearer token as the rest of the API (the till's). ``posedge devices dump`` asks
here while the daemon runs, so it never opens devices the daemon holds. The answer is
the dump document (docs/diagnostics.md), 200 even when a device is unreachable (that is
in the document); 500 with a problem document only when no dump could be made.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .service import DumpService

log = logging.getLogger("posedge.diagnostics")

DUMP_PATH = "/v1/devices/dump"


def add_diagnostics_routes(app: Starlette, dumps: DumpService) -> None:
    async def dump(request: Request) -> Response:
        try:
            doc = await dumps.collect("api")
        except Exception as exc:
            log.error("device dump failed: %s", type(exc).__name__)
            return JSONResponse(
                {"type": "https://posedge.dev/problems/internal", "title": "Internal error",
                 "status": 500, "detail": "the device dump failed; see the agent log"},
                status_code=500, media_type="application/problem+json",
            )  # fmt: skip
        return JSONResponse(doc)

    app.router.routes.append(Route(DUMP_PATH, dump, methods=["GET"]))
