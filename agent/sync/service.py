"""Upload the journal in order, exactly once in effect, and report health.

The cursor ("the back office holds everything through seq N") moves only on
the back office's acknowledgement, in the same SQLite transaction as the sync
state. A 409 gap or chain-mismatch rewinds the cursor to the seq the back
office names; nothing is ever skipped or dropped. Transient failures back off
with full jitter (tenacity) and honour Retry-After; permanent rejections raise
an alert once, keep the data and retry slowly.

Blocking code: the daemon runs it in a worker thread.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base, stop_never
from tenacity.wait import wait_base

from posedge.protocol.models import Heartbeat

from ..alerts import AlertBook
from ..config import SyncConfig
from ..enrolment import load_signing_key
from ..journal import Journal, JournalError
from ..journal.records import utc_now_iso
from .batch import Batch, next_batch
from .client import BackofficeClient, Rewind, agent_version
from .errors import BackofficeRejected, BackofficeUnreachable, SyncError
from .resend import ResendRequests
from .retry import wait_retry_after_or_jitter

log = logging.getLogger("posedge.sync")

STATE_KEY = "sync_state"
ALERT_REJECTED = "sync_rejected"
ALERT_HISTORY = "sync_history_mismatch"


@dataclass
class SyncState:
    """What ``posedge sync status`` shows; persisted in the journal's meta table."""

    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    next_retry_at: str | None = None
    consecutive_failures: int = 0
    last_skew_s: float | None = None
    last_acked_seq: int | None = None
    backoffice: str | None = None

    @classmethod
    def load(cls, journal: Journal) -> SyncState:
        text = journal.get_meta(STATE_KEY)
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class DrainReport:
    sent_events: int = 0
    batches: int = 0
    rewinds: int = 0
    acked_seq: int = 0
    head_seq: int = 0
    complete: bool = False
    errors: list[str] = field(default_factory=list)
    rejected: bool = False
    """The last failure was a permanent rejection (alert raised, data kept)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[int, int], None]
"""Called with (acknowledged seq, head seq) after every acknowledged batch."""


class SyncService:
    """One terminal's uploader and heartbeat sender."""

    def __init__(
        self,
        journal: Journal,
        client: BackofficeClient,
        settings: SyncConfig,
        *,
        state_dir: Path,
        alerts: AlertBook | None = None,
        started_monotonic: float | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.journal = journal
        self.signing_key = signing_key if signing_key is not None else load_signing_key(state_dir)
        """The device key of an enrolled terminal (``<state dir>/signing.key``): every batch
        is signed with it. None: batches go unsigned (a tokens-file or open-mode terminal)."""
        self.client = client
        self.settings = settings
        self.state_dir = state_dir
        self.alerts = alerts or AlertBook(journal)
        self.state = SyncState.load(journal)
        self.state.backoffice = client.base_url
        self.started = started_monotonic or time.monotonic()
        self._batch_events = settings.batch_events
        self._last_rewind: int | None = None
        self.tick: Callable[[], None] = lambda: None
        """Called at least once a second while draining or waiting (liveness for a watchdog)."""
        self._retry_now = threading.Event()
        self.resends = ResendRequests(journal, self.alerts)
        """``resend_from`` of heartbeat replies, applied before the next batch (.resend)."""

    def retry_now(self) -> None:
        """End the current wait between tries (e.g. the token was fixed by a reload)."""
        self._retry_now.set()

    # ------------------------------------------------------------ one batch
    def push_batch(self) -> Batch | None:
        """Send the next batch once; return it when acknowledged, None when no backlog.

        Raises SyncError subclasses; a Rewind moves the cursor and is re-raised
        so the caller counts it (the next call resends from the new cursor).
        """
        self.resends.apply()
        acked = self.journal.acked_seq()
        batch = next_batch(
            self.journal,
            self.client.terminal,
            acked,
            self._batch_events,
            self.settings.batch_bytes_n,
            self.signing_key,
        )
        if batch is None:
            return None
        try:
            reply = self.client.post_events(batch.body, batch.first_seq, batch.last_seq)
        except Rewind as rewind:
            self._rewind(rewind, batch)
            raise
        except BackofficeRejected as exc:
            if exc.status == 413 and self._batch_events > 1:
                self._batch_events = max(1, batch.count // 2)
                log.warning("batch too large; halving", extra={"batch_events": self._batch_events})
            raise
        # Only acked_seq matters here; other fields may come and go between versions.
        server_acked = reply.body.get("acked_seq")
        if not isinstance(server_acked, int) or isinstance(server_acked, bool):
            raise BackofficeRejected(
                "back office acknowledged without an integer acked_seq; the cursor stays",
                status=reply.status,
            )
        self._advance(server_acked, batch)
        return batch

    def _advance(self, server_acked: int, batch: Batch) -> None:
        head = self.journal.head().seq
        if server_acked > head:
            self.alerts.raise_(
                ALERT_HISTORY,
                f"back office holds events through seq {server_acked} but the journal ends at "
                f"seq {head}: the journal's tail may have been lost or restored from a backup",
            )
        new_cursor = min(server_acked, head)
        self._last_rewind = None
        self.state.last_success = utc_now_iso()
        self.state.consecutive_failures = 0
        self.state.next_retry_at = None
        self.state.last_skew_s = self.client.last_skew_s
        self.state.last_acked_seq = new_cursor
        self.journal.set_acked(new_cursor, meta={STATE_KEY: self.state.dump()})
        self.alerts.clear(ALERT_REJECTED)

    def _rewind(self, rewind: Rewind, batch: Batch) -> None:
        target = rewind.expected_seq - 1
        checkpoint = self.journal.latest_checkpoint()
        floor = checkpoint.seq if checkpoint else 0
        head = self.journal.head().seq
        if target < floor or target > head or self._last_rewind == rewind.expected_seq:
            reason = (
                f"back office needs seq {rewind.expected_seq} ({rewind.problem_type}) but "
                f"the journal holds seqs {floor + 1}..{head}"
                if not floor <= target <= head
                else f"back office keeps asking for seq {rewind.expected_seq} "
                f"({rewind.problem_type}); the two sides disagree about history"
            )
            self.alerts.raise_(ALERT_HISTORY, reason)
            raise BackofficeRejected(reason, status=409, problem_type=rewind.problem_type)
        log.info(
            "rewinding sync cursor",
            extra={"from_seq": batch.first_seq, "to_seq": rewind.expected_seq},
        )
        self._last_rewind = rewind.expected_seq
        self.journal.set_acked(target)

    # ------------------------------------------------------------ draining
    def drain(
        self,
        *,
        stop: threading.Event | None = None,
        max_attempts: int | None = None,
        max_wait_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> DrainReport:
        """Push batches until the backlog is acknowledged (or stop / attempts run out).

        The daemon calls it with no limits: it retries forever, transient
        failures with backoff, rejections slowly. The CLI's ``sync now`` bounds
        consecutive failed attempts per batch (``max_attempts``) and each wait
        (``max_wait_s``), and gives up at once on a rejection.
        """
        stop = stop or threading.Event()
        report = DrainReport()
        retrying = self._retrying(stop, max_attempts, max_wait_s)
        while not stop.is_set():
            try:
                batch = retrying(self._push_counting_rewinds, report)
            except SyncError as exc:
                self._note_failure_exc(exc)
                report.errors.append(str(exc))
                report.rejected = isinstance(exc, BackofficeRejected)
                break
            if batch is None:
                report.complete = True
                break
            self.tick()
            report.batches += 1
            report.sent_events += batch.count
            if progress:
                progress(self.journal.acked_seq(), self.journal.head().seq)
        report.acked_seq = self.journal.acked_seq()
        report.head_seq = self.journal.head().seq
        report.complete = report.complete and report.acked_seq >= report.head_seq
        return report

    def _retrying(
        self, stop: threading.Event, max_attempts: int | None, max_wait_s: float | None
    ) -> Retrying:
        """The retry policy: transient failures back off (Retry-After honoured); with
        ``max_attempts`` (interactive use) a rejection is not retried."""
        interactive = max_attempts is not None
        wait = wait_retry_after_or_jitter(
            self.settings.seconds("backoff_initial"),
            self.settings.seconds("backoff_cap"),
            self.settings.seconds("retry_after_cap"),
            self.settings.seconds("permanent_retry"),
        )
        return Retrying(
            retry=retry_if_exception(
                lambda exc: (
                    isinstance(exc, SyncError)
                    and not (interactive and isinstance(exc, BackofficeRejected))
                )
            ),
            wait=wait if max_wait_s is None else _capped_wait(wait, max_wait_s),
            stop=_stop_when(stop, max_attempts),
            sleep=lambda seconds: _interruptible_sleep(stop, seconds, self.tick, self._retry_now),
            before_sleep=self._note_failure,
            reraise=True,
        )

    def check_link(
        self,
        *,
        max_attempts: int,
        max_wait_s: float,
        extra: dict[str, Any] | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Prove the back office answers: send one heartbeat, retrying transient failures
        like ``drain(max_attempts=…, max_wait_s=…)``; the back office's reply.

        ``posedge sync now`` calls it even with nothing to upload, so a technician can
        test the link. Raises the last SyncError (recorded in the sync state like a
        failed upload; a rejection raises the sync alert).
        """
        retrying = self._retrying(stop or threading.Event(), max_attempts, max_wait_s)
        try:
            reply: dict[str, Any] = retrying(self.send_heartbeat, extra)
        except SyncError as exc:
            self._note_failure_exc(exc)
            raise
        return reply

    def _push_counting_rewinds(self, report: DrainReport) -> Batch | None:
        try:
            return self.push_batch()
        except Rewind:
            report.rewinds += 1
            return self.push_batch()  # resend from the rewound cursor at once

    def _note_failure(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = retry_state.upcoming_sleep
        if isinstance(exc, SyncError):
            self._note_failure_exc(exc, wait)

    def _note_failure_exc(self, exc: SyncError, wait_s: float | None = None) -> None:
        self.state.last_error = str(exc)
        self.state.last_error_at = utc_now_iso()
        self.state.consecutive_failures += 1
        self.state.next_retry_at = (
            None
            if wait_s is None
            else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + wait_s))
        )
        if isinstance(exc, BackofficeRejected):
            self.alerts.raise_(ALERT_REJECTED, str(exc), status=exc.status)
        log.warning(
            "sync attempt failed",
            extra={"error": str(exc), "retry_in_s": None if wait_s is None else round(wait_s, 3)},
        )
        try:
            self.journal.set_meta(STATE_KEY, self.state.dump())
        except JournalError as journal_exc:  # status display only; the data is safe
            log.warning("cannot record sync state", extra={"error": str(journal_exc)})

    # ------------------------------------------------------------ heartbeat
    def heartbeat_document(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """DESIGN §6 heartbeat fields; ``extra`` supplies devices, exposure, in-doubt."""
        head = self.journal.head()
        unsynced, oldest_age_s = self.journal.backlog()
        disk = shutil.disk_usage(self.state_dir)
        doc: dict[str, Any] = {
            "terminal": self.client.terminal,
            "sent_at": utc_now_iso(),
            "agent_version": agent_version(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "devices": {},
            "journal_head": {"seq": head.seq, "hash": head.hash},
            "unsynced_count": unsynced,
            "oldest_unsynced_age_s": oldest_age_s,
            "offline_exposure": {},
            "in_doubt_count": 0,
            "disk_free_bytes": disk.free,
            "active_alerts": self.alerts.as_list(),
            "clock_skew_s": self.client.last_skew_s,
        }
        doc.update(extra or {})
        if self.resends.last is not None:
            doc["resend"] = self.resends.last.as_dict()
        # Through the protocol's model: a field the back office would refuse fails here.
        return Heartbeat.model_validate(doc).model_dump(mode="json")

    def send_heartbeat(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one heartbeat; returns the back office's reply body."""
        reply = self.client.heartbeat(self.heartbeat_document(extra))
        self.resends.request(reply.body)
        return reply.body


def _stop_when(stop: threading.Event, max_attempts: int | None) -> stop_base:
    class _StopEvent(stop_base):
        def __call__(self, retry_state: RetryCallState) -> bool:
            return stop.is_set()

    if max_attempts is None:
        return _StopEvent() | stop_never
    return _StopEvent() | stop_after_attempt(max_attempts)


def _capped_wait(inner: wait_base, cap_s: float) -> wait_base:
    class _Capped(wait_base):
        def __call__(self, retry_state: RetryCallState) -> float:
            return min(cap_s, float(inner(retry_state)))

    return _Capped()


def _interruptible_sleep(
    stop: threading.Event, seconds: float, tick: Callable[[], None], wake: threading.Event
) -> None:
    """Wait ``seconds`` (or until stopped or woken), ticking every second."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        tick()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or wake.is_set():
            wake.clear()
            return
        stop.wait(min(remaining, 0.25))


__all__ = [
    "BackofficeUnreachable",
    "DrainReport",
    "SyncService",
    "SyncState",
]
