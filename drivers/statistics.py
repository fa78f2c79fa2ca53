"""Per-device statistics counters (UnifiedPOS names), persisted in the state dir.

One JSON file per device, ``<state_dir>/devices/<device_id>.stats.json``,
written atomically (temp file, fsync, rename) so a crash never leaves a torn
file. A damaged file is kept aside as ``.corrupt`` and counting restarts; the
counters are diagnostics, never a reason to refuse work.

``min_save_interval_s`` bounds how often a busy device fsyncs its counters (a
lane selling many sales a second would otherwise spend its time here); a
skipped save is made at the next one due or at ``save(force=True)`` on close.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


class DeviceStatistics:
    """Named integer counters plus powered/online hours for one device."""

    def __init__(
        self, state_dir: Path | None, device_id: str, *, min_save_interval_s: float = 0.0
    ) -> None:
        self.device_id = device_id
        self.min_save_interval_s = min_save_interval_s
        self._last_save: float | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._online_since: float | None = None
        self._online_s_base = 0.0
        self.path: Path | None = None
        if state_dir is not None:
            safe = _SAFE_ID.sub("_", device_id).strip("_") or "device"
            self.path = state_dir / "devices" / f"{safe}.stats.json"
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            counters = raw["counters"]
            if not isinstance(counters, dict) or not all(
                isinstance(v, int) for v in counters.values()
            ):
                raise ValueError("counters must be integers")
            self._counters = {str(k): int(v) for k, v in counters.items()}
            self._online_s_base = float(raw.get("online_s", 0.0))
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError):
            self.path.replace(self.path.with_suffix(".corrupt"))
            self._counters = {}

    def increment(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + by

    def get(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def mark_online(self, online: bool) -> None:
        """Track hours online (UnifiedPOS HoursPoweredCount analogue)."""
        with self._lock:
            now = time.monotonic()
            if online and self._online_since is None:
                self._online_since = now
            elif not online and self._online_since is not None:
                self._online_s_base += now - self._online_since
                self._online_since = None

    def snapshot(self) -> dict[str, int | float]:
        with self._lock:
            online_s = self._online_s_base
            if self._online_since is not None:
                online_s += time.monotonic() - self._online_since
            out: dict[str, int | float] = dict(sorted(self._counters.items()))
            out["HoursOnlineCount"] = round(online_s / 3600.0, 4)
            return out

    def save(self, *, force: bool = False) -> None:
        """Persist atomically (at most every ``min_save_interval_s`` unless ``force``)."""
        if self.path is None:
            return
        now = time.monotonic()
        if (
            not force
            and self._last_save is not None
            and now - self._last_save < self.min_save_interval_s
        ):
            return
        self._last_save = now
        snap = self.snapshot()
        online_s = float(snap.pop("HoursOnlineCount")) * 3600.0
        doc: Mapping[str, object] = {
            "device": self.device_id,
            "counters": snap,
            "online_s": online_s,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
