"""The till's local API (docs/api.md) as a Starlette app over a :class:`SalesEngine`.

Routes: ``POST /v1/sales``, ``GET /v1/sales/{id}?wait=S``, ``POST
/v1/sales/{id}/cancel|void|reprint``, ``GET /v1/status``, ``GET /v1/health``
and ``GET /openapi.json``. Every refusal is an RFC 9457 problem document
(:mod:`.problems`) and is decided *before* the engine is called, so a bad
request never reaches the engine and nothing is journaled for it.

This module must never log or echo request bodies, tokens or card data:
problems name the field and the rule, never the value; the only log line
(an unexpected engine exception) carries the route and the exception type.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from posedge.agent.carddata import find_card_data
from posedge.agent.sales.model import (
    NotAccepting,
    SaleRequest,
    SalesEngine,
    SalesError,
    SaleView,
)

from .models import SaleCreate
from .openapi import OPENAPI_BYTES
from .problems import Refused, problem, refused_response

log = logging.getLogger("posedge.api")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_WAIT_S = 60.0
MAX_SALE_ID_CHARS = 128
NOT_ACCEPTING_RETRY_AFTER_S = 5
PUBLIC_PATHS = frozenset({"/v1/health", "/openapi.json"})
"""Answered without a token: liveness and the (secret-free) API description."""

_IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,128}")
_MAX_FIELD_NAME_CHARS = 64
_WWW_AUTHENTICATE = 'Bearer realm="posedge"'

Handler = Callable[[Request], Awaitable[Response]]


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class BearerAuth:
    """ASGI middleware: every path except :data:`PUBLIC_PATHS` needs the till's token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, presented = header.partition(" ")
        detail = None
        if scheme.lower() != "bearer" or not presented.strip():
            detail = "Authorization: send `Authorization: Bearer <token>` (the api-token file)"
        elif not hmac.compare_digest(presented.strip().encode("latin-1"), self._token):
            detail = "Authorization: the bearer token is wrong; read it again from the token file"
        if detail is None:
            await self.app(scope, receive, send)
            return
        response = problem(
            "unauthorized",
            detail,
            errors=[{"field": "Authorization", "message": "missing or wrong bearer token"}],
            headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
        )
        await response(scope, receive, send)


