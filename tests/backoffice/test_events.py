"""Events upload over real HTTP: order, duplicates, gaps, chain, conflicts, partial success."""

from __future__ import annotations

import gzip
import json

import httpx

from posedge.simulator.backoffice import BackofficeServer

from .helpers import ZERO, batch, chain, events_url

PROBLEM = "https://posedge.dev/problems/"


def test_batches_in_order_are_stored_and_head_advances(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    assert client.get(f"{events_url()}/head").json() == {"acked_seq": 0, "head_hash": None}
    events = chain(10)
    for part in (events[:4], events[4:]):
        reply = client.post(events_url(), json=batch(part))
        assert reply.status_code == 200, reply.text
        assert reply.headers["date"]
    body = reply.json()
    assert body == {
        "acked_seq": 10,
        "accepted": 6,
        "duplicates": 0,
        "head_hash": events[-1]["hash"],
    }
    assert client.get(f"{events_url()}/head").json()["acked_seq"] == 10
    assert bo.store is not None
    assert [e["seq"] for e in bo.store.events("lane1")] == list(range(1, 11))
    assert bo.store.held_integrity("lane1") == {"events": 10, "missing_seqs": 0, "chain_breaks": 0}


def test_replay_is_absorbed_as_duplicates(client: httpx.Client) -> None:
    events = chain(5)
    client.post(events_url(), json=batch(events))
    reply = client.post(events_url(), json=batch(events))
    assert reply.status_code == 200
    assert reply.json()["accepted"] == 0 and reply.json()["duplicates"] == 5
    # Overlapping batch: old part absorbed, new part stored.
    more = chain(3, start=6, prev=events[-1]["hash"])
    reply = client.post(events_url(), json=batch(events[3:] + more))
    assert reply.json() == {
        "acked_seq": 8,
        "accepted": 3,
        "duplicates": 2,
        "head_hash": more[-1]["hash"],
    }


def test_gap_is_409_naming_the_expected_seq(client: httpx.Client) -> None:
    events = chain(10)
    client.post(events_url(), json=batch(events[:3]))
    reply = client.post(events_url(), json=batch(events[5:]))
    assert reply.status_code == 409
    assert reply.headers["content-type"] == "application/problem+json"
    doc = reply.json()
    assert doc["type"] == PROBLEM + "sequence-gap"
    assert (doc["expected_seq"], doc["acked_seq"]) == (4, 3)
    assert doc["instance"] == events_url()
    assert "expected seq 4" in doc["detail"]


def test_first_event_must_continue_the_held_chain(client: httpx.Client) -> None:
    events = chain(6)
    client.post(events_url(), json=batch(events[:3]))
    forged = chain(3, start=4, prev="f" * 64)
    reply = client.post(events_url(), json=batch(forged))
    assert reply.status_code == 409
    doc = reply.json()
    assert doc["type"] == PROBLEM + "chain-mismatch"
    assert (doc["acked_seq"], doc["expected_seq"]) == (3, 4)
    assert client.get(f"{events_url()}/head").json()["acked_seq"] == 3


def test_chain_break_mid_batch_stores_the_prefix_explicitly(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    events = chain(10)
    broken = [*events[:6], *chain(4, start=7, prev="e" * 64)]
    reply = client.post(events_url(), json=batch(broken))
    assert reply.status_code == 409
    doc = reply.json()
    assert doc["type"] == PROBLEM + "chain-mismatch"
    assert (doc["acked_seq"], doc["expected_seq"]) == (6, 7)
    assert bo.store is not None
    assert [e["seq"] for e in bo.store.events("lane1")] == [1, 2, 3, 4, 5, 6]
    # The agent rewinds and resends from 7 with the right chain.
    reply = client.post(events_url(), json=batch(events[6:]))
    assert reply.json()["acked_seq"] == 10


def test_different_event_at_a_held_seq_is_a_conflict_and_nothing_is_stored(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    events = chain(4)
    client.post(events_url(), json=batch(events))
    rewritten = chain(6, salt="other")
    reply = client.post(events_url(), json=batch(rewritten))
    assert reply.status_code == 409
    assert reply.json()["type"] == PROBLEM + "conflict"
    assert "seq 1" in reply.json()["detail"]
    assert bo.store is not None
    assert [e["hash"] for e in bo.store.events("lane1")] == [e["hash"] for e in events]


def test_genesis_is_seq_1_with_a_zero_prev_hash(client: httpx.Client) -> None:
    bad = chain(2, prev="a" * 64)
    reply = client.post(events_url("a"), json=batch(bad, "a"))
    assert reply.status_code == 409 and reply.json()["expected_seq"] == 1
    # A journal pruned before enrolment is refused: no checkpoint proof in the protocol yet.
    late = chain(3, start=500, prev="b" * 64)
    reply = client.post(events_url("b"), json=batch(late, "b"))
    assert reply.status_code == 409 and reply.json()["type"] == PROBLEM + "sequence-gap"
    assert (reply.json()["expected_seq"], reply.json()["acked_seq"]) == (1, 0)
    assert chain(1)[0]["prev_hash"] == ZERO


def test_gzip_bodies_are_accepted(client: httpx.Client) -> None:
    body = gzip.compress(json.dumps(batch(chain(50))).encode())
    reply = client.post(
        events_url(),
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert reply.status_code == 200 and reply.json()["acked_seq"] == 50
    reply = client.post(events_url(), content=body[:40], headers={"Content-Encoding": "gzip"})
    assert reply.status_code == 400 and "gzip" in reply.json()["detail"]


def test_invalid_bodies_are_problems_naming_the_field(client: httpx.Client) -> None:
    events = chain(3)
    events[1]["hash"] = "not-a-hash"
    reply = client.post(events_url(), json=batch(events))
    assert reply.status_code == 422
    doc = reply.json()
    assert doc["type"] == PROBLEM + "validation"
    assert doc["errors"][0]["field"] == "events.1.hash"
    assert "not-a-hash" not in reply.text
    holes = chain(5)
    reply = client.post(events_url(), json=batch([holes[0], holes[2]]))
    assert reply.status_code == 422 and "consecutive" in reply.json()["detail"]
    reply = client.post(events_url("other"), json=batch(chain(1)))
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "terminal"
    reply = client.post(events_url(), content=b"{nope")
    assert reply.status_code == 400 and reply.json()["type"] == PROBLEM + "bad-request"
    reply = client.get("/v1/terminals/bad id!/events/head")
    assert reply.status_code == 400
    reply = client.get(events_url())
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
