"""Alerts of the fleet: silence signals and anomaly flags become alerts with the terminal's
lifecycle (pending, firing, resolved, flapping — :mod:`posedge.agent.health.lifecycle`),
grouped by store, inhibited when a store is offline, repeated on an interval, and
delivered durably to webhooks (signed) and Alertmanager. docs/alerts.md.

Modules: :mod:`.config` (settings), :mod:`.engine` (one evaluation: states and the
outbox, in one transaction), :mod:`.receivers` (where notifications go),
:mod:`.outbox` (delivery with retries), :mod:`.signing` (the webhook signature),
:mod:`.alertmanager` (its API format), :mod:`.loop` (the evaluation loop of ``serve``).
This package must never put a receiver's secret in a log, a listing or a notification.
"""

from __future__ import annotations

from .config import AlertConfig, AlertConfigError

__all__ = ["AlertConfig", "AlertConfigError"]
