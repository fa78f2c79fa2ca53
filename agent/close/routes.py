"""The close on the till API (docs/api.md): take one, show one, reprint its Z-report.

``POST /v1/close`` (body ``{"business_day"?: "YYYY-MM-DD", "force"?: bool}``, or none) →
201 ``{"close", "print"}``; ``GET /v1/close/{close}?lines=true`` → 200 ``{"close"[,
"lines"]}``; ``POST /v1/close/{close}/reprint`` → 200 ``{"close", "print"}``. ``{close}``
is a ``day.closed`` seq, a business day, or ``latest``. Refusals: 422 ``validation`` (bad,
future or earlier business day, bad body), 409 ``already-closed`` / ``close-in-progress``,
404 ``not-found`` (no such close; or an engine without a close service: the daemon sets
``engine.closes`` to its :class:`~.daemon.DaemonCloses` before the API listens).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api.problems import problem
from .closer import close_document
from .daemon import DaemonCloses
from .errors import CloseError

MAX_BODY_BYTES = 4096
MAX_CLOSE_REF_CHARS = 32


def _json(doc: Any, status: int = 200) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json")


def _refusal(exc: CloseError) -> Response:
    message = str(exc)
    return problem(
        exc.problem, message, errors=[{"field": exc.field, "message": message}], status=exc.status
    )


def _bad(field: str, message: str) -> Response:
    return problem(
        "validation", f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _no_service() -> Response:
    return problem("not-found", "this agent runs no close service (the daemon does)")


class CloseEndpoints:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def _closes(self) -> DaemonCloses | None:
        closes: DaemonCloses | None = getattr(self.engine, "closes", None)  # test fakes lack it
        return closes

    @staticmethod
    def _ref(request: Request) -> str | None:
        ref = str(request.path_params["close"])
        return None if ref == "latest" else ref[:MAX_CLOSE_REF_CHARS]

    async def close(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return problem("payload-too-large", f"(body): over {MAX_BODY_BYTES} bytes")
        doc: Any = {}
        if body.strip():
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                return problem("bad-request", "(body): not valid JSON")
        if not isinstance(doc, dict):
            return problem("bad-request", "(body): must be a JSON object")
        unknown = sorted(set(doc) - {"business_day", "force"})
        if unknown:
            return _bad(unknown[0][:64], "unknown field; allowed: business_day, force")
        day = doc.get("business_day")
        if day is not None and not isinstance(day, str):
            return _bad("business_day", "must be a date YYYY-MM-DD")
        force = doc.get("force", False)
        if not isinstance(force, bool):
            return _bad("force", "must be true or false")
        closes = self._closes()
        if closes is None:
            return _no_service()
        try:
            record, printed = await closes.close(day, trigger="api", force=force)
        except CloseError as exc:
            return _refusal(exc)
        return _json(close_document(record, printed), 201)

    async def show(self, request: Request) -> Response:
        lines_param = request.query_params.get("lines", "false")
        if lines_param not in ("true", "false"):
            return problem(
                "bad-request",
                "lines: true or false",
                errors=[{"field": "lines", "message": "true or false"}],
            )
        closes = self._closes()
        if closes is None:
            return _no_service()
        try:
            record = await closes.find(self._ref(request))
        except CloseError as exc:
            return _refusal(exc)
        lines = await closes.lines(record) if lines_param == "true" else None
        return _json(close_document(record, None, lines))

    async def reprint(self, request: Request) -> Response:
        closes = self._closes()
        if closes is None:
            return _no_service()
        try:
            record = await closes.find(self._ref(request))
        except CloseError as exc:
            return _refusal(exc)
        return _json(close_document(record, await closes.print(record, reprint=True)))


def close_routes(engine: Any, wrap: Any) -> list[Route]:
    """The routes, each wrapped by the till API's ``_endpoint`` (problems for surprises)."""
    endpoints = CloseEndpoints(engine)
    return [
        Route("/v1/close", wrap("close", endpoints.close), methods=["POST"]),
        Route("/v1/close/{close}", wrap("close_show", endpoints.show), methods=["GET"]),
        Route(
            "/v1/close/{close}/reprint",
            wrap("close_reprint", endpoints.reprint),
            methods=["POST"],
        ),
    ]
