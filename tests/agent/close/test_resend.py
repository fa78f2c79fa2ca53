"""``resend_from`` in the heartbeat reply, against the real back office: a close whose seqs
the back office lost is reconciled there, the reply asks for them, the agent re-uploads
them in order (or journals and reports that they were pruned)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posedge.agent.close.closer import Closer
from posedge.agent.config import Config
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService
from posedge.agent.sync.resend import ALERT_RESEND_PRUNED
from posedge.backoffice.closes.reconciler import reconcile_open
from posedge.backoffice.server import BackofficeServer
from posedge.backoffice.store import BackofficeStore

TERMINAL = "resend-1"
FAST_SYNC = {"backoff_initial": "20ms", "backoff_cap": "100ms", "connect_timeout": "1s"}


@dataclass
class Lane:
    journal: Journal
    sync: SyncService
    closer: Closer
    bo: BackofficeServer

    @property
    def store(self) -> BackofficeStore:
        assert self.bo.store is not None
        return self.bo.store

    def upload(self) -> None:
        report = self.sync.drain(stop=threading.Event(), max_attempts=5, max_wait_s=1.0)
        assert report.complete, report

    def held(self) -> list[int]:
        return [int(e["seq"]) for e in self.store.events(TERMINAL)]

    def lose(self, *seqs: int) -> None:
        """Rows lost at the back office; its reconciliation of the close then finds them."""
        with self.store.transaction() as tx:
            for seq in seqs:
                tx.execute("DELETE FROM events WHERE terminal = ? AND seq = ?", (TERMINAL, seq))
        reconcile_open(self.store, everything=True)

    def resends(self) -> list[dict[str, object]]:
        return [e.payload for e in self.journal.iter_events() if e.type == "sync.resend"]


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[Lane]:
    config = Config.model_validate({"terminal": {"id": TERMINAL}, "sync": FAST_SYNC})
    state = tmp_path / "till"
    with BackofficeServer(tmp_path / "bo.sqlite3") as bo:
        journal = Journal.open(state)
        client = BackofficeClient(bo.url, TERMINAL, config.sync)
        sync = SyncService(journal, client, config.sync, state_dir=state)
        now = datetime(2026, 3, 29, 20, 0, tzinfo=UTC)
        closer = Closer(journal, lambda: config, terminal=TERMINAL, clock=lambda: now)
        try:
            for n in range(8):
                journal.append("technician.note", {"text": f"note {n}"})
            closer.close(None)
            yield Lane(journal, sync, closer, bo)
        finally:
            client.close()
            journal.close()


def test_missing_seqs_are_asked_for_and_uploaded_again_in_order(lane: Lane) -> None:
    lane.upload()
    head = lane.journal.head().seq
    assert lane.held() == list(range(1, head + 1))
    lane.lose(3, 4, 5)
    assert lane.held() == [1, 2, *range(6, head + 1)]

    reply = lane.sync.send_heartbeat()
    assert reply["resend_from"] == 3
    lane.upload()  # applies the request first: cursor back to 2, seqs from 3 sent again
    [resend] = lane.resends()
    assert resend == {"from_seq": 3, "outcome": "rewound", "acked_before": head,
                      "oldest_seq": 1, "head_seq": head}  # fmt: skip
    final_head = lane.journal.head().seq  # the sync.resend event itself came after
    assert lane.held() == list(range(1, final_head + 1))
    assert lane.journal.acked_seq() == final_head
    assert "resend_from" not in lane.sync.send_heartbeat()  # reconciled again
    assert lane.sync.heartbeat_document()["resend"]["outcome"] == "rewound"
    lane.upload()
    assert len(lane.resends()) == 1  # handled once


def test_a_request_for_pruned_seqs_is_journaled_and_reported(lane: Lane) -> None:
    lane.upload()
    assert lane.journal.prune(0, now=time.time() + 3600) is not None
    oldest = lane.journal.latest_checkpoint().seq + 1  # type: ignore[union-attr]
    lane.upload()  # the checkpoint event
    acked = lane.journal.acked_seq()
    lane.lose(3)
    assert lane.sync.send_heartbeat()["resend_from"] == 3
    lane.upload()
    [resend] = lane.resends()
    assert resend["outcome"] == "pruned" and resend["oldest_seq"] == oldest
    assert ALERT_RESEND_PRUNED in lane.sync.alerts.active()
    assert lane.journal.acked_seq() >= acked  # the cursor was not moved back
    report = lane.sync.heartbeat_document()["resend"]
    assert report["outcome"] == "pruned" and report["from_seq"] == 3
    lane.sync.send_heartbeat()
    lane.upload()
    assert len(lane.resends()) == 1  # the same answer is not journaled again


def test_requests_the_agent_cannot_or_need_not_honour(lane: Lane) -> None:
    resends = lane.sync.resends
    head = lane.journal.head().seq
    for malformed in ({"resend_from": True}, {"resend_from": "3"}, {"resend_from": 0}, {}):
        assert resends.request(malformed) is None
    assert resends.apply() is None
    resends.request({"resend_from": 2})  # nothing uploaded yet: it goes up anyway
    outcome = resends.apply()
    assert outcome is not None and outcome.outcome == "not_sent_yet"
    assert lane.journal.acked_seq() == 0 and lane.resends() == []
    lane.upload()
    resends.request({"resend_from": head + 100})
    outcome = resends.apply()
    assert outcome is not None and outcome.outcome == "beyond_head"
    assert [r["outcome"] for r in lane.resends()] == ["beyond_head"]
