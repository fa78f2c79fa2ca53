"""``/metrics`` over HTTP: the daemon's own TCP listener for Prometheus.

One small Starlette app on uvicorn in the daemon's event loop (the same stack as the till
API, on a separate socket: scrapes never share a port, a token or a connection limit with
the till)::

    server = MetricsServer(registry, "127.0.0.1:9464")
    await server.start()     # binds (ConfigError, exit 2, when it cannot), then serves
    ...
    await server.stop()

``GET /metrics`` answers in the Prometheus text format (``text/plain; version=0.0.4``), or
OpenMetrics when the scraper asks for it (``prometheus_client``'s content negotiation).
``GET /-/healthy`` answers ``ok`` (a liveness probe, and the benchmark's baseline). The
scrape is generated on the event loop: the agent's state belongs to it, and every read
is O(1) in the journal's size (:mod:`.collector`). Nothing is logged per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..api.server import EmbeddedServer, bind_tcp_socket, embedded_config
from ..errors import ConfigError

log = logging.getLogger("posedge.metrics")

STOP_TIMEOUT_S = 5.0
WHERE = "metrics.listen"


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """``/metrics`` from ``registry`` and ``/-/healthy``."""

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/-/healthy", healthy, methods=["GET"]),
        ]
    )


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[::1]:PORT`` → (host, port); the syntax config validation allows."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ConfigError(f"{WHERE} = {listen!r}: not HOST:PORT; write e.g. 127.0.0.1:9464")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening non-blocking TCP socket, or ConfigError saying why it cannot be."""
    name = "127.0.0.1" if host.lower() == "localhost" else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        raise ConfigError(
            f"{WHERE} = '{host}:{port}': {host!r} is not an IP address or localhost"
        ) from None
    return bind_tcp_socket(name, port, where=WHERE)


class MetricsServer:
    """Serves ``registry`` at ``http://HOST:PORT/metrics`` as a task in the running loop."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        self.registry = registry
        self.host, self.requested_port = parse_listen(listen)
        self.port: int | None = None
        """The bound port (the real one when port 0 was asked for)."""
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """``http://HOST:PORT/metrics`` once listening."""
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and serve; returns once listening. ConfigError when it cannot bind."""
        if self._task is not None:
            raise RuntimeError("the metrics server is already running")
        sock = bind(self.host, self.requested_port)
        self.port = int(sock.getsockname()[1])
        server = EmbeddedServer(
            embedded_config(metrics_app(self.registry), "warning", STOP_TIMEOUT_S)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]), name="posedge-metrics")
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            sock.close()
            error = task.exception()
            self.port = None
            raise RuntimeError(f"the metrics server did not start: {error!r}") from error
        self._server, self._task = server, task
        if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
            log.warning(
                "metrics are served on a non-loopback address (metrics.allow_non_loopback): "
                "anyone who reaches the port reads sales counts and device state; firewall "
                "it to the Prometheus server",
                extra={"listen": f"{self.host}:{self.port}"},
            )
        log.info("metrics listening", extra={"url": self.url})

    async def stop(self) -> None:
        """Stop accepting; let a scrape in progress finish (at most a few seconds)."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S + 1.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._server = self._task = None
