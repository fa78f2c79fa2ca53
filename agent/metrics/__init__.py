"""Prometheus metrics of the running agent at ``/metrics`` (issue 13; docs/metrics.md).

:func:`build_registry` makes a private registry (never ``prometheus_client``'s global one)
holding the agent's collector and the process collector; :func:`start_metrics` serves it
on ``metrics.listen``. The daemon calls it before the agent starts, so a listener that
cannot bind stops ``posedge run`` (exit 2) before the journal is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from .collector import AgentCollector, bounded
from .outcomes import OutcomeTail
from .server import MetricsServer, metrics_app

if TYPE_CHECKING:
    from ..config import MetricsConfig
    from ..service import Agent


def build_registry(agent: Agent) -> tuple[CollectorRegistry, AgentCollector]:
    """A private registry with the agent's ``posedge_*`` families and ``process_*``."""
    registry = CollectorRegistry(auto_describe=False)
    collector = AgentCollector(agent)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry, collector


async def start_metrics(agent: Agent, config: MetricsConfig) -> MetricsServer | None:
    """Serve ``agent``'s metrics on ``config.listen``; None when no listener is configured."""
    if config.listen is None:
        return None
    registry, _ = build_registry(agent)
    server = MetricsServer(registry, config.listen)
    await server.start()
    return server


__all__ = [
    "AgentCollector",
    "MetricsServer",
    "OutcomeTail",
    "bounded",
    "build_registry",
    "metrics_app",
    "start_metrics",
]
