"""The reference back office as a Starlette ASGI app (docs/sync-protocol.md).

Routes: events upload and head, heartbeat, authorizations, reversals,
``/openapi.json``, ``/healthz`` and — only with ``admin`` or in open mode —
``/admin/faults`` and ``/admin/policy``. Every error is an RFC 9457 problem
document. Request bodies may be gzip-compressed.

This module must never log or store request bodies, card data or tokens:
validation errors name the field and the rule, never the value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from posedge.protocol.idempotency import authorization_fingerprint, fingerprint
from posedge.protocol.models import (
    TERMINAL_PATTERN,
    AuthorizationRequest,
    EventBatch,
    Heartbeat,
    ReversalRequest,
)

from .faults import FaultMiddleware, FaultPlan, FaultRule
from .openapi import OPENAPI_DOCUMENT
from .policy import AuthorizationPolicy
from .problems import problem
from .store import BackofficeStore
from .tokens import token_owner

log = logging.getLogger("posedge.backoffice")

DEFAULT_HEARTBEAT_INTERVAL_S = 60
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BATCH_EVENTS = 50_000

_TERMINAL_RE = re.compile(TERMINAL_PATTERN)


@dataclass
class BackofficeConfig:
    """Everything the app needs besides the store. ``tokens=None`` is open mode."""

    tokens: dict[str, str] | None = None
    admin: bool = False
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_INTERVAL_S
    policy: AuthorizationPolicy = field(default_factory=AuthorizationPolicy)
    faults: FaultPlan = field(default_factory=FaultPlan)
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_events: int = MAX_BATCH_EVENTS

    @property
    def open_mode(self) -> bool:
        return self.tokens is None

    @property
    def admin_enabled(self) -> bool:
        return self.admin or self.open_mode


class _Refused(Exception):
    """Carries a ready problem response out of a helper."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _json(doc: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field path and rule of each error — never the offending value."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


