"""Fault injection for the reference back office: errors, latency, 429/503, resets, drops.

A :class:`FaultPlan` holds rules (from CLI flags or ``POST /admin/faults``);
:class:`FaultMiddleware` wraps the back office's ASGI app (it knows nothing of
faults), applies them per request and serves ``/admin/faults`` itself:

- ``down`` — for a time window every matching request is refused (connection
  reset, or 503 with ``Retry-After``);
- ``latency`` — added delay before the request is handled (rules stack); the
  body is read first, so the request is handled even when the client has
  given up meanwhile (a late arrival);
- ``error`` (500), ``status_429`` / ``status_503`` (with ``Retry-After`` in
  seconds or HTTP-date form), ``reset`` (the socket is closed with an RST and no
  response) — the request is *not* processed;
- ``drop_reply`` — the request is processed and committed, then the
  connection is reset instead of sending the reply (a lost acknowledgement).

Each rule applies to one endpoint (``events``, ``head``, ``heartbeat``,
``authorizations``, ``reversals``) or ``*``, either to the next ``count``
matching requests or to a ``rate`` fraction of them. ``/healthz``,
``/openapi.json`` and ``/admin/*`` are never faulted. This module must never
look at request bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posedge.backoffice.app import field_errors, parse_json_body
from posedge.backoffice.problems import problem

ADMIN_PATH = "/admin/faults"
MAX_ADMIN_BODY = 1024 * 1024

FaultKind = Literal["error", "latency", "status_429", "status_503", "reset", "drop_reply", "down"]
Endpoint = Literal["*", "events", "head", "heartbeat", "authorizations", "reversals"]

_ENDPOINTS = (
    (re.compile(r"^/v1/terminals/[^/]+/events/head$"), "head"),
    (re.compile(r"^/v1/terminals/[^/]+/events$"), "events"),
    (re.compile(r"^/v1/terminals/[^/]+/heartbeat$"), "heartbeat"),
    (re.compile(r"^/v1/authorizations$"), "authorizations"),
    (re.compile(r"^/v1/reversals$"), "reversals"),
)


def endpoint_of(path: str) -> str | None:
    """The fault endpoint name of a request path, or None for paths never faulted."""
    for pattern, name in _ENDPOINTS:
        if pattern.match(path):
            return name
    return None


class FaultRule(BaseModel):
    """One fault. Without ``count`` or ``rate`` it applies to every matching request."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    endpoint: Endpoint = "*"
    count: int | None = Field(default=None, ge=1, description="Apply to the next N requests.")
    rate: float | None = Field(default=None, ge=0, le=1, description="Fraction of requests.")
    latency_s: float = Field(default=0.0, ge=0, le=600)
    retry_after_s: float = Field(default=1.0, ge=0, le=86400)
    retry_after_form: Literal["seconds", "date"] = "seconds"
    duration_s: float | None = Field(default=None, gt=0, le=86400, description="For down.")
    down_mode: Literal["reset", "503"] = "reset"

    @model_validator(mode="after")
    def _consistent(self) -> FaultRule:
        if self.count is not None and self.rate is not None:
            raise ValueError("give either count (next N requests) or rate (a fraction), not both")
        if self.kind == "down" and self.duration_s is None:
            raise ValueError("a down fault needs duration_s (the window in seconds)")
        if self.kind == "latency" and self.latency_s <= 0:
            raise ValueError("a latency fault needs latency_s > 0")
        return self


@dataclass
class _Active:
    rule: FaultRule
    remaining: int | None
    until: float | None  # monotonic deadline of a down window


@dataclass(frozen=True)
class FaultDecision:
    latency_s: float = 0.0
    action: Literal["none", "error", "status_429", "status_503", "reset", "drop_reply"] = "none"
    retry_after_s: float = 0.0
    retry_after_form: str = "seconds"


class FaultPlan:
    """The active faults; thread-safe, deterministic for a given seed."""

    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._active: list[_Active] = []

    def add(self, rule: FaultRule | dict[str, Any]) -> FaultRule:
        rule = rule if isinstance(rule, FaultRule) else FaultRule.model_validate(rule)
        until = self._clock() + rule.duration_s if rule.kind == "down" and rule.duration_s else None
        with self._lock:
            self._active.append(_Active(rule, rule.count, until))
        return rule

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            self._expire(now)
            out = []
            for item in self._active:
                doc = item.rule.model_dump(exclude_none=True)
                if item.remaining is not None:
                    doc["remaining"] = item.remaining
                if item.until is not None:
                    doc["remaining_s"] = round(max(0.0, item.until - now), 3)
                out.append(doc)
            return out

    def _expire(self, now: float) -> None:
        self._active = [
            a
            for a in self._active
            if (a.remaining is None or a.remaining > 0) and (a.until is None or a.until > now)
        ]

    def decide(self, endpoint: str) -> FaultDecision:
        """What to do with one request to ``endpoint``; consumes counted rules that fire."""
        now = self._clock()
        latency = 0.0
        with self._lock:
            self._expire(now)
            for item in self._active:
                rule = item.rule
                if rule.endpoint not in ("*", endpoint):
                    continue
                if item.until is not None:
                    if rule.down_mode == "reset":
                        return FaultDecision(latency, "reset")
                    return FaultDecision(latency, "status_503", item.until - now, "seconds")
                if not self._fires(item):
                    continue
                if rule.kind == "latency":
                    latency += rule.latency_s
                    continue
                assert rule.kind != "down"
                return FaultDecision(latency, rule.kind, rule.retry_after_s, rule.retry_after_form)
        return FaultDecision(latency)

    def _fires(self, item: _Active) -> bool:
        if item.remaining is not None:
            item.remaining -= 1
            return True
        if item.rule.rate is not None:
            return self._rng.random() < item.rule.rate
        return True


