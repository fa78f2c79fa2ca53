"""Alertmanager's API format: the body of ``POST /api/v2/alerts`` (``postableAlerts``).

Each alert: ``labels`` (``alertname``, ``store``, ``terminal`` for a lane's alert,
``severity``, ``source="posedge"``), ``annotations`` (``summary``, ``description``),
``startsAt`` and ``endsAt`` (RFC 3339) and ``generatorURL``. Alertmanager expires an
alert at its ``endsAt``: a firing alert is sent with ``endsAt`` four resend intervals
ahead and re-sent every ``alertmanager_resend_s`` (what Prometheus does); a resolved one
with the time it resolved.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SEVERITY = {
    "terminal_not_alive": "critical",
    "sales_not_arriving": "critical",
    "lane_not_selling": "warning",
    "store_offline": "critical",
    "device_fault": "critical",
    "chain_integrity": "critical",
    "journal_rewritten": "critical",
}


def rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def postable_alert(
    alert: dict[str, Any], now: float, resend_s: float, generator_url: str
) -> dict[str, Any]:
    """One alert document (see :func:`..engine.alert_document`) in Alertmanager's form."""
    labels = {
        "alertname": alert["alertname"],
        "store": alert["store"],
        "severity": SEVERITY.get(alert["alertname"], "warning"),
        "source": "posedge",
    }
    if alert.get("terminal"):
        labels["terminal"] = alert["terminal"]
    details = json.dumps(alert.get("details") or {}, sort_keys=True, default=str)[:2000]
    started = alert.get("starts_at_epoch") or now
    ended = alert.get("ends_at_epoch")
    ends = ended if ended is not None else now + 4 * max(resend_s, 1.0)
    base = generator_url.rstrip("/")
    return {
        "labels": labels,
        "annotations": {"summary": alert["summary"][:1000], "description": details},
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(max(ends, started)),
        "generatorURL": f"{base}/alerts?store={quote(alert['store'], safe='')}",
    }


def postable_alerts(
    alerts: list[dict[str, Any]], now: float, resend_s: float, generator_url: str
) -> list[dict[str, Any]]:
    return [postable_alert(a, now, resend_s, generator_url) for a in alerts]