class TillApi:
    """Request handlers bound to one engine; holds no sale state of its own."""

    def __init__(
        self,
        engine: SalesEngine,
        currencies: Sequence[str],
        max_body_bytes: int,
    ) -> None:
        self.engine = engine
        self.currencies = tuple(currencies)
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self._drain_waiters: set[asyncio.Future[None]] = set()
        self.status_blocks: dict[str, Callable[[], Any]] = {}
        """More blocks of ``GET /v1/status`` by name (:func:`add_status_block`)."""

    def begin_drain(self) -> None:
        """Stopping: end every long-poll now (each answers with the sale as it stands)."""
        self.draining = True
        for waiter in list(self._drain_waiters):
            if not waiter.done():
                waiter.set_result(None)

    # -- request parts ---------------------------------------------------------------

    @staticmethod
    def _idempotency_key(request: Request) -> str:
        key = request.headers.get("idempotency-key")
        field = [{"field": "Idempotency-Key", "message": "1-128 printable ASCII characters"}]
        if not key:
            raise Refused(
                "missing-idempotency-key",
                "Idempotency-Key: the header is required (a new key for each new sale, "
                "the same key when retrying the same sale)",
                field,
            )
        if not _IDEMPOTENCY_KEY_RE.fullmatch(key):
            raise Refused(
                "invalid-idempotency-key",
                "Idempotency-Key: must be 1-128 printable ASCII characters",
                field,
            )
        if find_card_data(key):
            raise Refused(
                "card-data",
                "Idempotency-Key: contains a card number; never send card data to the API",
                [{"field": "Idempotency-Key", "message": "contains a card number"}],
            )
        return key

    def _check_content(self, request: Request) -> None:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise Refused(
                "unsupported-media-type",
                "Content-Type: send application/json",
                [{"field": "Content-Type", "message": "must be application/json"}],
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise Refused(
                "unsupported-media-type",
                "Content-Encoding: compressed bodies are not accepted",
                [{"field": "Content-Encoding", "message": "must be identity or absent"}],
            )
        length = request.headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise Refused(
                    "bad-request",
                    "Content-Length: not a whole number",
                    [{"field": "Content-Length", "message": "must be a whole number"}],
                )
            if int(length) > self.max_body_bytes:
                raise self._too_large()

    def _too_large(self) -> Refused:
        return Refused(
            "payload-too-large",
            f"(body): over {self.max_body_bytes} bytes",
            [{"field": "(body)", "message": f"at most {self.max_body_bytes} bytes"}],
        )

    async def _read_body(self, request: Request) -> bytes:
        """The body, refused as soon as it grows past the limit (never buffered unbounded)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise Refused(
                "bad-request",
                "(body): not valid JSON (UTF-8, no NaN or Infinity)",
                [{"field": "(body)", "message": "not valid JSON"}],
            ) from None
        if not isinstance(doc, dict):
            raise Refused(
                "bad-request",
                "(body): must be a JSON object",
                [{"field": "(body)", "message": "must be a JSON object"}],
            )
        try:
            findings = find_card_data(doc)
        except RecursionError:
            raise Refused(
                "bad-request",
                "(body): nested too deeply",
                [{"field": "(body)", "message": "nested too deeply"}],
            ) from None
        if findings:
            errors = [{"field": _field_name(f.path), "message": f.reason} for f in findings]
            names = ", ".join(e["field"] for e in errors)
            raise Refused(
                "card-data",
                f"{names}: card data refused; send only the amount, currency and your "
                "own reference — the card is read by the terminal",
                errors,
            )
        return doc

    def _sale_create(self, doc: dict[str, Any]) -> SaleCreate:
        try:
            sale = SaleCreate.model_validate(doc)
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(str(p) for p in err["loc"])[:_MAX_FIELD_NAME_CHARS]
                    or "(body)",
                    "message": err["msg"],
                }
                for err in exc.errors(include_input=False, include_url=False)
            ]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise Refused(
                "validation", f"{errors[0]['field']}: {errors[0]['message']}{more}", errors
            ) from None
        if sale.currency not in self.currencies:
            allowed = ", ".join(self.currencies)
            message = f"not one of the configured currencies ({allowed})"
            raise Refused(
                "validation",
                f"currency: {message}",
                [{"field": "currency", "message": message}],
            )
        return sale

    @staticmethod
    def _sale_id(request: Request) -> str:
        sale_id = str(request.path_params["sale_id"])
        if len(sale_id) > MAX_SALE_ID_CHARS:
            raise _not_found()
        return sale_id

    @staticmethod
    def _wait_s(request: Request) -> float:
        raw = request.query_params.get("wait")
        if raw is None or raw == "":
            return 0.0
        try:
            wait_s = float(raw)
        except ValueError:
            wait_s = math.nan
        if not (math.isfinite(wait_s) and 0.0 <= wait_s <= MAX_WAIT_S):
            message = f"seconds from 0 to {MAX_WAIT_S:g}"
            raise Refused(
                "bad-request", f"wait: {message}", [{"field": "wait", "message": message}]
            )
        return wait_s

    # -- endpoints ---------------------------------------------------------------------

    async def create_sale(self, request: Request) -> Response:
        key = self._idempotency_key(request)
        self._check_content(request)
        doc = self._json_object(await self._read_body(request))
        sale = self._sale_create(doc)
        del doc
        view = await self.engine.create_sale(
            key,
            SaleRequest(
                amount=sale.amount,
                currency=sale.currency,
                reference=sale.reference,
                online=sale.online,
            ),
        )
        return _view(view, 202, {"Location": f"/v1/sales/{quote(view.id, safe='')}"})

    async def get_sale(self, request: Request) -> Response:
        sale_id = self._sale_id(request)
        wait_s = self._wait_s(request)
        view = self.engine.get_sale(sale_id)
        if view is None:
            raise _not_found()
        if wait_s > 0 and not view.final and not self.draining:
            view = await self._wait(sale_id, wait_s) or view
        return _view(view)

    async def _wait(self, sale_id: str, wait_s: float) -> SaleView | None:
        drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.add(drained)
        waiter = asyncio.ensure_future(self.engine.wait_sale(sale_id, wait_s))
        try:
            pending: set[asyncio.Future[Any]] = {waiter, drained}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._drain_waiters.discard(drained)
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        return self.engine.get_sale(sale_id)

    async def cancel(self, request: Request) -> Response:
        return _view(await self.engine.cancel(self._sale_id(request)))

    async def void(self, request: Request) -> Response:
        return _view(await self.engine.void(self._sale_id(request)))

    async def reprint(self, request: Request) -> Response:
        return _view(await self.engine.reprint(self._sale_id(request)))

    async def status(self, request: Request) -> Response:
        doc = self.engine.status()
        for name, provide in self.status_blocks.items():
            doc[name] = provide()
        return _json(doc)

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return Response(OPENAPI_BYTES, media_type="application/json")


def _field_name(path: str) -> str:
    name = path.removeprefix("$").removeprefix(".")
    return (name or "(body)")[:_MAX_FIELD_NAME_CHARS]


def _not_found() -> Refused:
    return Refused("not-found", "id: no sale with this id", [{"field": "id", "message": "unknown"}])


def _view(view: SaleView, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return _json(view.as_dict(), status, headers)


def _endpoint(route: str, method: Handler) -> Handler:
    """Map refusals, engine errors and anything unexpected to problem documents."""

    async def endpoint(request: Request) -> Response:
        try:
            return await method(request)
        except Refused as refused:
            return refused_response(refused, None)
        except SalesError as exc:
            headers = None
            if isinstance(exc, NotAccepting):
                retry_after = int(getattr(exc, "retry_after_s", NOT_ACCEPTING_RETRY_AFTER_S))
                headers = {"Retry-After": str(max(retry_after, 1))}
            return problem(exc.problem, exc.detail, headers=headers, status=exc.status)
        except Exception as exc:
            log.error("internal error on %s: %s", route, type(exc).__name__)
            return problem("internal", "internal error; see the agent log")

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return problem(
            "method-not-allowed",
            f"{request.method}: not allowed on this path",
            headers=exc.headers,
        )
    if exc.status_code == 404:
        return problem("not-found", "no such endpoint; see /openapi.json")
    return problem("bad-request", str(exc.detail), status=exc.status_code)


def create_app(
    engine: SalesEngine,
    *,
    token: str,
    currencies: Sequence[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The till API over ``engine``; ``token`` is the bearer token the till presents."""
    if not token or not token.isascii() or token != token.strip():
        raise ValueError("the API token must be non-empty printable ASCII without spaces")
    if isinstance(currencies, str) or not currencies:
        raise ValueError("currencies must be a non-empty list of ISO 4217 codes")
    from posedge.agent.close.routes import close_routes  # here: it imports .problems (a cycle)

    api = TillApi(engine, currencies, max_body_bytes)
    routes = [
        Route("/v1/sales", _endpoint("create_sale", api.create_sale), methods=["POST"]),
        Route("/v1/sales/{sale_id}", _endpoint("get_sale", api.get_sale), methods=["GET"]),
        Route("/v1/sales/{sale_id}/cancel", _endpoint("cancel", api.cancel), methods=["POST"]),
        Route("/v1/sales/{sale_id}/void", _endpoint("void", api.void), methods=["POST"]),
        Route("/v1/sales/{sale_id}/reprint", _endpoint("reprint", api.reprint), methods=["POST"]),
        *close_routes(engine, _endpoint),  # POST /v1/close, GET|reprint /v1/close/{close}
        Route("/v1/status", _endpoint("status", api.status), methods=["GET"]),
        Route("/v1/health", _endpoint("health", api.health), methods=["GET"]),
        Route("/openapi.json", _endpoint("openapi", api.openapi), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, token=token)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.till_api = api
    return app


def add_status_block(app: Starlette, name: str, provide: Callable[[], Any]) -> None:
    """Answer ``provide()`` as block ``name`` of ``GET /v1/status`` (cheap, no I/O: it runs
    in the event loop), e.g. the daemon's own ``daemon`` block (pid, watchdog freshness)."""
    api = app.state.till_api
    assert isinstance(api, TillApi)
    api.status_blocks[name] = provide


def begin_drain(app: Starlette) -> None:
    """Make open long-polls answer now; :class:`ApiServer` calls it when stopping."""
    api = getattr(app.state, "till_api", None)
    if isinstance(api, TillApi):
        api.begin_drain()