class BackofficeApp:
    """Request handlers bound to one store and configuration."""

    def __init__(self, store: BackofficeStore, config: BackofficeConfig) -> None:
        self.store = store
        self.config = config

    # -- helpers ---------------------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        raw = await request.body()
        limit = self.config.max_body_bytes
        if len(raw) > limit:
            raise _Refused(
                problem("payload-too-large", f"body over {limit} bytes", request.url.path)
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding != "gzip":
            raise _Refused(
                problem(
                    "unsupported-media-type",
                    f"Content-Encoding {encoding!r} is not supported; send gzip or identity",
                    request.url.path,
                )
            )
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise _Refused(
                problem("bad-request", "the gzip body is corrupt", request.url.path)
            ) from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise _Refused(
                problem("payload-too-large", f"body over {limit} bytes inflated", request.url.path)
            )
        if not inflater.eof:
            raise _Refused(problem("bad-request", "the gzip body is truncated", request.url.path))
        return body

    def _authenticate(self, request: Request, terminal: str) -> None:
        tokens = self.config.tokens
        if tokens is None:
            return
        path = request.url.path
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _Refused(
                problem(
                    "unauthorized",
                    "missing bearer token: send `Authorization: Bearer <token>` "
                    "with the terminal's token",
                    path,
                    headers={"WWW-Authenticate": 'Bearer realm="posedge"'},
                )
            )
        owner = token_owner(tokens, presented.strip())
        if owner is None:
            raise _Refused(
                problem(
                    "unauthorized",
                    "unknown token: check the terminal's token file against the back office",
                    path,
                    headers={"WWW-Authenticate": 'Bearer realm="posedge", error="invalid_token"'},
                )
            )
        if owner != terminal:
            raise _Refused(
                problem("forbidden", f"the token is not the token of terminal {terminal}", path)
            )

    def _path_terminal(self, request: Request) -> str:
        terminal = str(request.path_params["terminal"])
        if not _TERMINAL_RE.match(terminal):
            raise _Refused(
                problem(
                    "bad-request",
                    "the terminal id in the path must be 1-64 of A-Z a-z 0-9 . _ - "
                    "starting with a letter or digit",
                    request.url.path,
                )
            )
        return terminal

    @staticmethod
    def _invalid(request: Request, exc: ValidationError) -> _Refused:
        errors = _field_errors(exc)
        if any(e["message"].startswith("Invalid JSON") for e in errors):
            return _Refused(problem("bad-request", "the body is not valid JSON", request.url.path))
        first = errors[0]
        return _Refused(
            problem(
                "validation",
                f"{first['field']}: {first['message']}",
                request.url.path,
                errors=errors,
            )
        )

    def _parse(self, request: Request, model: type[BaseModel], body: bytes | dict[str, Any]) -> Any:
        try:
            if isinstance(body, dict):
                return model.model_validate(body)
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise self._invalid(request, exc) from None

    @staticmethod
    def _terminal_matches(request: Request, path_terminal: str, body_terminal: str) -> None:
        if body_terminal != path_terminal:
            raise _Refused(
                problem(
                    "validation",
                    f"terminal: the body names {body_terminal} but the path names {path_terminal}",
                    request.url.path,
                    errors=[{"field": "terminal", "message": "must equal the path's terminal"}],
                )
            )

    def _idempotency_key(self, request: Request) -> str:
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            raise _Refused(
                problem(
                    "missing-idempotency-key",
                    "send an Idempotency-Key header: the attempt for authorizations "
                    "({txn}:online or {txn}:forward), {attempt}:reversal for reversals",
                    request.url.path,
                )
            )
        if len(key) > 255:
            raise _Refused(
                problem("bad-request", "Idempotency-Key is over 255 characters", request.url.path)
            )
        return key

    @staticmethod
    def _key_matches(request: Request, field: str, body_value: str, key: str) -> None:
        """The body's id field (``attempt`` or ``reversal``) must equal the Idempotency-Key."""
        if body_value != key:
            raise _Refused(
                problem(
                    "validation",
                    f"{field}: the body's {field} is not the Idempotency-Key header",
                    request.url.path,
                    errors=[{"field": field, "message": "must equal the Idempotency-Key header"}],
                )
            )

    async def _json_object(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        try:
            doc = json.loads(body)
        except ValueError:
            raise _Refused(
                problem("bad-request", "the body is not valid JSON", request.url.path)
            ) from None
        if not isinstance(doc, dict):
            raise _Refused(
                problem("bad-request", "the body must be a JSON object", request.url.path)
            )
        return doc

    # -- protocol endpoints -------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        self._authenticate(request, terminal)
        body = await self._body(request)
        batch: EventBatch = self._parse(request, EventBatch, body)
        self._terminal_matches(request, terminal, batch.terminal)
        if len(batch.events) > self.config.max_batch_events:
            return problem(
                "payload-too-large",
                f"{len(batch.events)} events; at most {self.config.max_batch_events} per batch",
                request.url.path,
            )
        result = self.store.ingest(batch)
        if result.status == "ok":
            return _json(
                {
                    "acked_seq": result.acked_seq,
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "head_hash": result.head_hash,
                }
            )
        return problem(
            result.status,
            result.detail,
            request.url.path,
            expected_seq=result.expected_seq,
            acked_seq=result.acked_seq,
        )

    async def head(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        self._authenticate(request, terminal)
        acked, head_hash = self.store.head(terminal)
        return _json({"acked_seq": acked, "head_hash": head_hash})

    async def heartbeat(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        self._authenticate(request, terminal)
        beat: Heartbeat = self._parse(request, Heartbeat, await self._body(request))
        self._terminal_matches(request, terminal, beat.terminal)
        interval = self.config.heartbeat_interval_s
        self.store.record_heartbeat(terminal, beat.model_dump(mode="json"), interval)
        now = datetime.fromtimestamp(self.store.clock(), UTC)
        return _json(
            {"server_time": now.isoformat(timespec="microseconds"), "interval_s": interval}
        )

    async def authorizations(self, request: Request) -> Response:
        key = self._idempotency_key(request)
        doc = await self._json_object(request)
        self._authenticate(request, str(doc.get("terminal", "")))
        req: AuthorizationRequest = self._parse(request, AuthorizationRequest, doc)
        del doc  # the raw body held the card
        self._key_matches(request, "attempt", req.attempt, key)
        record = req.model_dump(mode="json", exclude={"card"})
        claim = self.store.claim_authorization(
            req.terminal, key, authorization_fingerprint(record), record
        )
        if claim.kind == "mismatch":
            return problem(
                "idempotency-mismatch",
                f"Idempotency-Key {key!r} was first used with a different body; "
                "use a new key for a new transaction",
                request.url.path,
            )
        if claim.kind == "in-progress":
            return problem(
                "in-progress",
                f"the authorization with Idempotency-Key {key!r} is still being decided; retry",
                request.url.path,
                headers={"Retry-After": "1"},
                retry_after_s=1,
            )
        if claim.kind in ("replay", "refused"):
            return _json(claim.response)
        try:
            if self.config.policy.delay_s:
                await asyncio.sleep(self.config.policy.delay_s)
            decision = self.config.policy.decide(req)
            # A reversal recorded meanwhile turns the decision into a decline.
            response = self.store.decide_authorization(req.terminal, key, decision)
        except BaseException:
            self.store.release_authorization(req.terminal, key)
            raise
        return _json(response)

    async def reversals(self, request: Request) -> Response:
        key = self._idempotency_key(request)
        doc = await self._json_object(request)
        self._authenticate(request, str(doc.get("terminal", "")))
        req: ReversalRequest = self._parse(request, ReversalRequest, doc)
        self._key_matches(request, "reversal", req.reversal, key)
        claim = self.store.record_reversal(
            req.terminal, key, req.txn, req.attempt, fingerprint(req.model_dump(mode="json"))
        )
        if claim.kind == "mismatch":
            return problem(
                "idempotency-mismatch",
                f"Idempotency-Key {key!r} was first used with a different reversal body",
                request.url.path,
            )
        return _json(claim.response)

    # -- service endpoints ------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI_DOCUMENT)

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok", "open_mode": self.config.open_mode})

    def _admin_guard(self, request: Request) -> None:
        if not self.config.admin_enabled:
            raise _Refused(
                problem(
                    "not-found",
                    "the admin API is off; start the back office with --admin",
                    request.url.path,
                )
            )

    async def admin_faults(self, request: Request) -> Response:
        self._admin_guard(request)
        plan = self.config.faults
        if request.method == "DELETE":
            plan.clear()
        elif request.method == "POST":
            try:
                doc = json.loads(await self._body(request) or b"{}")
            except ValueError:
                return problem("bad-request", "the body is not valid JSON", request.url.path)
            rules = (
                doc.get("rules", [{k: v for k, v in doc.items() if k != "replace"}])
                if isinstance(doc, dict)
                else doc
            )
            if not isinstance(rules, list):
                return problem("bad-request", 'send a rule, or {"rules": [...]}', request.url.path)
            if isinstance(doc, dict) and doc.get("replace"):
                plan.clear()
            try:
                parsed = [FaultRule.model_validate(r) for r in rules]
            except ValidationError as exc:
                raise self._invalid(request, exc) from None
            for rule in parsed:
                plan.add(rule)
        return _json({"faults": plan.describe()})

    async def admin_policy(self, request: Request) -> Response:
        self._admin_guard(request)
        if request.method == "PUT":
            policy: AuthorizationPolicy = self._parse(
                request, AuthorizationPolicy, await self._body(request)
            )
            self.config.policy = policy
        return _json(self.config.policy.model_dump(exclude={"seed"}))


def _handler(method: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await method(request)
        except _Refused as refused:
            return refused.response
        return response

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "not-found", 405: "method-not-allowed"}
    kind = kinds.get(exc.status_code, "bad-request")
    return problem(kind, f"{request.method} {request.url.path}: {exc.detail}", request.url.path)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem("internal", "internal error; see the back office log", request.url.path)


def create_app(store: BackofficeStore, config: BackofficeConfig | None = None) -> ASGIApp:
    """The ASGI app: fault middleware outermost, then the Starlette router."""
    config = config or BackofficeConfig()
    bo = BackofficeApp(store, config)
    routes = [
        Route("/v1/terminals/{terminal}/events", _handler(bo.events), methods=["POST"]),
        Route("/v1/terminals/{terminal}/events/head", _handler(bo.head), methods=["GET"]),
        Route("/v1/terminals/{terminal}/heartbeat", _handler(bo.heartbeat), methods=["POST"]),
        Route("/v1/authorizations", _handler(bo.authorizations), methods=["POST"]),
        Route("/v1/reversals", _handler(bo.reversals), methods=["POST"]),
        Route("/openapi.json", _handler(bo.openapi), methods=["GET"]),
        Route("/healthz", _handler(bo.healthz), methods=["GET"]),
        Route("/admin/faults", _handler(bo.admin_faults), methods=["GET", "POST", "DELETE"]),
        Route("/admin/policy", _handler(bo.admin_policy), methods=["GET", "PUT"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.backoffice = bo
    return FaultMiddleware(app, config.faults)
