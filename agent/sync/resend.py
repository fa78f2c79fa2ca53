"""The back office asks for events again: ``resend_from`` in the heartbeat reply.

docs/sync-protocol.md ("Resend"): a reply carrying ``resend_from: S`` asks the terminal to
upload its events again from seq S (the back office found seqs missing while reconciling a
close). The heartbeat thread only records the request (:meth:`ResendRequests.request`); the
upload thread applies it before its next batch (:meth:`ResendRequests.apply`), so the sync
cursor keeps one writer:

- ``floor < S ≤ acked`` (``floor``: the last pruned seq, 0 when none): ``sync.resend`` is
  journaled (outcome ``rewound``), then the cursor moves back to S − 1 and the uploader
  sends from S in order, as after a rewind;
- ``S ≤ floor``: those events were pruned: ``sync.resend`` (outcome ``pruned``, with the
  oldest seq still held) is journaled, the alert ``sync_resend_pruned`` raised, the cursor
  untouched;
- ``acked < S ≤ head``: not sent yet (outcome ``not_sent_yet``): the upload brings them;
  nothing is journaled;
- ``S > head``: the journal never had them (outcome ``beyond_head``): journaled, nothing else.

The same S is not applied again while its re-upload is under way (the cursor has not yet
passed the head it had when rewound), and an outcome already journaled for S is not
journaled twice in a row. The latest outcome goes into each heartbeat as ``resend``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

from ..alerts import AlertBook
from ..journal import Journal

log = logging.getLogger("posedge.sync")

RESEND_EVENT = "sync.resend"
ALERT_RESEND_PRUNED = "sync_resend_pruned"
Outcome = Literal["rewound", "pruned", "not_sent_yet", "beyond_head"]


@dataclass(frozen=True)
class ResendOutcome:
    from_seq: int
    outcome: Outcome
    acked_before: int
    oldest_seq: int
    """The oldest seq the journal still holds (after the last pruning)."""
    head_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_seq": self.from_seq,
            "outcome": self.outcome,
            "acked_before": self.acked_before,
            "oldest_seq": self.oldest_seq,
            "head_seq": self.head_seq,
        }


class ResendRequests:
    """Requests from heartbeat replies, applied by the uploader."""

    def __init__(self, journal: Journal, alerts: AlertBook) -> None:
        self.journal = journal
        self.alerts = alerts
        self.last: ResendOutcome | None = None
        """The latest request's outcome (reported in the heartbeat)."""
        self._lock = threading.Lock()
        self._requested: int | None = None
        self._in_progress: tuple[int, int] | None = None
        """(from seq, head when rewound) of the re-upload under way."""
        self._journaled: tuple[int, str] | None = None

    def request(self, reply: dict[str, Any]) -> int | None:
        """Record the ``resend_from`` of a heartbeat reply (absent or malformed: ignored)."""
        value = reply.get("resend_from")
        if value is None:
            return None
        if type(value) is not int or value < 1:
            log.warning("heartbeat reply: resend_from is not a seq; ignored")
            return None
        with self._lock:
            self._requested = value
        self.journal.wake_append_waiters()  # the idle uploader applies it now
        return value

    def apply(self) -> ResendOutcome | None:
        """Apply the recorded request (the upload thread, before a batch)."""
        with self._lock:
            seq, self._requested = self._requested, None
        if seq is None:
            return None
        acked = self.journal.acked_seq()
        running = self._in_progress
        if running is not None and running[0] == seq and acked < running[1]:
            return None  # that re-upload is still going
        head = self.journal.head().seq
        checkpoint = self.journal.latest_checkpoint()
        floor = checkpoint.seq if checkpoint is not None else 0
        outcome: Outcome
        if seq > head:
            outcome = "beyond_head"
        elif seq > acked:
            outcome = "not_sent_yet"
        elif seq <= floor:
            outcome = "pruned"
        else:
            outcome = "rewound"
        result = ResendOutcome(seq, outcome, acked, floor + 1, head)
        if outcome != "not_sent_yet" and (
            outcome == "rewound" or self._journaled != (seq, outcome)
        ):
            self.journal.append(RESEND_EVENT, result.as_dict())  # before the cursor moves
            self._journaled = (seq, outcome)
        if outcome == "rewound":
            self.journal.set_acked(seq - 1)
            self._in_progress = (seq, head)
            log.info("resending events on request", extra={"from_seq": seq, "acked": acked})
        if outcome == "pruned":
            self.alerts.raise_(
                ALERT_RESEND_PRUNED,
                f"the back office asks for events from seq {seq} again, but the journal "
                f"holds seqs from {floor + 1} only (older ones were pruned after they were "
                "acknowledged); they cannot be sent again",
                from_seq=seq,
                oldest_seq=floor + 1,
            )
        elif outcome == "rewound":
            self.alerts.clear(ALERT_RESEND_PRUNED)
        else:
            log.warning("resend request not applied", extra={"from_seq": seq, "why": outcome})
        self.last = result
        return result
