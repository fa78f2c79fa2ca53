"""A simulated terminal's events: the agent's hash chain, the agent's event types and payloads,
no card data, protocol-valid batches (signed) and heartbeats, offline sales and forwards."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.carddata import find_card_data
from posedge.agent.journal import Journal, verify_journal
from posedge.agent.journal.canonical import canonical_json
from posedge.agent.sales.authorizer import authorization_request
from posedge.agent.sales.engine import request_hash
from posedge.agent.sales.model import SaleRequest
from posedge.protocol.models import ZERO_HASH, EventBatch, Heartbeat
from posedge.protocol.signing import verify_batch
from posedge.simulator.fleet.faults import parse_fault
from posedge.simulator.fleet.history import simulate_terminal
from posedge.simulator.fleet.model import build_fleet
from posedge.simulator.fleet.terminal import SimTerminal

REPO = Path(__file__).resolve().parents[3]
START = datetime(2026, 2, 2, 6, tzinfo=UTC)  # a Monday morning
FLEET = build_fleet(4, 1, seed=21, hours="convenience")
LANE = "store001-lane01"


def events_of(sim: SimTerminal) -> list[dict[str, Any]]:
    events = sim.events()
    assert events == [json.loads(row.text) for row in sim.backlog]
    return events


def agent_event_types() -> set[str]:
    """Every event type the agent's code journals (its append calls, their literal type)."""
    pattern = re.compile(r'(?:_append|_journal|\bappend|_end)\(\s*(?:txn,\s*)?"([a-z_]+\.[a-z_]+)"')
    found: set[str] = set()
    for path in [*(REPO / "agent" / "sales").glob("*.py"), REPO / "agent" / "service.py"]:
        found |= set(pattern.findall(path.read_text()))
    return found


@pytest.fixture(scope="module")
def day() -> SimTerminal:
    return simulate_terminal(FLEET, LANE, START, START + timedelta(hours=16))


def test_the_chain_verifies_with_the_agents_journal_verifier(
    day: SimTerminal, tmp_path: Path
) -> None:
    assert day.head_seq > 300
    # The journal file the agent would have written: its device key, its schema, these rows.
    (tmp_path / "device.key").write_bytes(day.device_key.raw)
    os.chmod(tmp_path / "device.key", 0o600)
    Journal.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "journal.db")
    with db:
        db.executemany(
            "INSERT INTO events (seq, ts, type, txn, payload, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e["seq"], e["ts"], e["type"], e["txn"], canonical_json(e["payload"]),
                 e["prev_hash"], e["hash"])
                for e in events_of(day)
            ],
        )  # fmt: skip
    db.close()
    with Journal.open(tmp_path, readonly=True) as journal:
        result = verify_journal(journal)
        assert result.ok, result.problem
        assert result.events == day.head_seq and result.head_hash == day.head_hash
        # A tampered copy fails the same verifier: the check has teeth.
    db = sqlite3.connect(tmp_path / "journal.db")
    with db:
        db.execute("DROP TRIGGER events_no_update")
        db.execute(
            "UPDATE events SET payload = replace(payload, '\"amount\":', '\"amount\":1')"
            " WHERE seq = (SELECT min(seq) FROM events WHERE type = 'sale.created')"
        )
    db.close()
    with Journal.open(tmp_path, readonly=True) as journal:
        broken = verify_journal(journal)
    assert not broken.ok and broken.problem is not None and broken.problem.kind == "modified"


def test_events_are_the_agents_types_with_the_agents_payloads(day: SimTerminal) -> None:
    events = events_of(day)
    types = Counter(e["type"] for e in events)
    assert set(types) <= agent_event_types(), set(types) - agent_event_types()
    assert events[0]["type"] == "agent.started" and events[0]["prev_hash"] == ZERO_HASH
    for name in ("sale.created", "card.read", "auth.requested", "auth.approved",
                 "receipt.printing", "receipt.printed"):  # fmt: skip
        assert types[name] > 100, name
    by_txn: dict[str, list[dict[str, Any]]] = {}
    for event in events[1:]:
        by_txn.setdefault(event["txn"], []).append(event)
    for txn, sale in by_txn.items():
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", txn)
        created = sale[0]["payload"]
        assert sale[0]["type"] == "sale.created"
        request = SaleRequest(created["amount"], created["currency"], created["reference"])
        assert created["request_hash"] == request_hash(request)
        requested = [e for e in sale if e["type"] == "auth.requested"]
        if requested:
            card = next(e for e in sale if e["type"] == "card.read")["payload"]
            body = requested[0]["payload"]["request"]
            assert body == authorization_request(
                terminal=LANE, txn=txn, attempt=f"{txn}:online", amount=created["amount"],
                currency=created["currency"], entry_mode="swipe", masked_pan=card["masked_pan"],
                brand=card["brand"], pan_token=card["pan_token"], forwarded=False,
            )  # fmt: skip
        # Time runs forward inside a sale and the sale ends in a final event.
        assert [e["ts"] for e in sale] == sorted(e["ts"] for e in sale)
        assert sale[-1]["type"] in ("receipt.printed", "sale.cancelled", "sale.abandoned")