def retry_after_value(seconds: float, form: str, now: float | None = None) -> str:
    """``Retry-After`` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3)."""
    if form == "date":
        return email.utils.formatdate((time.time() if now is None else now) + seconds, usegmt=True)
    return str(math.ceil(seconds))


async def reset_connection(send: Send) -> None:
    """Close the client's connection with a TCP RST and no response at all.

    uvicorn (httptools and h11 alike) hands the app the bound ``send`` of its
    request cycle, which holds the asyncio transport; SO_LINGER 0 turns the close
    into a reset.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError(
            "cannot reach the connection to reset it: run the back office under uvicorn "
            "(httptools or h11) with FaultMiddleware as the outermost ASGI layer"
        )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # The client may be gone already (its socket closed): then there is nothing to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let connection_lost run, so uvicorn knows the client is gone and answers nothing.
    for _ in range(3):
        await asyncio.sleep(0)


class FaultMiddleware:
    """Outermost ASGI layer applying a :class:`FaultPlan` (must wrap everything else)."""

    def __init__(self, app: ASGIApp, plan: FaultPlan, admin: bool = True) -> None:
        self.app = app
        self.plan = plan
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == ADMIN_PATH:
            response = await self._admin(Request(scope, receive))
            await response(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        decision = self.plan.decide(endpoint)
        if decision.latency_s:
            # The request has arrived and waits: it is handled after the delay even if the
            # client gave up meanwhile (a late arrival, as a slow network or host makes it).
            receive = await _buffered(receive)
            await asyncio.sleep(decision.latency_s)
        action = decision.action
        if action == "none":
            await self.app(scope, receive, send)
        elif action == "reset":
            await reset_connection(send)
        elif action == "drop_reply":
            await self.app(scope, receive, _swallow)
            await reset_connection(send)
        elif action == "error":
            response = problem("internal", "injected fault: error", scope["path"])
            await response(scope, receive, send)
        else:
            kind = "rate-limited" if action == "status_429" else "unavailable"
            wait_s = max(0.0, decision.retry_after_s)
            response = problem(
                kind,
                f"injected fault: {action[-3:]}; retry after {math.ceil(wait_s)} s",
                scope["path"],
                headers={"Retry-After": retry_after_value(wait_s, decision.retry_after_form)},
                retry_after_s=math.ceil(wait_s),
            )
            await response(scope, receive, send)

    async def _admin(self, request: Request) -> Response:
        """``GET|POST|DELETE /admin/faults``: list, add (a rule or ``{rules, replace}``), clear."""
        path = request.url.path
        if not self.admin:
            return problem("not-found", "the admin API is off; start with --admin", path)
        if request.method not in ("GET", "POST", "DELETE"):
            return problem("method-not-allowed", f"{request.method} {path}", path)
        if request.method == "DELETE":
            self.plan.clear()
        elif request.method == "POST":
            body = await request.body()
            if len(body) > MAX_ADMIN_BODY:
                return problem("payload-too-large", f"at most {MAX_ADMIN_BODY} bytes", path)
            try:
                doc = parse_json_body(body or b"{}")
            except ValueError as exc:
                return problem("bad-request", str(exc), path)
            rules = (
                doc.get("rules", [{k: v for k, v in doc.items() if k != "replace"}])
                if isinstance(doc, dict)
                else doc
            )
            if not isinstance(rules, list):
                return problem("bad-request", 'send a rule, or {"rules": [...]}', path)
            try:
                parsed = [FaultRule.model_validate(r) for r in rules]
            except ValidationError as exc:
                errors = field_errors(exc)
                detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                return problem("validation", f"invalid fault rule: {detail}", path, errors=errors)
            if isinstance(doc, dict) and doc.get("replace"):
                self.plan.clear()
            for rule in parsed:
                self.plan.add(rule)
        return Response(
            json.dumps({"faults": self.plan.describe()}, separators=(",", ":")).encode(),
            media_type="application/json",
        )


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now; a ``receive`` that replays it, then waits."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay


async def _swallow(message: Message) -> None:
    """A ``send`` that discards the reply (commit, then drop)."""
