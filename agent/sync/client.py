"""HTTP to the back office (docs/sync-protocol.md): requests, status mapping, skew.

One :class:`BackofficeClient` per agent. It sends exactly one request per
call and maps every answer to a return value or a :mod:`.errors` exception;
retrying is the caller's business (:mod:`.service`). TLS verification is
always on; timeouts (connect, read, write, pool) are always set. It never
logs card data or the token.
"""

from __future__ import annotations

import gzip
import json
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx

from posedge.protocol.problems import problem_kind

from ..config import SyncConfig
from ..errors import ConfigError
from ..statedir import MAX_SMALL_FILE_BYTES, read_file_nofollow
from .errors import BackofficeBusy, BackofficeRejected, BackofficeUnreachable, SyncError
from .retry import parse_retry_after

COMPRESS_MIN_BYTES = 1024
COMPRESS_MIN_SAVING = 0.10


def agent_version() -> str:
    try:
        return version("posedge")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


class Rewind(SyncError):
    """409 sequence-gap / chain-mismatch: the back office needs ``expected_seq`` next."""

    def __init__(
        self, expected_seq: int, acked_seq: int | None, problem_type: str, detail: str
    ) -> None:
        super().__init__(f"back office asks to resend from seq {expected_seq}: {detail}")
        self.expected_seq = expected_seq
        self.acked_seq = acked_seq
        self.problem_type = problem_type


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    skew_s: float | None


def read_token(token_file: str | None) -> str | None:
    """The bearer token from a file (first line), or None when none is configured.

    The file is opened without following a symbolic link: a link, or anything but
    a regular file, is refused (:class:`~posedge.agent.statedir.UnsafeFile`, exit 2).
    """
    if not token_file:
        return None
    try:
        raw = read_file_nofollow(Path(token_file), what="sync.token_file")
    except OSError as exc:
        raise ConfigError(
            f"sync.token_file {token_file}: cannot read it ({exc.strerror}); check the path "
            "and that the posedge user may read it"
        ) from None
    if len(raw) > MAX_SMALL_FILE_BYTES:
        raise ConfigError(
            f"sync.token_file {token_file}: over {MAX_SMALL_FILE_BYTES} bytes; not a token file"
        )
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            f"sync.token_file {token_file}: not UTF-8 text; it must hold the token only"
        ) from None
    if not token or any(ch.isspace() for ch in token):
        raise ConfigError(f"sync.token_file {token_file}: the token is empty or has spaces")
    return token


def _tls_context(settings: SyncConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"sync TLS settings: {exc}; check sync.ca_file, sync.client_cert and sync.client_key"
        ) from None
    return context