def test_no_card_data_anywhere(day: SimTerminal) -> None:
    for event in events_of(day):
        assert not find_card_data(event), event
    assert not find_card_data(day.heartbeat(START.timestamp() + 3600))


def test_batches_are_valid_protocol_documents_and_signed(day: SimTerminal) -> None:
    signed = simulate_terminal(FLEET, LANE, START, START + timedelta(hours=16), sign=True)
    batch = signed.next_batch(200)
    assert batch is not None
    doc = EventBatch.model_validate_json(batch.body)
    assert (doc.first_seq, doc.last_seq, len(doc.events)) == (1, 200, 200)
    assert batch.idempotency_key == f"{LANE}:1-200"
    assert doc.signature is not None and signed.public_key is not None
    assert verify_batch(signed.public_key, doc.signature, LANE, 1, 200, doc.events[-1].hash)
    assert not verify_batch(signed.public_key, doc.signature, LANE, 1, 199, doc.events[-1].hash)
    # Unsigned terminals send no signature; the events are the same chain.
    unsigned = day.next_batch(200)
    assert unsigned is not None
    plain = EventBatch.model_validate_json(unsigned.body)
    assert plain.signature is None
    assert [e.hash for e in plain.events] == [e.hash for e in doc.events]


def test_acknowledge_and_rewind_move_the_cursor_like_the_agent() -> None:
    sim = simulate_terminal(FLEET, LANE, START, START + timedelta(hours=1))
    head = sim.head_seq
    assert sim.acknowledge(10) == 10 and sim.acked_seq == 10 and sim.unsynced == head - 10
    batch = sim.next_batch(5)
    assert batch is not None and (batch.first_seq, batch.last_seq) == (11, 15)
    assert sim.rewind(14)  # the back office holds more than we knew: resend from 14
    assert sim.next_batch(1).first_seq == 14  # type: ignore[union-attr]
    assert not sim.rewind(5)  # already dropped here: cannot resend, never skip silently
    assert not sim.rewind(head + 2)
    assert sim.acknowledge(head + 50) == head - 13 and sim.acked_seq == head  # never past head


def test_heartbeat_document_is_a_valid_heartbeat() -> None:
    sim = simulate_terminal(FLEET, LANE, START, START + timedelta(hours=1))
    now = START.timestamp() + 3600
    doc = sim.heartbeat(now)
    Heartbeat.model_validate(doc)
    assert doc["journal_head"] == {"seq": sim.head_seq, "hash": sim.head_hash}
    assert doc["unsynced_count"] == sim.head_seq
    assert doc["oldest_unsynced_age_s"] == pytest.approx(3600, abs=1)
    sim.acknowledge(sim.head_seq)
    assert sim.heartbeat(now)["unsynced_count"] == 0
    assert sim.heartbeat(now)["oldest_unsynced_age_s"] is None


def test_network_down_sales_go_offline_and_are_forwarded_when_it_returns() -> None:
    start = START.timestamp()
    fault = parse_fault("network-down:store001@+2h/1h", FLEET, start)
    sim = simulate_terminal(FLEET, LANE, start, start + 4 * 3600, [fault])
    events = events_of(sim)
    outage = (start + 2 * 3600, start + 3 * 3600)

    def at(event: dict[str, Any]) -> float:
        return datetime.fromisoformat(event["ts"]).timestamp()

    inside = [e for e in events if outage[0] <= at(e) < outage[1]]
    outside = [e for e in events if not outage[0] <= at(e) < outage[1] + 600]
    offline = [e for e in inside if e["type"] == "offline.approved"]
    assert offline and not [e for e in inside if e["type"] == "auth.approved"]
    assert not [e for e in outside if e["type"] in ("offline.approved", "auth.unavailable")]
    forwards = [e for e in events if e["type"] == "forward.approved"]
    assert {e["txn"] for e in forwards} == {e["txn"] for e in offline}
    assert all(at(e) >= outage[1] for e in forwards)
    requested = [e for e in events if e["type"] == "forward.requested"]
    assert all(e["payload"]["request"]["forwarded"] is True for e in requested)
    assert not sim.forwards


def test_same_seed_same_chain() -> None:
    a = simulate_terminal(FLEET, LANE, START, START + timedelta(hours=3))
    b = simulate_terminal(FLEET, LANE, START, START + timedelta(hours=3))
    other = simulate_terminal(build_fleet(4, 1, seed=22, hours="convenience"), LANE, START,
                              START + timedelta(hours=3))  # fmt: skip
    assert a.head_hash == b.head_hash and a.head_seq == b.head_seq
    assert other.head_hash != a.head_hash
