"""The back office as a Starlette ASGI app (docs/sync-protocol.md).

Routes: events upload and head, heartbeat, authorizations, reversals,
enrolment and token rotation, ``/openapi.json``, ``/healthz`` and — only with
``admin`` or in open mode — ``/admin/policy``; the staff dashboard is mounted at
``/dashboard/`` (:mod:`.dashboard`, its own logins and headers). (Fault injection is not here:
``posedge.simulator.faults`` wraps this app.) Every error is an RFC 9457
problem document. Request bodies may be gzip-compressed.

Authentication (docs/sync-protocol.md): a bearer token from the tokens file, or
a terminal's registry token (:mod:`.registry`, issued at enrolment); without a
tokens file, unknown terminals are accepted without one (open mode). A terminal
in the registry is always held to it, tokens file or open mode: once enrolled
it must present its registry token (its tokens-file entry no longer counts) and
sign every events batch with its device key (401 signature-required, 403
signature-invalid); a revoked terminal is refused everywhere (403
terminal-revoked). Tokens-file and open-mode terminals send unsigned batches.

Hostile clients: every route authenticates before it reads a body (enrolment,
whose code is in its body, reads at most ``MAX_SMALL_BODY_BYTES``); the body
limit holds while the body streams in, on the raw and on the inflated size
(never more than the limit plus one chunk in memory); a refusal before the
whole body was read closes the connection. JSON nested deeper than
``MAX_JSON_DEPTH`` is a 400, integers outside the schema a 422, card data in
an event or a heartbeat a 422, and so is a NUL character in a text the
database keeps as sent (event ``ts``/``type``/``txn``; ``txn``, ``attempt``,
``brand`` of authorizations and reversals: PostgreSQL text cannot hold one, so
neither backend takes one); nothing of a refused request is stored.

State: everything a request leaves behind is in the database (:mod:`.store`),
so any number of processes on one PostgreSQL database answer alike; there,
store calls run in worker threads so the event loop keeps serving while a
transaction waits. (What stays per process: the configuration, including a
policy changed through ``/admin/policy``, which changes only the process that
receives it.)

This module must never log or store request bodies, card data or tokens:
validation errors name the field and the rule, never the value.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import zlib
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from posedge.agent.carddata import Finding, find_card_data
from posedge.protocol.idempotency import authorization_fingerprint, fingerprint
from posedge.protocol.models import (
    TERMINAL_PATTERN,
    AuthorizationRequest,
    EnrolmentRequest,
    EnrolmentResponse,
    EventBatch,
    Heartbeat,
    ReversalRequest,
    TokenRotationRequest,
    TokenRotationResponse,
)
from posedge.protocol.signing import (
    KeyFormatError,
    load_public_key,
    rotation_message,
    verify_batch,
    verify_message,
)

from .closes.reconciler import DAY_CLOSED, reconcile_terminal, resend_from
from .db import Transaction
from .openapi import OPENAPI_DOCUMENT
from .policy import AuthorizationPolicy
from .problems import problem
from .registry import TerminalRecord, TerminalRegistry, token_hash
from .store import CLAIM_LEASE_S, BackofficeStore, ClaimLost, IngestResult
from .tokens import token_owner

log = logging.getLogger("posedge.backoffice")

DEFAULT_HEARTBEAT_INTERVAL_S = 60
# Raw and inflated. The agent's batches are 2 MiB by default and it halves a batch on 413;
# a limit well under the 32 MiB a hostile upload may cost the server keeps memory bounded.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH_EVENTS = 50_000
# Containers in a request body, the outermost object counting 1. An event payload starts at
# level 4 (batch > events > event > payload), so it may nest 28 levels of its own.
MAX_JSON_DEPTH = 32
_PAYLOAD_LEVEL = 4
# Inflate at most this much per step, yielding to the event loop in between.
INFLATE_STEP = 1024 * 1024
TERMINAL_HEADER = "x-posedge-terminal"
# PostgreSQL connections kept for calls other than events uploads (see _stored).
QUICK_LANE_CONNECTIONS = 2
# Enrolment and rotation bodies are tiny; the first of them is read before any token.
MAX_SMALL_BODY_BYTES = 4096
_BEARER_CHALLENGE = 'Bearer realm="posedge"'
_INVALID_TOKEN = 'Bearer realm="posedge", error="invalid_token"'

_TERMINAL_RE = re.compile(TERMINAL_PATTERN)

_T = TypeVar("_T")


@dataclass
class BackofficeConfig:
    """Everything the app needs besides the store. ``tokens=None`` is open mode."""

    tokens: dict[str, str] | None = None
    admin: bool = False
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_INTERVAL_S
    #: How often the server evaluates alerts (backoffice/alerting; 0: never).
    alert_interval_s: float = 0.0
    #: Store calendars (store id -> silence.StoreCalendar) for the alerts: opening hours
    #: of lane_not_selling, outside_hours flags. Empty: every store always open.
    calendars: dict[str, Any] = field(default_factory=dict)
    #: The file they came from (``--calendars``), read again on SIGHUP.
    calendars_file: Path | None = None
    policy: AuthorizationPolicy = field(default_factory=AuthorizationPolicy)
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


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field path and rule of each error — never the offending value."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


class BackofficeApp:
    """Request handlers bound to one store and configuration."""

    def __init__(self, store: BackofficeStore, config: BackofficeConfig) -> None:
        self.store = store
        self._lanes: tuple[anyio.CapacityLimiter, anyio.CapacityLimiter] | None = None
        self.config = config
        self.registry = TerminalRegistry(store)

    # -- helpers ---------------------------------------------------------------------------

    def _refuse_length(self, request: Request, limit: int) -> None:
        """413 from the headers alone: a Content-Length over the limit is never read."""
        length = request.headers.get("content-length")
        if length is None:
            return
        length = length.strip()
        if not (length.isascii() and length.isdigit()):
            raise _Refused(
                problem("bad-request", "Content-Length is not a number", request.url.path)
            )
        if int(length) > limit:
            raise _Refused(
                problem(
                    "payload-too-large",
                    f"body of {int(length)} bytes; at most {limit} bytes",
                    request.url.path,
                )
            )

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, read chunk by chunk and inflated step by step.

        Stops at the first byte past the limit, raw or inflated: it never holds more
        than the limit plus one chunk. Call only after the request is authenticated.
        """
        path = request.url.path
        limit = self.config.max_body_bytes if limit is None else limit
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            raise _Refused(
                problem(
                    "unsupported-media-type",
                    f"Content-Encoding {encoding!r} is not supported; send gzip or identity",
                    path,
                )
            )
        self._refuse_length(request, limit)
        inflater = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
        parts: list[bytes] = []
        raw_size = size = 0
        try:
            async with aclosing(request.stream()) as stream:
                async for chunk in stream:
                    raw_size += len(chunk)
                    if raw_size > limit:
                        raise _Refused(
                            problem("payload-too-large", f"body over {limit} bytes", path)
                        )
                    if inflater is None:
                        parts.append(chunk)
                        continue
                    data = chunk
                    while data:
                        if inflater.eof:
                            raise _Refused(
                                problem("bad-request", "data after the end of the gzip body", path)
                            )
                        try:
                            out = inflater.decompress(data, min(INFLATE_STEP, limit + 1 - size))
                        except zlib.error:
                            raise _Refused(
                                problem("bad-request", "the gzip body is corrupt", path)
                            ) from None
                        size += len(out)
                        if size > limit:
                            raise _Refused(
                                problem(
                                    "payload-too-large", f"body over {limit} bytes inflated", path
                                )
                            )
                        parts.append(out)
                        data = inflater.unconsumed_tail or inflater.unused_data
                        if data:
                            await asyncio.sleep(0)  # a long inflate shares the loop
        except ClientDisconnect:
            raise _Refused(problem("bad-request", "the client went away", path)) from None
        request.state.body_read = True
        if inflater is not None and not inflater.eof:
            raise _Refused(problem("bad-request", "the gzip body is truncated", path))
        return b"".join(parts)

    async def _token_owner(self, request: Request) -> str | None:
        """Authenticate from the headers alone: the terminal the bearer token belongs to.

        The tokens file is asked first, then the registry (a revoked terminal's token is
        a 403). None when anonymous: open mode without a known token. 401 without a
        known token otherwise; 403 when ``X-Posedge-Terminal`` names another terminal
        than the token's. Never reads the body.
        """
        tokens = self.config.tokens
        path = request.url.path
        presented = _bearer(request)
        if presented is None:
            if tokens is None:
                return None  # open mode: anonymous (registered terminals are checked later)
            raise _Refused(
                problem(
                    "unauthorized",
                    "missing bearer token: send `Authorization: Bearer <token>` "
                    "with the terminal's token",
                    path,
                    headers={"WWW-Authenticate": _BEARER_CHALLENGE},
                )
            )
        owner = token_owner(tokens, presented) if tokens is not None else None
        if owner is None:
            record = await self._stored(self.registry.by_token, presented)
            if record is not None:
                if record.revoked:
                    raise _revoked(record.terminal, path)
                owner = record.terminal
                request.state.registry_record = record
                if record.previous_token_hash is not None:  # the rotated token arrived
                    await self._stored(self.registry.forget_previous_token, owner)
            elif tokens is not None:
                raise _Refused(
                    problem(
                        "unauthorized",
                        "unknown token: check the terminal's token file against the back office",
                        path,
                        headers={"WWW-Authenticate": _INVALID_TOKEN},
                    )
                )
            else:
                return None  # open mode ignores a token it does not know
        claimed = request.headers.get(TERMINAL_HEADER)
        if claimed is not None and claimed.strip() != owner:
            raise _Refused(
                problem("forbidden", "X-Posedge-Terminal is not the token's terminal", path)
            )
        return owner

    async def _authenticate(self, request: Request, terminal: str) -> TerminalRecord | None:
        """The request's token must be the token of ``terminal`` (in open mode: only if the
        terminal is in the registry). Returns the terminal's registry record, if any."""
        owner = await self._owner_of(request, terminal)
        return await self._registered(request, terminal, owner)

    async def _owner_of(self, request: Request, terminal: str) -> str | None:
        """:meth:`_token_owner`, which must be ``terminal`` when known (403 otherwise). The
        registry's rules (:meth:`_registered_now`) are still to be applied."""
        owner = await self._token_owner(request)
        if owner is not None and owner != terminal:
            raise _Refused(
                problem(
                    "forbidden",
                    f"the token is not the token of terminal {terminal}",
                    request.url.path,
                )
            )
        return owner

    async def _registered(
        self, request: Request, terminal: str, owner: str | None
    ) -> TerminalRecord | None:
        """The registry's rules for ``terminal`` acting through a request authenticated as
        ``owner`` (None: anonymous, open mode): see :meth:`_registry_rules`."""
        record: TerminalRecord | None = getattr(request.state, "registry_record", None)
        if record is not None and record.terminal == terminal:
            return self._registry_rules(request, terminal, owner, record, True)
        return await self._stored(self._registered_now, request, terminal, owner)

    def _registered_now(
        self, request: Request, terminal: str, owner: str | None, db: Transaction | None = None
    ) -> TerminalRecord | None:
        """:meth:`_registered` in the calling thread: looks the terminal up (in ``db`` when
        given) unless the request's token already found its record. A worker thread's
        call: the lookup and the request's own database work take one hop."""
        record: TerminalRecord | None = getattr(request.state, "registry_record", None)
        by_registry_token = record is not None and record.terminal == terminal
        if not by_registry_token:
            record = self.registry.get(terminal, db)
        return self._registry_rules(request, terminal, owner, record, by_registry_token)

    @staticmethod
    def _registry_rules(
        request: Request,
        terminal: str,
        owner: str | None,
        record: TerminalRecord | None,
        by_registry_token: bool,
    ) -> TerminalRecord | None:
        """A revoked terminal is refused (403); an enrolled one must have presented its
        registry token (401). Returns the terminal's registry record, if any."""
        if record is None:
            return None
        if record.revoked:
            raise _revoked(terminal, request.url.path)
        if record.enrolled and not by_registry_token:
            how = (
                "its tokens-file token no longer counts: remove its line from the tokens file"
                if owner is not None
                else "send that token"
            )
            raise _Refused(
                problem(
                    "unauthorized",
                    f"terminal {terminal} is enrolled and authenticates with the token it "
                    f"received at enrolment; {how}",
                    request.url.path,
                    headers={"WWW-Authenticate": _INVALID_TOKEN},
                )
            )
        return record

    def _check_signature(
        self, request: Request, record: TerminalRecord | None, batch: EventBatch
    ) -> None:
        """An enrolled terminal's batch must carry its device key's signature over
        (terminal, first_seq, last_seq, hash of the last event)."""
        if record is None or not record.enrolled:
            return
        path = request.url.path
        if batch.signature is None:
            raise _Refused(
                problem(
                    "signature-required",
                    f"terminal {batch.terminal} is enrolled: every events batch must carry "
                    "`signature`, its device key's signature over (terminal, first_seq, "
                    "last_seq, hash of the last event); nothing was stored",
                    path,
                )
            )
        if not verify_batch(
            self.registry.public_key(record),
            batch.signature,
            batch.terminal,
            batch.first_seq,
            batch.last_seq,
            batch.events[-1].hash,
        ):
            raise _Refused(
                problem(
                    "signature-invalid",
                    f"the batch signature is not terminal {batch.terminal}'s device key's "
                    f"signature of seqs {batch.first_seq}-{batch.last_seq} ending in this hash; "
                    "nothing was stored",
                    path,
                )
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
        errors = field_errors(exc)
        bad_json = [e["message"] for e in errors if e["message"].startswith("Invalid JSON")]
        if any("recursion limit" in message for message in bad_json):
            return _too_deep(request)
        if bad_json:
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

    def _parse(self, request: Request, model: type[BaseModel], body: bytes | Any) -> Any:
        """Validate JSON text (bytes) or a value :meth:`_load` returned against ``model``."""
        try:
            if isinstance(body, bytes):
                return model.model_validate_json(body)
            return model.model_validate(body)
        except ValidationError as exc:
            raise self._invalid(request, exc) from None

    @staticmethod
    def _load(request: Request, body: bytes) -> Any:
        """JSON text to values; nesting over MAX_JSON_DEPTH is a 400 (the parser stops at
        200 levels, so deep input never recurses)."""
        try:
            return parse_json_body(body)
        except ValueError as exc:
            raise _Refused(problem("bad-request", str(exc), request.url.path)) from None

    def _payloads_not_too_deep(self, request: Request, batch: EventBatch) -> None:
        """Event payloads are free-form: their nesting counts from level 4 of the body."""
        levels = MAX_JSON_DEPTH - _PAYLOAD_LEVEL + 1
        for ev in batch.events:
            if _deeper_than(ev.payload, levels):
                raise _too_deep(request, f"the payload of event seq {ev.seq}")

    @staticmethod
    def _refuse_card_data(request: Request, findings: list[Finding], where: str) -> None:
        """422 naming where card data sits (field paths, never the value); nothing is stored."""
        if not findings:
            return
        first = findings[0]
        raise _Refused(
            problem(
                "validation",
                f"card data in {where}: {first.path}: {first.reason}; send only masked PAN "
                "(first 6 and last 4 digits), brand and token - nothing was stored",
                request.url.path,
                errors=[{"field": f.path, "message": f.reason} for f in findings],
            )
        )

    def _no_card_data_in_events(self, request: Request, batch: EventBatch) -> None:
        for index, ev in enumerate(batch.events):
            if not (
                find_card_data(ev.payload)
                or find_card_data(ev.type)
                or (ev.txn and find_card_data(ev.txn))
            ):
                continue  # the hot path: no paths built for clean events
            where = f"events.{index}"
            findings = [
                *find_card_data(ev.type, f"{where}.type"),
                *(find_card_data(ev.txn, f"{where}.txn") if ev.txn else ()),
                *find_card_data(ev.payload, f"{where}.payload"),
            ]
            self._refuse_card_data(request, findings, f"event seq {ev.seq}")

    async def _body_terminal(self, request: Request, owner: str | None, body_terminal: str) -> None:
        """The body's terminal is the authenticated one (403), or in open mode the one
        ``X-Posedge-Terminal`` names, when sent (422); the registry's rules hold for it."""
        if owner is not None:
            if body_terminal != owner:
                raise _Refused(
                    problem(
                        "forbidden",
                        f"the token is not the token of terminal {body_terminal}",
                        request.url.path,
                    )
                )
            await self._registered(request, body_terminal, owner)
            return
        await self._registered(request, body_terminal, None)
        claimed = request.headers.get(TERMINAL_HEADER)
        if claimed is not None and claimed.strip() != body_terminal:
            raise _Refused(
                problem(
                    "validation",
                    f"terminal: the body names {body_terminal} but X-Posedge-Terminal names "
                    "another terminal",
                    request.url.path,
                    errors=[{"field": "terminal", "message": "must equal X-Posedge-Terminal"}],
                )
            )

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
        doc = self._load(request, await self._body(request))
        if not isinstance(doc, dict):
            raise _Refused(
                problem("bad-request", "the body must be a JSON object", request.url.path)
            )
        return doc

    async def _stored(self, call: Callable[..., _T], *args: Any, bulk: bool = False) -> _T:
        """A store call: in a worker thread when the database takes calls in parallel
        (PostgreSQL: the event loop keeps serving while a transaction waits), else inline
        (SQLite: one connection behind a lock, where a thread hop only adds latency).

        Threads never outnumber the pool's connections, in two lanes: ``bulk`` calls
        (events uploads) get all connections but ``QUICK_LANE_CONNECTIONS``, which are
        the other calls' (heartbeats, heads, authorizations, registry), so a heartbeat
        never queues behind a backlog of uploads."""
        if not self.store.concurrent:
            return call(*args)
        if self._lanes is None:
            size = self.store.db.pool_size
            if size > QUICK_LANE_CONNECTIONS:
                quick = anyio.CapacityLimiter(QUICK_LANE_CONNECTIONS)
                self._lanes = (anyio.CapacityLimiter(size - QUICK_LANE_CONNECTIONS), quick)
            else:
                shared = anyio.CapacityLimiter(size)
                self._lanes = (shared, shared)
        return await anyio.to_thread.run_sync(call, *args, limiter=self._lanes[0 if bulk else 1])

    @staticmethod
    def _no_nul(request: Request, fields: list[tuple[str, str | None]]) -> None:
        """422 for a NUL character in a text the database keeps as it is: PostgreSQL's text
        cannot hold one, so neither backend stores one (the same answer on both)."""
        bad = [name for name, value in fields if value is not None and "\x00" in value]
        if bad:
            raise _Refused(
                problem(
                    "validation",
                    f"{bad[0]}: must not contain a NUL character (U+0000); nothing was stored",
                    request.url.path,
                    errors=[{"field": name, "message": "must not contain U+0000"} for name in bad],
                )
            )

    # -- protocol endpoints -------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        # The token is checked before the body is read; the registry's rules after, in the
        # worker call that stores the batch (one thread hop and one wait for a connection).
        owner = await self._owner_of(request, terminal)
        body = await self._body(request)
        batch: EventBatch = self._parse(request, EventBatch, body)
        del body
        self._payloads_not_too_deep(request, batch)
        self._terminal_matches(request, terminal, batch.terminal)
        if len(batch.events) > self.config.max_batch_events:
            return problem(
                "payload-too-large",
                f"{len(batch.events)} events; at most {self.config.max_batch_events} per batch",
                request.url.path,
            )
        self._no_card_data_in_events(request, batch)
        for index, ev in enumerate(batch.events):
            if "\x00" in ev.ts or "\x00" in ev.type or (ev.txn and "\x00" in ev.txn):
                where = f"events.{index}"
                self._no_nul(
                    request,
                    [(f"{where}.ts", ev.ts), (f"{where}.type", ev.type), (f"{where}.txn", ev.txn)],
                )
        result = await self._stored(self._ingest, request, owner, batch, bulk=True)
        if result.accepted and (result.filled or any(ev.type == DAY_CLOSED for ev in batch.events)):
            await self._reconcile_closes(terminal)
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

    def _ingest(self, request: Request, owner: str | None, batch: EventBatch) -> IngestResult:
        """The registry's rules and the batch's signature, then the batch stored: one
        transaction (a worker's call)."""

        def admit(db: Transaction) -> None:
            record = self._registered_now(request, batch.terminal, owner, db)
            self._check_signature(request, record, batch)

        return self.store.ingest(batch, admit)

    async def head(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        await self._authenticate(request, terminal)
        acked, head_hash = await self._stored(self.store.head, terminal)
        return _json({"acked_seq": acked, "head_hash": head_hash})

    async def heartbeat(self, request: Request) -> Response:
        terminal = self._path_terminal(request)
        owner = await self._owner_of(request, terminal)
        doc = self._load(request, await self._body(request))
        beat: Heartbeat = self._parse(request, Heartbeat, doc)
        del doc
        self._terminal_matches(request, terminal, beat.terminal)
        record = beat.model_dump(mode="json")
        found = [replace(f, path=f.path.removeprefix("$.")) for f in find_card_data(record, "$")]
        self._refuse_card_data(request, found, "the heartbeat")
        interval = self.config.heartbeat_interval_s
        resend = await self._stored(self._heartbeat, request, owner, record, interval)
        now = datetime.fromtimestamp(self.store.clock(), UTC)
        reply: dict[str, Any] = {
            "server_time": now.isoformat(timespec="microseconds"),
            "interval_s": interval,
        }
        # A close lacks seqs the back office once held: ask for them again (docs/reconciliation.md).
        if resend is not None:
            reply["resend_from"] = resend
        return _json(reply)

    def _heartbeat(
        self, request: Request, owner: str | None, record: dict[str, Any], interval: int
    ) -> int | None:
        """The registry's rules, the heartbeat stored, and the seq a close lacks (a worker's
        call: a heartbeat costs one thread hop)."""
        terminal = str(record["terminal"])
        self._registered_now(request, terminal, owner)
        self.store.record_heartbeat(terminal, record, interval)
        return resend_from(self.store, terminal)

    async def _reconcile_closes(self, terminal: str) -> None:
        """Reconcile the terminal's closes after an upload brought a close or filled seqs
        (backoffice/closes). The events are stored whatever happens here."""
        try:
            await self._stored(reconcile_terminal, self.store, terminal, bulk=True)
        except Exception:
            log.exception("close reconciliation failed", extra={"terminal": terminal})

    async def authorizations(self, request: Request) -> Response:
        owner = await self._token_owner(request)
        key = self._idempotency_key(request)
        doc = await self._json_object(request)
        req: AuthorizationRequest = self._parse(request, AuthorizationRequest, doc)
        del doc  # the raw body held the card
        await self._body_terminal(request, owner, req.terminal)
        self._key_matches(request, "attempt", req.attempt, key)
        record = req.model_dump(mode="json", exclude={"card"})
        self._no_nul(request, [("txn", req.txn), ("attempt", req.attempt), ("brand", req.brand)])
        policy = self.config.policy
        claim = await self._stored(
            self.store.claim_authorization,
            req.terminal,
            key,
            authorization_fingerprint(record),
            record,
            None,
            policy.delay_s + CLAIM_LEASE_S,  # the claim's lease: how long deciding may take
        )
        if claim.kind == "mismatch":
            return problem(
                "idempotency-mismatch",
                f"Idempotency-Key {key!r} was first used with a different body; "
                "use a new key for a new transaction",
                request.url.path,
            )
        if claim.kind == "in-progress":
            return _in_progress(request, key)
        if claim.kind in ("replay", "refused"):
            return _json(claim.response)
        try:
            if policy.delay_s:
                await asyncio.sleep(policy.delay_s)
            decision = policy.decide(req)
            # A reversal recorded meanwhile turns the decision into a decline.
            response = await self._stored(
                self.store.decide_authorization, req.terminal, key, decision
            )
        except ClaimLost:  # its lease ran out and the replica that took it over gave it up
            return _in_progress(request, key)
        except BaseException:
            self.store.release_authorization(req.terminal, key, claim.token)
            raise
        return _json(response)

    async def reversals(self, request: Request) -> Response:
        owner = await self._token_owner(request)
        key = self._idempotency_key(request)
        req: ReversalRequest = self._parse(
            request, ReversalRequest, await self._json_object(request)
        )
        await self._body_terminal(request, owner, req.terminal)
        self._key_matches(request, "reversal", req.reversal, key)
        self._no_nul(request, [("txn", req.txn), ("attempt", req.attempt)])
        claim = await self._stored(
            self.store.record_reversal,
            req.terminal,
            key,
            req.txn,
            req.attempt,
            fingerprint(req.model_dump(mode="json")),
        )
        if claim.kind == "mismatch":
            return problem(
                "idempotency-mismatch",
                f"Idempotency-Key {key!r} was first used with a different reversal body",
                request.url.path,
            )
        return _json(claim.response)

    # -- enrolment --------------------------------------------------------------------------

    async def enrol(self, request: Request) -> Response:
        """``POST /v1/enrol``: no bearer token; the one-time code authenticates."""
        path = request.url.path
        req: EnrolmentRequest = self._parse(
            request, EnrolmentRequest, await self._body(request, MAX_SMALL_BODY_BYTES)
        )
        try:
            load_public_key(req.public_key)
        except (KeyFormatError, ValueError):
            return problem(
                "validation",
                "public_key: not an Ed25519 public key",
                path,
                errors=[{"field": "public_key", "message": "not an Ed25519 public key"}],
            )
        outcome = await self._stored(self.registry.enrol, req.code, req.public_key)
        if outcome.kind == "ok":
            assert outcome.record is not None and outcome.token is not None
            record = outcome.record
            log.info("terminal enrolled", extra={"terminal": record.terminal})
            answer = EnrolmentResponse(
                terminal=record.terminal, store=record.store, lane=record.lane, token=outcome.token
            )
            return _json(answer.model_dump(mode="json"))
        if outcome.kind == "revoked":
            assert outcome.record is not None
            return _revoked(outcome.record.terminal, path).response
        detail = {
            "unknown": "no terminal has this enrolment code; check it, or ask the back office "
            "operator for a new one",
            "used": "this enrolment code was used already (codes work once); ask the back "
            "office operator for a new one (posedge backoffice terminals rotate-token ID)",
            "expired": "this enrolment code has expired; ask the back office operator for a "
            "new one (posedge backoffice terminals rotate-token ID)",
        }[outcome.kind]
        return problem(f"enrolment-code-{outcome.kind}", detail, path)

    async def rotate_token(self, request: Request) -> Response:
        """``POST /v1/terminals/{terminal}/token``: a new token for the device key's proof.

        The current token authenticates; so does the one before the last rotation (until
        the new one is first used), so a rotation whose reply was lost can be repeated."""
        terminal = self._path_terminal(request)
        path = request.url.path
        presented = _bearer(request)
        if presented is None:
            raise _Refused(
                problem(
                    "unauthorized",
                    "missing bearer token: send the terminal's current token",
                    path,
                    headers={"WWW-Authenticate": _BEARER_CHALLENGE},
                )
            )
        claimed = request.headers.get(TERMINAL_HEADER)
        if claimed is not None and claimed.strip() != terminal:
            raise _Refused(problem("forbidden", "X-Posedge-Terminal is not the path's", path))
        record = await self._stored(self.registry.get, terminal)
        if record is not None and record.revoked:
            raise _revoked(terminal, path)
        digest = token_hash(presented).encode()
        known = record is not None and any(
            stored is not None and hmac.compare_digest(stored.encode(), digest)
            for stored in (record.token_hash, record.previous_token_hash)
        )
        if record is None or not record.enrolled or not known:
            raise _Refused(
                problem(
                    "unauthorized",
                    "unknown token for this terminal; only enrolled terminals rotate their "
                    "token here (a tokens-file token is changed in the tokens file)",
                    path,
                    headers={"WWW-Authenticate": _INVALID_TOKEN},
                )
            )
        req: TokenRotationRequest = self._parse(
            request, TokenRotationRequest, await self._body(request, MAX_SMALL_BODY_BYTES)
        )
        if not verify_message(
            self.registry.public_key(record), req.signature, rotation_message(terminal, req.nonce)
        ):
            return problem(
                "signature-invalid",
                f"signature: not terminal {terminal}'s device key's signature of this nonce",
                path,
            )
        outcome = await self._stored(self.registry.rotate, terminal, presented, req.nonce)
        if outcome.kind == "ok":
            assert outcome.token is not None
            log.info("terminal token rotated", extra={"terminal": terminal})
            answer = TokenRotationResponse(terminal=terminal, token=outcome.token)
            return _json(answer.model_dump(mode="json"))
        if outcome.kind == "nonce-reused":
            return problem("nonce-reused", "this nonce was used before; send a new one", path)
        if outcome.kind == "revoked":
            return _revoked(terminal, path).response
        if outcome.kind == "conflict":
            return problem("conflict", "the token changed meanwhile; retry", path)
        return problem(
            "unauthorized",
            "unknown token for this terminal",
            path,
            headers={"WWW-Authenticate": _INVALID_TOKEN},
        )

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

    async def admin_policy(self, request: Request) -> Response:
        self._admin_guard(request)
        if request.method == "PUT":
            policy: AuthorizationPolicy = self._parse(
                request, AuthorizationPolicy, self._load(request, await self._body(request))
            )
            self.config.policy = policy
        return _json(self.config.policy.model_dump(exclude={"seed"}))


def _in_progress(request: Request, key: str) -> Response:
    return problem(
        "in-progress",
        f"the authorization with Idempotency-Key {key!r} is still being decided; retry",
        request.url.path,
        headers={"Retry-After": "1"},
        retry_after_s=1,
    )


def parse_json_body(body: bytes) -> Any:
    """JSON text to values; ValueError (its message fit for a 400) when it is not JSON or
    nests deeper than MAX_JSON_DEPTH (the parser stops at 200 levels: no deep recursion)."""
    try:
        doc = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise ValueError(_TOO_DEEP.format(what="the body")) from None
        raise ValueError("the body is not valid JSON") from None
    if _deeper_than(doc, MAX_JSON_DEPTH):
        raise ValueError(_TOO_DEEP.format(what="the body"))
    return doc


_TOO_DEEP = "{what} is nested deeper than " + str(MAX_JSON_DEPTH) + " levels of objects and arrays"


def _bearer(request: Request) -> str | None:
    """The bearer token of the request, or None when there is none."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    return presented if scheme.lower() == "bearer" and presented else None


def _revoked(terminal: str, path: str) -> _Refused:
    return _Refused(
        problem(
            "terminal-revoked",
            f"terminal {terminal} has been revoked at the back office: its token, device key "
            "and enrolment codes are refused; a replacement is added as a new terminal",
            path,
        )
    )


def _too_deep(request: Request, what: str = "the body") -> _Refused:
    return _Refused(
        problem(
            "bad-request",
            f"{what} is nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays",
            request.url.path,
        )
    )


_CONTAINERS = (dict, list)


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests more than ``levels`` objects and arrays (itself included)."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    if levels <= 0:
        return True
    for item in items:  # noqa: SIM110 - a plain loop: half the cost of any() over a generator
        if isinstance(item, _CONTAINERS) and _deeper_than(item, levels - 1):
            return True
    return False


def _unread_body(request: Request) -> bool:
    """The request announced a body that the app did not read to its end."""
    if getattr(request.state, "body_read", False):
        return False
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() != "0"


def _handler(method: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await method(request)
        except _Refused as refused:
            response = refused.response
            if _unread_body(request):
                # Refused before the body was read (auth, limits): do not swallow the rest
                # of it; closing makes the client stop sending.
                response.headers["Connection"] = "close"
        return response

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "not-found", 405: "method-not-allowed"}
    kind = kinds.get(exc.status_code, "bad-request")
    response = problem(kind, f"{request.method} {request.url.path}: {exc.detail}", request.url.path)
    if _unread_body(request):
        response.headers["Connection"] = "close"
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientDisconnect):  # routine: the client gave up (server.py says so)
        return problem("bad-request", "the client went away", request.url.path)
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem("internal", "internal error; see the back office log", request.url.path)


def _dashboard(store: BackofficeStore) -> ASGIApp:
    from .dashboard.routes import create_dashboard  # Jinja2 loads only with the app

    return create_dashboard(store)


def create_app(store: BackofficeStore, config: BackofficeConfig | None = None) -> ASGIApp:
    """The ASGI app (a Starlette router); ``app.state.backoffice`` is the :class:`BackofficeApp`."""
    config = config or BackofficeConfig()
    bo = BackofficeApp(store, config)
    routes = [
        Route("/v1/terminals/{terminal}/events", _handler(bo.events), methods=["POST"]),
        Route("/v1/terminals/{terminal}/events/head", _handler(bo.head), methods=["GET"]),
        Route("/v1/terminals/{terminal}/heartbeat", _handler(bo.heartbeat), methods=["POST"]),
        Route("/v1/authorizations", _handler(bo.authorizations), methods=["POST"]),
        Route("/v1/reversals", _handler(bo.reversals), methods=["POST"]),
        Route("/v1/enrol", _handler(bo.enrol), methods=["POST"]),
        Route("/v1/terminals/{terminal}/token", _handler(bo.rotate_token), methods=["POST"]),
        Route("/openapi.json", _handler(bo.openapi), methods=["GET"]),
        Route("/healthz", _handler(bo.healthz), methods=["GET"]),
        Route("/admin/policy", _handler(bo.admin_policy), methods=["GET", "PUT"]),
        # The fleet dashboard (docs/dashboard.md): staff sessions, never terminal tokens.
        Mount("/dashboard", app=_dashboard(store)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.backoffice = bo
    return app
