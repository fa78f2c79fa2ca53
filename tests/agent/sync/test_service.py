"""SyncService logic with scripted back-office answers (httpx.MockTransport).

End-to-end behaviour against the real reference back office is in tests/e2e.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.agent.alerts import AlertBook
from posedge.agent.config import SyncConfig
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService
from posedge.agent.sync.batch import next_batch

FAST = {"backoff_initial": "10ms", "backoff_cap": "20ms", "permanent_retry": "1s"}


def body_of(request: httpx.Request) -> dict[str, Any]:
    raw = request.content
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    result: dict[str, Any] = json.loads(raw)
    return result


class Ledger:
    """A minimal back office: holds seqs in order, answers gaps with 409."""

    def __init__(self) -> None:
        self.held: dict[int, str] = {}
        self.requests = 0
        self.script: list[Callable[[httpx.Request], httpx.Response | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.script:
            answer = self.script.pop(0)(request)
            if answer is not None:
                return answer
        if request.url.path.endswith("/heartbeat"):
            return httpx.Response(200, json={"interval_s": 60})
        doc = body_of(request)
        top = max(self.held, default=0)
        for event in doc["events"]:
            seq = event["seq"]
            if seq in self.held:
                continue
            if seq != top + 1:
                return httpx.Response(
                    409,
                    json={
                        "type": "https://posedge.dev/problems/sequence-gap",
                        "expected_seq": top + 1,
                        "acked_seq": top,
                    },
                )
            self.held[seq] = event["hash"]
            top = seq
        return httpx.Response(200, json={"acked_seq": top})


def service(journal: Journal, ledger: Ledger, tmp_path: Path, **settings: Any) -> SyncService:
    config = SyncConfig.model_validate(FAST | settings)
    client = BackofficeClient(
        "https://bo.test", "lane-1", config, transport=httpx.MockTransport(ledger)
    )
    return SyncService(journal, client, config, state_dir=tmp_path)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    jr = Journal.open(tmp_path / "state")
    for number in range(250):
        jr.append("test.event", {"n": number, "pad": "p" * 50}, txn=f"t{number // 5}")
    return jr


def test_drain_sends_everything_in_order_and_moves_the_cursor(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = Ledger()
    svc = service(journal, ledger, tmp_path, batch_events=40)
    seen: list[int] = []
    report = svc.drain(progress=lambda acked, head: seen.append(acked))
    assert report.complete and report.acked_seq == 250 and report.batches == 7
    assert sorted(ledger.held) == list(range(1, 251))
    assert journal.acked_seq() == 250
    assert seen == [40, 80, 120, 160, 200, 240, 250]


def test_batches_respect_the_byte_bound(journal: Journal) -> None:
    batch = next_batch(journal, "lane-1", 0, 1000, 4096)
    assert batch is not None and 1 <= batch.count < 250
    assert len(batch.body) <= 4096
    doc = json.loads(batch.body)
    assert doc["first_seq"] == 1 and doc["last_seq"] == batch.count == len(doc["events"])
    assert doc["events"][0]["payload"] == {"n": 0, "pad": "p" * 50}


def test_cursor_moves_only_on_acknowledgement(journal: Journal, tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.script = [lambda request: httpx.Response(500)] * 3
    svc = service(journal, ledger, tmp_path, batch_events=100)
    report = svc.drain(max_attempts=3)
    assert not report.complete and journal.acked_seq() == 0
    assert svc.state.consecutive_failures >= 3 and "500" in (svc.state.last_error or "")
    report = svc.drain(max_attempts=3)
    assert report.complete and journal.acked_seq() == 250


def test_gap_answer_rewinds_and_resends_without_skipping(journal: Journal, tmp_path: Path) -> None:
    ledger = Ledger()
    svc = service(journal, ledger, tmp_path, batch_events=50)
    assert svc.drain().complete
    # The back office lost everything after seq 120 (restored from a backup).
    ledger.held = {seq: digest for seq, digest in ledger.held.items() if seq <= 120}
    for number in range(10):
        journal.append("test.more", {"n": number})
    report = svc.drain()
    assert report.complete and report.rewinds == 1
    assert sorted(ledger.held) == list(range(1, 261))


def test_too_large_halves_the_batch(journal: Journal, tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.script = [lambda r: httpx.Response(413, json={"type": "x/too-large"})]
    svc = service(journal, ledger, tmp_path, batch_events=200)
    assert svc.drain().complete
    assert svc._batch_events == 100


def test_permanent_rejection_alerts_once_keeps_data_and_recovers(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = Ledger()
    forbidden = httpx.Response(
        403, json={"type": "https://posedge.dev/problems/forbidden", "detail": "wrong token"}
    )
    ledger.script = [lambda r: forbidden] * 2
    svc = service(journal, ledger, tmp_path, batch_events=100)
    report = svc.drain(max_attempts=3)
    assert report.rejected and journal.acked_seq() == 0 and ledger.requests == 1
    assert "sync_rejected" in AlertBook(journal).active()
    report = svc.drain(max_attempts=3)  # still rejected: no second alert event
    raised = [e for e in journal.iter_events() if e.type == "alert.raised"]
    assert len(raised) == 1 and raised[0].payload["status"] == 403
    report = svc.drain(max_attempts=3)
    assert report.complete
    assert "sync_rejected" not in AlertBook(journal).active()
    assert any(e.type == "alert.cleared" for e in journal.iter_events())


def test_daemon_mode_retries_rejections_slowly_until_stopped(
    journal: Journal, tmp_path: Path
) -> None:
    ledger = Ledger()
    stop = threading.Event()

    def reject_then_stop(request: httpx.Request) -> httpx.Response:
        if ledger.requests >= 2:
            stop.set()
        return httpx.Response(401, json={"type": "https://posedge.dev/problems/unauthorized"})

    ledger.script = [reject_then_stop] * 10
    svc = service(journal, ledger, tmp_path, permanent_retry="100ms")
    report = svc.drain(stop=stop)
    assert ledger.requests == 2 and not report.complete
    assert journal.acked_seq() == 0


def test_back_office_ahead_of_the_journal_raises_an_alert(journal: Journal, tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.script = [lambda r: httpx.Response(200, json={"acked_seq": 999})]
    svc = service(journal, ledger, tmp_path)
    svc.push_batch()
    assert journal.acked_seq() == 250  # capped at what the journal held when acknowledged
    assert "sync_history_mismatch" in AlertBook(journal).active()


def test_heartbeat_document_has_the_design_fields(journal: Journal, tmp_path: Path) -> None:
    ledger = Ledger()
    svc = service(journal, ledger, tmp_path)
    doc = svc.heartbeat_document({"in_doubt_count": 2})
    for key in (
        "agent_version", "uptime_s", "devices", "journal_head", "unsynced_count",
        "oldest_unsynced_age_s", "offline_exposure", "in_doubt_count", "disk_free_bytes",
        "active_alerts",
    ):  # fmt: skip
        assert key in doc
    assert doc["journal_head"]["seq"] == 250 and doc["unsynced_count"] == 250
    assert doc["in_doubt_count"] == 2
    assert svc.send_heartbeat() == {"interval_s": 60}
