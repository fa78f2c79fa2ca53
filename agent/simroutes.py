"""Simulator controls on the till API, only under ``posedge run --simulate``.

``POST /v1/simulator/{device}`` with ``{"fault": NAME, "params": {...}}`` applies a
fault to the simulated ``printer`` or ``reader`` (e.g. ``{"fault": "card", "params":
{"pan": "5555555555554444"}}`` presents a chosen test card; ``unreadable`` a bad
read; ``paper_out``; ``clear``). ``POST /v1/simulator/backoffice`` with a fault
rule (``{"kind": "down", "duration_s": 30}``) or ``{"clear": true}`` faults the
embedded back office; ``{"power": "off"}`` / ``{"power": "on"}`` stops and
restarts it (connections refused: a real outage); with an external back office
(``run --simulate --backoffice URL``) that route is ``409``. Same bearer token as the
rest of the API. Never mounted in production: the route does not exist
without ``--simulate``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .service import Agent


def add_simulator_routes(app: Starlette, agent: Agent) -> None:
    async def control(request: Request) -> Response:
        world = agent.world
        device = request.path_params["device"]
        if world is None:
            return _problem(404, "the simulator is not running")
        try:
            body: Any = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _problem(400, "body must be a JSON object")
        if not isinstance(body, dict):
            return _problem(400, "body must be a JSON object")
        if device == "backoffice":
            backoffice = world.backoffice
            if backoffice is None:
                return _problem(
                    409,
                    f"the back office is external ({agent.backoffice_url}), not simulated here: "
                    "inject its faults there",
                )
            if body.get("power") in ("off", "on"):
                # A real outage: nothing listens, connections are refused.
                action = backoffice.stop if body["power"] == "off" else backoffice.start
                await asyncio.to_thread(action)
                return JSONResponse({"power": body["power"]})
            if body.get("clear"):
                backoffice.faults.clear()
                return JSONResponse({"faults": []})
            try:
                backoffice.faults.add(body)
            except ValueError as exc:
                return _problem(422, f"bad fault rule: {exc}")
            return JSONResponse({"faults": backoffice.faults.describe()})
        target = {"printer": world.printer, "reader": world.reader}.get(device)
        if target is None:
            return _problem(404, f"no simulated device {device!r}; use printer, reader, backoffice")
        name = body.get("fault")
        params = body.get("params") or {}
        if not isinstance(name, str) or not isinstance(params, dict):
            return _problem(400, 'give {"fault": NAME, "params": {...}}')
        try:
            target.apply_fault(name, **params)
        except (ValueError, TypeError) as exc:
            return _problem(422, f"fault {name!r} rejected: {exc}")
        return JSONResponse({"device": device, "fault": name, "applied": True})

    app.router.routes.append(Route("/v1/simulator/{device}", control, methods=["POST"]))


def _problem(status: int, detail: str) -> Response:
    return JSONResponse(
        {"type": "https://posedge.dev/problems/simulator", "title": "Simulator control",
         "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )  # fmt: skip
