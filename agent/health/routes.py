"""``GET /v1/health/checks`` on the till API: run the daemon's health checks now.

``posedge doctor`` asks here while the daemon runs, so its answers are fresh (a paper roll
changed a moment ago shows as loaded) and it never opens the devices the daemon holds.
Same bearer token as the rest of the API. ``?name=printer.paper&name=…`` runs only those
(devices are polled first, under the printer lock, never in the middle of a receipt);
without ``name`` every check runs.

Answers: 200 ``{"checks": [result…], "alerts": [alert…]}`` (results as
:meth:`CheckResult.as_dict`, alerts as :meth:`HealthMonitor.alerts`); 400 ``bad-request``
for an unknown name (naming the known ones); 503 ``not-accepting`` while the health monitor
is not running (starting). Never card data: results and alerts carry none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api.problems import problem
from .daemonlink import CHECKS_PATH

log = logging.getLogger("posedge.health")


def add_health_routes(app: Starlette, agent: Any) -> None:
    """Serve :data:`CHECKS_PATH` from ``agent.health`` (the daemon's :class:`HealthMonitor`)."""

    async def checks(request: Request) -> Response:
        monitor = getattr(agent, "health", None)
        if monitor is None:
            return problem("not-accepting", "the health monitor is not running yet")
        names = request.query_params.getlist("name") or None
        try:
            results = await asyncio.to_thread(monitor.run_now, names)
        except KeyError as exc:
            message = str(exc.args[0]) if exc.args else "unknown check"
            return problem(
                "bad-request", f"name: {message}", errors=[{"field": "name", "message": message}]
            )
        except Exception as exc:
            log.error("health checks on request failed: %s", type(exc).__name__)
            return problem("internal", "the health checks failed; see the agent log")
        return JSONResponse(
            {"checks": [result.as_dict() for result in results], "alerts": monitor.alerts()}
        )

    app.router.routes.append(Route(CHECKS_PATH, checks, methods=["GET"]))


__all__ = ["CHECKS_PATH", "add_health_routes"]
