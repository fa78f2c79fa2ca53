"""A round-robin HTTP reverse proxy: each request goes to the next back office replica.

For the replica tests and the fleet benchmark: a terminal keeps one
keep-alive connection to the proxy, yet its consecutive requests land on
different ``backoffice serve`` processes. What an upstream does to the
connection, the client sees: an upstream reset (an injected ``reset`` or
``drop_reply`` fault, a replica killed mid-request) resets the client's
connection too, so a lost reply stays a lost reply. Bodies are buffered (the
back office caps them at 16 MiB); hop-by-hop headers are not forwarded.
Never logs bodies or headers (tokens).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Sequence
from types import TracebackType

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from posedge.backoffice.server import _bind, _uvicorn_config

from .faults import reset_connection

log = logging.getLogger("posedge.simulator.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
UPSTREAM_TIMEOUT_S = 120.0


class RoundRobinProxy:
    """ASGI app forwarding request *n* to ``upstreams[n % len(upstreams)]``."""

    def __init__(self, upstreams: Sequence[str], max_connections: int = 256) -> None:
        if not upstreams:
            raise ValueError("give at least one upstream URL")
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self._next = itertools.cycle(range(len(self.upstreams)))
        self.counts = [0] * len(self.upstreams)
        self.upstream_failures = 0  # requests whose upstream reset or dropped the connection
        self._client: httpx.AsyncClient | None = None
        self._max_connections = max_connections

    async def aclose(self) -> None:
        """Close the upstream connections (call on the loop that served requests)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _pick(self) -> int:
        index = next(self._next)
        self.counts[index] += 1
        return index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=UPSTREAM_TIMEOUT_S,
                limits=httpx.Limits(max_connections=self._max_connections),
            )
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstreams[self._pick()] + scope["path"] + (f"?{query}" if query else "")
        try:
            reply = await self._client.request(
                scope["method"], url, headers=headers, content=b"".join(chunks)
            )
        except httpx.TransportError as exc:
            # The replica reset or dropped the connection (or is down): so does the proxy.
            self.upstream_failures += 1
            log.debug("upstream %s failed: %s", url, type(exc).__name__)
            await reset_connection(send)
            return
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in reply.headers.multi_items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        body = reply.content
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": reply.status_code, "headers": out})
        await send({"type": "http.response.body", "body": body})


class ProxyServer:
    """The proxy on uvicorn in a background thread (port 0: any free port)."""

    def __init__(self, upstreams: Sequence[str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = RoundRobinProxy(upstreams)
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ProxyServer:
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app, "warning", access_log=False))
        server = self._server

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                await self.app.aclose()
                sock.close()

        self._thread = threading.Thread(
            target=lambda: asyncio.run(serve()),
            name=f"proxy:{self.port}",
            daemon=True,
        )
        self._thread.start()
        ready = threading.Event()
        while not server.started and self._thread.is_alive():
            ready.wait(0.005)
        if not server.started:
            raise RuntimeError(f"the proxy did not start on {self.url}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
