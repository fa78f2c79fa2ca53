"""The dashboard's view of the fleet's alerts (table alerts, backoffice/alerting) and their
acknowledgements (table alert_acks).

An acknowledgement belongs to one episode of an alert — the ``active_since`` it had when it
was acknowledged — so an alert that resolves and comes back is unacknowledged again.
``posedge backoffice alerts`` shows the same acknowledgements (``acknowledged_by``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..store import BackofficeStore

OPEN_STATES = ("pending", "firing", "flapping")
VIEWS = ("open", "resolved", "all")
ALERTS_PER_PAGE = 100


class AckError(ValueError):
    """An acknowledgement that cannot be recorded; the message says why."""


@dataclass(frozen=True)
class AlertRow:
    fingerprint: str
    alertname: str
    terminal: str | None
    store: str
    state: str
    inhibited: bool
    summary: str
    details: dict[str, Any]
    active_since: float | None
    firing_since: float | None
    resolved_at: float | None
    acked_by: str | None
    acked_at: float | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


_SELECT = (
    "SELECT a.fingerprint, a.alertname, a.terminal, a.store, a.state, a.inhibited, a.summary,"
    " a.details, a.active_since, a.firing_since, a.resolved_at, k.acked_by, k.acked_at"
    " FROM alerts a LEFT JOIN alert_acks k ON k.fingerprint = a.fingerprint"
    " AND k.episode = a.active_since"
)


def _row(row: Any) -> AlertRow:
    try:
        details = json.loads(row[7])
    except (TypeError, ValueError):
        details = {}
    return AlertRow(
        str(row[0]), str(row[1]), None if row[2] is None else str(row[2]), str(row[3]),
        str(row[4]), bool(row[5]), str(row[6]), details if isinstance(details, dict) else {},
        row[8], row[9], row[10], None if row[11] is None else str(row[11]), row[12],
    )  # fmt: skip


def list_alerts(
    store: BackofficeStore, view: str = "open", page: int = 1, per_page: int = ALERTS_PER_PAGE
) -> tuple[list[AlertRow], int]:
    """One page of alerts (open, resolved or all; by store, alert, terminal) and the total."""
    if view not in VIEWS:
        raise AckError(f"view {view[:40]!r} is not one of {', '.join(VIEWS)}")
    where = {
        "open": "a.state IN ('pending', 'firing', 'flapping')",
        "resolved": "a.state = 'resolved'",
        "all": "a.state != 'inactive'",
    }[view]
    total = int(store.db.execute(f"SELECT count(*) FROM alerts a WHERE {where}").rows[0][0])
    rows = store.db.execute(
        f"{_SELECT} WHERE {where} ORDER BY a.store, a.alertname, a.terminal LIMIT ? OFFSET ?",
        (per_page, (page - 1) * per_page),
    ).rows
    return [_row(r) for r in rows], total


def terminal_alerts(store: BackofficeStore, terminal: str) -> list[AlertRow]:
    rows = store.db.execute(
        f"{_SELECT} WHERE a.terminal = ? AND a.state != 'inactive'"
        " ORDER BY a.updated_at DESC LIMIT 50",
        (terminal,),
    ).rows
    return [_row(r) for r in rows]


def acknowledge(store: BackofficeStore, fingerprint: str, username: str, now: float) -> AlertRow:
    """Acknowledge the open alert ``fingerprint``'s current episode as ``username``."""
    with store.transaction() as tx:
        row = tx.execute(f"{_SELECT} WHERE a.fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            raise AckError(f"no alert {fingerprint[:120]!r}; it may have been removed")
        alert = _row(row)
        if not alert.is_open:
            raise AckError(
                f"alert {fingerprint[:120]!r} is {alert.state}: only open alerts "
                "(pending, firing, flapping) are acknowledged"
            )
        tx.execute(
            "INSERT INTO alert_acks (fingerprint, episode, acked_by, acked_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET episode = excluded.episode,"
            " acked_by = excluded.acked_by, acked_at = excluded.acked_at",
            (fingerprint, alert.active_since, username, now),
        )
    return AlertRow(**{**alert.__dict__, "acked_by": username, "acked_at": now})
