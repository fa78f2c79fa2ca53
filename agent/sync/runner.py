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

UPLOAD_LINGER_S = 0.25
"""After new events wake the uploader, how long it waits for more before sending."""


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
        self.upload_beat: Callable[[], None] = lambda: None
        self.heartbeat_beat: Callable[[], None] = lambda: None
        """Called at least once a second by each thread while it is healthy (watchdog)."""
        self._threads = [
            threading.Thread(target=self._upload_loop, name="posedge-sync", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="posedge-heartbeat", daemon=True),
        ]

    def start(self) -> None:
        self.service.tick = lambda: self.upload_beat()
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        self.service.journal.wake_append_waiters()
        for thread in self._threads:
            thread.join(timeout_s)

    def _upload_loop(self) -> None:
        journal = self.service.journal
        while not self.stop_event.is_set():
            self.upload_beat()
            try:
                report = self.service.drain(stop=self.stop_event)
            except Exception:  # a bug must not end syncing for good
                log.exception("sync loop error; retrying")
                self._wait(self.service.settings.seconds("backoff_cap"), self.upload_beat)
                continue
            if report.complete and journal.acked_seq() >= journal.head().seq:
                journal.wait_for_append(1.0)
                # Let the rest of a sale's events arrive: one upload and one cursor
                # write for them all, instead of one per event competing with the sale.
                self.stop_event.wait(UPLOAD_LINGER_S)

    def _heartbeat_loop(self) -> None:
        interval = self.service.settings.seconds("heartbeat_interval")
        while not self.stop_event.is_set():
            self.heartbeat_beat()
            try:
                self.service.send_heartbeat(self.heartbeat_extra())
                self.heartbeats_sent += 1
                self.last_heartbeat_error = None
            except SyncError as exc:
                self.last_heartbeat_error = str(exc)
                log.warning("heartbeat failed", extra={"error": str(exc)})
            except Exception:
                log.exception("heartbeat error")
            self._wait(interval, self.heartbeat_beat)

    def _wait(self, seconds: float, beat: Callable[[], None]) -> None:
        """Wait ``seconds`` or until stopped, beating every second."""
        remaining = seconds
        while remaining > 0 and not self.stop_event.is_set():
            beat()
            step = min(1.0, remaining)
            self.stop_event.wait(step)
            remaining -= step