class BackofficeClient:
    """Requests to one back office for one terminal."""

    def __init__(
        self,
        base_url: str,
        terminal: str,
        settings: SyncConfig,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.terminal = terminal
        self.settings = settings
        headers = {
            "User-Agent": f"posedge/{agent_version()}",
            "Accept": "application/json, application/problem+json",
        }
        if terminal:  # none yet while enrolling
            headers["X-Posedge-Terminal"] = terminal
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(
            connect=settings.seconds("connect_timeout"),
            read=settings.seconds("read_timeout"),
            write=settings.seconds("write_timeout"),
            pool=settings.seconds("pool_timeout"),
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            verify=_tls_context(settings),
            transport=transport,
            follow_redirects=False,
        )
        self.last_skew_s: float | None = None
        self._connect_timeout_s = settings.seconds("connect_timeout")

    def close(self) -> None:
        self._http.close()

    def set_token(self, token: str | None) -> None:
        """Use another bearer token from the next request on (a reload after a fix)."""
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"
        else:
            self._http.headers.pop("Authorization", None)

    # ------------------------------------------------------------ endpoints
    def post_events(self, body: bytes, first_seq: int, last_seq: int) -> Reply:
        return self._post(
            f"/v1/terminals/{self.terminal}/events",
            body,
            idempotency_key=f"{self.terminal}:{first_seq}-{last_seq}",
        )

    def events_head(self) -> Reply:
        return self._send("GET", f"/v1/terminals/{self.terminal}/events/head", None, None)

    def heartbeat(self, document: dict[str, Any]) -> Reply:
        return self._post(f"/v1/terminals/{self.terminal}/heartbeat", _json(document))

    def authorize(self, body: bytes, key: str, *, timeout_s: float | None = None) -> Reply:
        """One authorization attempt; ``key`` is the attempt id (docs/sync-protocol.md).

        ``body`` may hold card data: it is sent and dropped, never logged.
        """
        return self._post("/v1/authorizations", body, idempotency_key=key, timeout_s=timeout_s)

    def reverse(self, body: bytes, key: str, *, timeout_s: float | None = None) -> Reply:
        """One reversal; ``key`` is the reversal id ``{attempt}:reversal``."""
        return self._post("/v1/reversals", body, idempotency_key=key, timeout_s=timeout_s)

    def enrol(self, body: bytes) -> Reply:
        """``POST /v1/enrol``: the one-time code authenticates (no bearer token is sent)."""
        return self._post("/v1/enrol", body)

    def rotate_token(self, body: bytes) -> Reply:
        """``POST /v1/terminals/{terminal}/token``: the answer holds the new token, which is
        never logged."""
        return self._post(f"/v1/terminals/{self.terminal}/token", body)

    # ------------------------------------------------------------ plumbing
    def _post(
        self,
        path: str,
        body: bytes,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        return self._send("POST", path, body, idempotency_key, timeout_s)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        idempotency_key: str | None,
        timeout_s: float | None = None,
    ) -> Reply:
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body, encoded = self._maybe_compress(body)
            if encoded:
                headers["Content-Encoding"] = "gzip"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        sent_at = time.time()
        timeout = (
            httpx.USE_CLIENT_DEFAULT
            if timeout_s is None
            else httpx.Timeout(timeout_s, connect=min(timeout_s, self._connect_timeout_s))
        )
        try:
            response = self._http.request(
                method, path, content=body, headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise BackofficeUnreachable(
                f"back office {self.base_url}: {type(exc).__name__}: {exc or 'connection failed'}",
                delivered=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise BackofficeUnreachable(
                f"back office {self.base_url}: timed out ({type(exc).__name__}) on {path}"
            ) from None
        except httpx.TransportError as exc:
            raise BackofficeUnreachable(
                f"back office {self.base_url}: {type(exc).__name__}: {exc or 'connection failed'}"
            ) from None
        skew = _skew(response, sent_at, time.time())
        if skew is not None:
            self.last_skew_s = skew
        return self._classify(response, path, skew)

    def _maybe_compress(self, body: bytes) -> tuple[bytes, bool]:
        if not self.settings.compress or len(body) < COMPRESS_MIN_BYTES:
            return body, False
        packed = gzip.compress(body, compresslevel=1)
        if len(packed) <= len(body) * (1 - COMPRESS_MIN_SAVING):
            return packed, True
        return body, False

    def _classify(self, response: httpx.Response, path: str, skew: float | None) -> Reply:
        status = response.status_code
        body = _body(response)
        if 200 <= status < 300:
            return Reply(status, body, skew)
        kind = problem_kind(str(body.get("type", ""))) or ""
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
        where = f"back office {self.base_url}{path}"
        if status == 409 and kind in ("sequence-gap", "chain-mismatch"):
            expected = body.get("expected_seq")
            acked = body.get("acked_seq")
            if isinstance(expected, int) and expected >= 1:
                raise Rewind(expected, acked if isinstance(acked, int) else None, kind, detail)
        if status in (429, 503) or status >= 500 or (status == 409 and kind == "in-progress"):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise BackofficeBusy(
                f"{where}: {status} {detail}", status=status, retry_after_s=retry_after
            )
        raise BackofficeRejected(
            f"{where}: {status} {kind or response.reason_phrase}: {detail}",
            status=status,
            problem_type=kind or None,
        )


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        parsed = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _skew(response: httpx.Response, sent_at: float, received_at: float) -> float | None:
    """Server clock minus ours, from the Date header (1 s resolution)."""
    header = response.headers.get("Date")
    if not header:
        return None
    try:
        server = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if server.tzinfo is None:
        server = server.replace(tzinfo=UTC)
    midpoint = datetime.fromtimestamp((sent_at + received_at) / 2, UTC)
    return round((server - midpoint).total_seconds(), 3)
