"""The sync loops a running agent keeps: upload whenever there is a backlog, heartbeat
on schedule. Two threads, so a long backoff never delays a heartbeat.

``extra`` supplies the heartbeat fields other parts own (devices, offline
exposure, in-doubt count); it must be cheap and must never raise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .errors import SyncError
from .service import SyncService

log = logging.getLogger("posedge.sync")

IDLE_POLL_S = 5.0
"""Longest wait for new events when idle (appends in this process wake it at once)."""


class SyncRunner:
    def __init__(
        self,
        service: SyncService,
        *,
        heartbeat_extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.service = service
        self.heartbeat_extra = heartbeat_extra or dict
        self.stop_event = threading.Event()
        self.heartbeats_sent = 0
        self.last_heartbeat_error: str | None = None
        self.progress = 0
        """Incremented on every loop turn: a watchdog can see the threads are alive."""
        self._threads = [
            threading.Thread(target=self._upload_loop, name="posedge-sync", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="posedge-heartbeat", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        with self.service.journal._appended:
            self.service.journal._appended.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)

    def _upload_loop(self) -> None:
        journal = self.service.journal
        while not self.stop_event.is_set():
            self.progress += 1
            try:
                report = self.service.drain(stop=self.stop_event)
            except Exception:  # a bug must not end syncing for good
                log.exception("sync loop error; retrying")
                self.stop_event.wait(self.service.settings.seconds("backoff_cap"))
                continue
            if report.complete and journal.acked_seq() >= journal.head().seq:
                journal.wait_for_append(IDLE_POLL_S)

    def _heartbeat_loop(self) -> None:
        interval = self.service.settings.seconds("heartbeat_interval")
        while not self.stop_event.is_set():
            self.progress += 1
            try:
                self.service.send_heartbeat(self.heartbeat_extra())
                self.heartbeats_sent += 1
                self.last_heartbeat_error = None
            except SyncError as exc:
                self.last_heartbeat_error = str(exc)
                log.warning("heartbeat failed", extra={"error": str(exc)})
            except Exception:
                log.exception("heartbeat error")
            self.stop_event.wait(interval)
