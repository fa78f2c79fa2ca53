"""What the back office knows about each terminal: held events, integrity, heartbeats, silence.

Read-only over the database (safe while ``serve`` runs). A terminal is
*silent* when no heartbeat arrived for more than three intervals (the
interval the back office last answered, else 60 s), counted from its last
heartbeat or, before the first one, from when it was first seen. This module
must never modify the database.
"""

from __future__ import annotations

import time
from typing import Any

from .app import DEFAULT_HEARTBEAT_INTERVAL_S
from .store import BackofficeStore

SILENT_AFTER_INTERVALS = 3


def terminal_report(
    store: BackofficeStore, now: float | None = None, default_interval_s: int = 60
) -> list[dict[str, Any]]:
    """One document per terminal, sorted by terminal id."""
    now = time.time() if now is None else now
    out = []
    for state in store.terminal_states():
        integrity = store.held_integrity(state.terminal)
        interval = state.interval_s or default_interval_s
        since = (
            state.last_heartbeat_at if state.last_heartbeat_at is not None else state.enrolled_at
        )
        age = None if state.last_heartbeat_at is None else max(0.0, now - state.last_heartbeat_at)
        head_matches = None
        if state.reported_head_seq is not None:
            head_matches = state.reported_head_seq == state.held_seq and (
                state.reported_head_hash in (None, state.head_hash)
            )
        out.append(
            {
                "terminal": state.terminal,
                "events_held": integrity["events"],
                "first_seq": state.first_seq,
                "last_seq": state.held_seq,
                "head_hash": state.head_hash,
                "missing_seqs": integrity["missing_seqs"],
                "chain_breaks_held": integrity["chain_breaks"],
                "gaps_rejected": state.counters["gaps"],
                "chain_mismatches_rejected": state.counters["chain_breaks"],
                "duplicates_absorbed": state.counters["duplicates"],
                "conflicts": state.counters["conflicts"],
                "last_heartbeat_age_s": None if age is None else round(age, 3),
                "heartbeat_interval_s": interval,
                "silent": now - since > SILENT_AFTER_INTERVALS * interval,
                "reported_backlog": state.reported_backlog,
                "reported_head_seq": state.reported_head_seq,
                "reported_head_hash": state.reported_head_hash,
                "reported_head_matches_held": head_matches,
            }
        )
    return out


def report_document(
    store: BackofficeStore,
    now: float | None = None,
    default_interval_s: int = DEFAULT_HEARTBEAT_INTERVAL_S,
) -> dict[str, Any]:
    terminals = terminal_report(store, now, default_interval_s)
    return {
        "db": store.display,
        "terminals": terminals,
        "silent": [t["terminal"] for t in terminals if t["silent"]],
        "problems": [
            t["terminal"]
            for t in terminals
            if t["missing_seqs"] or t["chain_breaks_held"] or t["conflicts"]
        ],
    }
