"""Alerts: journaled ``alert.raised`` / ``alert.cleared`` events plus the active set.

An alert is raised once per episode (not on every retry) and cleared when the
condition ends. The active set lives in the journal's meta table so every
process (daemon, ``posedge sync status``, heartbeats) sees the same list.
Details must never contain card data (the journal refuses it anyway).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .journal import Journal
from .journal.records import utc_now_iso

ACTIVE_KEY = "active_alerts"


class AlertBook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._lock = threading.Lock()

    def active(self) -> dict[str, dict[str, Any]]:
        text = self.journal.get_meta(ACTIVE_KEY)
        if not text:
            return {}
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def raise_(self, kind: str, detail: str, **fields: Any) -> bool:
        """Raise ``kind`` unless it is already active; True when newly raised."""
        with self._lock:
            active = self.active()
            if kind in active:
                return False
            event = self.journal.append("alert.raised", {"kind": kind, "detail": detail, **fields})
            active[kind] = {"since": event.ts, "detail": detail, "seq": event.seq}
            self.journal.set_meta(ACTIVE_KEY, json.dumps(active, sort_keys=True))
            return True

    def clear(self, kind: str) -> bool:
        """Clear ``kind`` if active; True when it was."""
        with self._lock:
            active = self.active()
            if kind not in active:
                return False
            self.journal.append("alert.cleared", {"kind": kind, "raised_seq": active[kind]["seq"]})
            del active[kind]
            self.journal.set_meta(ACTIVE_KEY, json.dumps(active, sort_keys=True))
            return True

    def as_list(self) -> list[dict[str, Any]]:
        return [{"kind": kind, **info} for kind, info in sorted(self.active().items())]


__all__ = ["AlertBook", "utc_now_iso"]
