"""The back office against hostile or broken clients (issue 11): every bad request is a 4xx
problem document — never a 500 — and nothing is stored from it.

Deep JSON nesting, integers the schema does not allow, a first batch that does not start
at seq 1, card data in event payloads and heartbeats, authentication before the body on
every route, body limits while streaming, and SQLite's secure_delete. The memory and
latency side (hundreds of MiB sent at a real server process) is test_limits_process.py.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer, BackofficeStore

from .backends import Databases
from .helpers import TEST_PAN, authorization, batch, chain, events_url, heartbeat, reversal

PROBLEM = "https://posedge.dev/problems/"
MAX_JSON_DEPTH = 32
MAX_SEQ = 2**63 - 1
MAX_COUNT = 2**53 - 1
TOKENS = {"lane1": "token-of-lane1", "lane2": "token-of-lane2"}
LANE1 = {"Authorization": f"Bearer {TOKENS['lane1']}"}


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value ``depth`` containers deep (alternating objects and arrays)."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    """``depth`` nested arrays as text (json.dumps itself recurses)."""
    return "[" * depth + "1" + "]" * depth


def is_problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text[:500]
    assert reply.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = reply.json()
    assert doc["type"] == PROBLEM + kind, doc
    assert doc["status"] == status
    return doc


@pytest.fixture
def secured(databases: Databases) -> Iterator[BackofficeServer]:
    config = BackofficeConfig(tokens=TOKENS)
    with BackofficeServer(databases.new("secured"), config=config) as server:
        yield server


# -- JSON nesting -------------------------------------------------------------------------


def test_deep_nesting_is_400_on_every_body_route(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    """Depth over the bound is refused as bad-request; very deep input never recurses (500)."""
    for depth in (MAX_JSON_DEPTH + 1, 180, 100_000):
        events = chain(1)
        events[0]["payload"] = {"amount": 1, "deep": "@DEEP@"}
        body = json.dumps(batch(events)).replace('"@DEEP@"', deep_text(depth))
        reply = client.post(events_url(), content=body)
        assert "nest" in is_problem(reply, 400, "bad-request")["detail"]
        beat = json.dumps(heartbeat() | {"extra": "@DEEP@"}).replace('"@DEEP@"', deep_text(depth))
        reply = client.post("/v1/terminals/lane1/heartbeat", content=beat)
        is_problem(reply, 400, "bad-request")
        for route, body_doc, key in (
            ("/v1/authorizations", authorization(), "s-1:online"),
            ("/v1/reversals", reversal(), "s-1:online:reversal"),
        ):
            text = json.dumps(body_doc | {"extra": "@DEEP@"}).replace('"@DEEP@"', deep_text(depth))
            reply = client.post(route, content=text, headers={"Idempotency-Key": key})
            is_problem(reply, 400, "bad-request")
        reply = client.post("/admin/faults", content=deep_text(depth))
        is_problem(reply, 400, "bad-request")
        reply = client.put("/admin/policy", content=deep_text(depth))
        is_problem(reply, 400, "bad-request")
    assert bo.store is not None
    assert bo.store.events("lane1") == [] and bo.store.authorizations("lane1") == []
    assert bo.store.reversals("lane1") == []


def test_nesting_up_to_the_bound_is_accepted(bo: BackofficeServer, client: httpx.Client) -> None:
    events = chain(1)
    # batch {1} > events [2] > event {3} > payload {4} > ... : the payload may add 28 levels.
    events[0]["payload"] = {"amount": 1, "deep": nested(MAX_JSON_DEPTH - 4)}
    reply = client.post(events_url(), json=batch(events))
    assert reply.status_code == 200, reply.text
    assert bo.store is not None
    assert bo.store.events("lane1")[0]["payload"] == events[0]["payload"]


# -- integers -----------------------------------------------------------------------------


def test_integers_beyond_the_schema_are_422_naming_the_field(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    huge = 2**64
    events = chain(1, start=huge)
    is_problem(client.post(events_url(), json=batch(events)), 422, "validation")
    for value in (MAX_SEQ + 1, huge, 10**300):
        events = chain(1)
        events[0]["seq"] = value
        doc = batch(events) | {"first_seq": value, "last_seq": value}
        doc = is_problem(client.post(events_url(), json=doc), 422, "validation")
        fields = {e["field"] for e in doc["errors"]}
        assert {"first_seq", "last_seq", "events.0.seq"} <= fields
        assert str(value) not in json.dumps(doc)
    too_big = {
        "uptime_s": 1e999,
        "unsynced_count": MAX_COUNT + 1,
        "in_doubt_count": huge,
        "disk_free_bytes": huge,
        "journal_head": {"seq": MAX_SEQ + 1, "hash": None},
        "offline_exposure": {"EUR": {"count": huge, "amount": huge}},
    }
    for name, value in too_big.items():
        body = json.dumps(heartbeat() | {name: value}).replace("Infinity", "1e999")
        reply = client.post("/v1/terminals/lane1/heartbeat", content=body)
        doc = is_problem(reply, 422, "validation")
        assert doc["errors"][0]["field"].startswith(name)
    for amount in (MAX_COUNT + 1, huge):
        body = authorization(amount=amount)
        reply = client.post(
            "/v1/authorizations", json=body, headers={"Idempotency-Key": "s-1:online"}
        )
        assert is_problem(reply, 422, "validation")["errors"][0]["field"] == "amount"
        body = reversal(amount=amount)
        reply = client.post(
            "/v1/reversals", json=body, headers={"Idempotency-Key": body["reversal"]}
        )
        assert is_problem(reply, 422, "validation")["errors"][0]["field"] == "amount"
    assert bo.store is not None
    assert bo.store.events("lane1") == [] and bo.store.terminal_states() == []
    # The largest seq the schema allows is stored (it fits SQLite's INTEGER).
    assert client.post(events_url(), json=batch(chain(1))).status_code == 200


def test_the_openapi_document_shows_the_bounds() -> None:
    from posedge.backoffice.openapi import OPENAPI_DOCUMENT

    schemas = OPENAPI_DOCUMENT["components"]["schemas"]
    assert schemas["Event"]["properties"]["seq"]["maximum"] == MAX_SEQ
    assert schemas["EventBatch"]["properties"]["first_seq"]["maximum"] == MAX_SEQ
    assert schemas["AuthorizationRequest"]["properties"]["amount"]["maximum"] == MAX_COUNT
    assert schemas["ReversalRequest"]["properties"]["amount"]["maximum"] == MAX_COUNT
    assert schemas["Exposure"]["properties"]["amount"]["maximum"] == MAX_COUNT


# -- first batch and acknowledgement --------------------------------------------------------


def test_first_batch_must_start_at_seq_1(bo: BackofficeServer, client: httpx.Client) -> None:
    late = chain(3, start=5, prev="b" * 64)
    doc = is_problem(client.post(events_url(), json=batch(late)), 409, "sequence-gap")
    assert (doc["expected_seq"], doc["acked_seq"]) == (1, 0)
    assert "seq 1" in doc["detail"] and "checkpoint" in doc["detail"]
    assert bo.store is not None and bo.store.events("lane1") == []
    assert client.get(f"{events_url()}/head").json() == {"acked_seq": 0, "head_hash": None}
    # A heartbeat enrolled the terminal first: still nothing held, still seq 1 first.
    client.post("/v1/terminals/lane1/heartbeat", json=heartbeat(head_seq=7))
    doc = is_problem(client.post(events_url(), json=batch(late)), 409, "sequence-gap")
    assert doc["expected_seq"] == 1
    events = chain(7)
    reply = client.post(events_url(), json=batch(events))
    assert reply.status_code == 200 and reply.json()["acked_seq"] == 7


def test_ack_never_names_a_seq_that_is_not_stored(db_target: Path | str) -> None:
    """A terminal enrolled mid-history by an older back office (first_seq 500): seqs below
    its first held seq are not absorbed as duplicates, and the ack stays on what is held."""
    db = db_target
    late = chain(3, start=500, prev="b" * 64)
    with BackofficeStore(db) as store:
        store.db.executemany(
            "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
            " VALUES ('lane1', ?, ?, ?, ?, ?, ?, ?)",
            [
                (e["seq"], e["ts"], e["type"], e["txn"], "{}", e["prev_hash"], e["hash"])
                for e in late
            ],
        )
        store.db.execute(
            "INSERT INTO terminals (terminal, first_seq, held_seq, head_hash, enrolled_at)"
            " VALUES ('lane1', 500, 502, ?, 0)",
            (late[-1]["hash"],),
        )
    with (
        BackofficeServer(db) as bo,
        httpx.Client(base_url=bo.url, timeout=5.0) as client,
    ):
        below = chain(3, start=497, prev="c" * 64)
        more = chain(2, start=503, prev=late[-1]["hash"])
        straddling = [*below, *late]
        for events in (below, straddling, [*straddling, *more]):
            doc = is_problem(client.post(events_url(), json=batch(events)), 409, "sequence-gap")
            assert (doc["acked_seq"], doc["expected_seq"]) == (502, 503)
            assert "500" in doc["detail"]
        assert bo.store is not None
        assert [e["seq"] for e in bo.store.events("lane1")] == [500, 501, 502]
        assert bo.store.terminal_states()[0].counters["duplicates"] == 0
        reply = client.post(events_url(), json=batch([*late[1:], *more]))
        assert reply.json() == reply.json() | {"acked_seq": 504, "accepted": 2, "duplicates": 2}


# -- card data ----------------------------------------------------------------------------


def test_card_data_in_an_event_payload_is_422_and_nothing_is_stored(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    events = chain(5)
    events[3]["payload"] = {"amount": 5, "card": {"pan": TEST_PAN, "cvv": "123"}}
    doc = is_problem(client.post(events_url(), json=batch(events)), 422, "validation")
    assert TEST_PAN not in json.dumps(doc) and "123" not in json.dumps(doc["errors"])
    assert "seq 4" in doc["detail"] and "card data" in doc["detail"]
    fields = [e["field"] for e in doc["errors"]]
    assert fields == ["events.3.payload.card.pan", "events.3.payload.card.cvv"]
    assert bo.store is not None
    assert bo.store.events("lane1") == [] and bo.store.head("lane1") == (0, None)
    # A PAN in free text, or in the txn, is card data too.
    events = chain(2)
    events[1]["payload"] = {"note": f"customer card {TEST_PAN}"}
    doc = is_problem(client.post(events_url(), json=batch(events)), 422, "validation")
    assert [e["field"] for e in doc["errors"]] == ["events.1.payload.note"]
    events = chain(2)
    events[0]["txn"] = TEST_PAN
    doc = is_problem(client.post(events_url(), json=batch(events)), 422, "validation")
    assert [e["field"] for e in doc["errors"]] == ["events.0.txn"]
    assert TEST_PAN not in json.dumps(doc)
    assert bo.store.events("lane1") == []
    # Masked PANs, brands and tokens are what the agent journals: accepted.
    events = chain(2)
    events[1]["payload"] = {
        "masked_pan": "411111******1111",
        "brand": "visa",
        "pan_token": "ab" * 32,
    }
    assert client.post(events_url(), json=batch(events)).status_code == 200


def test_card_data_in_a_heartbeat_is_422_and_not_recorded(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    beat = heartbeat()
    beat["active_alerts"] = [{"kind": "x", "detail": f"card {TEST_PAN} refused"}]
    reply = client.post("/v1/terminals/lane1/heartbeat", json=beat)
    doc = is_problem(reply, 422, "validation")
    assert TEST_PAN not in reply.text
    assert [e["field"] for e in doc["errors"]] == ["active_alerts[0].detail"]
    beat = heartbeat() | {"track2": ";4111111111111111=2912101?"}
    doc = is_problem(client.post("/v1/terminals/lane1/heartbeat", json=beat), 422, "validation")
    assert [e["field"] for e in doc["errors"]] == ["track2"]
    assert bo.store is not None and bo.store.terminal_states() == []


def test_a_nul_character_in_stored_text_is_422_on_both_backends(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    """PostgreSQL text cannot hold U+0000: refused before the store on SQLite too, so both
    answer alike; in payloads and heartbeats it is JSON-escaped and stored fine."""
    events = chain(3)
    events[1]["type"] = "sale\u0000created"
    doc = is_problem(client.post(events_url(), json=batch(events)), 422, "validation")
    assert [e["field"] for e in doc["errors"]] == ["events.1.type"]
    assert bo.store is not None and bo.store.head("lane1") == (0, None)
    body = authorization("s\u00001", attempt="s-1:online")
    reply = client.post(
        "/v1/authorizations", json=body, headers={"Idempotency-Key": body["attempt"]}
    )
    assert is_problem(reply, 422, "validation")["errors"][0]["field"] == "txn"
    body = reversal("s-1", attempt="s-1:online\u0000")
    body["reversal"] = "s-1:online:reversal"
    reply = client.post("/v1/reversals", json=body, headers={"Idempotency-Key": body["reversal"]})
    assert is_problem(reply, 422, "validation")["errors"][0]["field"] == "attempt"
    assert bo.store.authorizations("lane1") == [] and bo.store.reversals("lane1") == []
    events = chain(2)
    events[0]["payload"] = {"note": "a\u0000b"}
    assert client.post(events_url(), json=batch(events)).status_code == 200
    assert bo.store.events("lane1")[0]["payload"] == {"note": "a\u0000b"}
    beat = heartbeat() | {"agent_version": "0.1\u0000"}
    assert client.post("/v1/terminals/lane1/heartbeat", json=beat).status_code == 200


# -- authentication before the body ---------------------------------------------------------


def test_authorizations_and_reversals_authenticate_before_reading_the_body(
    secured: BackofficeServer,
) -> None:
    with httpx.Client(base_url=secured.url, timeout=5.0) as c:
        for route, key in (("/v1/authorizations", "s-1:online"), ("/v1/reversals", "k")):
            # No token: 401 whatever the body (today's order parsed it first: 400).
            reply = c.post(route, content=b"{not json", headers={"Idempotency-Key": key})
            is_problem(reply, 401, "unauthorized")
            reply = c.post(route, content=b"{not json")
            is_problem(reply, 401, "unauthorized")
            # X-Posedge-Terminal names another terminal than the token's: 403 before the body.
            reply = c.post(
                route,
                content=b"{not json",
                headers={"Idempotency-Key": key, "X-Posedge-Terminal": "lane2", **LANE1},
            )
            is_problem(reply, 403, "forbidden")
        # The body's terminal must be the token's terminal (as before).
        body = authorization(terminal="lane2")
        reply = c.post(
            "/v1/authorizations", json=body, headers={"Idempotency-Key": "s-1:online", **LANE1}
        )
        is_problem(reply, 403, "forbidden")
        ok = c.post(
            "/v1/authorizations",
            json=authorization(),
            headers={"Idempotency-Key": "s-1:online", "X-Posedge-Terminal": "lane1", **LANE1},
        )
        assert ok.status_code == 200 and ok.json()["outcome"] == "approved"
    assert secured.store is not None and len(secured.store.authorizations("lane2")) == 0


def test_open_mode_header_terminal_must_match_the_body(client: httpx.Client) -> None:
    reply = client.post(
        "/v1/authorizations",
        json=authorization(),
        headers={"Idempotency-Key": "s-1:online", "X-Posedge-Terminal": "lane9"},
    )
    assert is_problem(reply, 422, "validation")["errors"][0]["field"] == "terminal"


# -- body limits ------------------------------------------------------------------------


@pytest.fixture
def small(databases: Databases) -> Iterator[BackofficeServer]:
    config = BackofficeConfig(max_body_bytes=64 * 1024)
    with BackofficeServer(databases.new("small"), config=config) as server:
        yield server


def test_body_limits_while_streaming_raw_and_inflated(small: BackofficeServer) -> None:
    limit = small.config.max_body_bytes
    with httpx.Client(base_url=small.url, timeout=5.0) as c:

        def chunks(total: int) -> Iterator[bytes]:
            for _ in range(total // 4096):
                yield b" " * 4096

        # Chunked (no Content-Length) over the limit.
        reply = c.post(events_url(), content=chunks(4 * limit))
        assert "bytes" in is_problem(reply, 413, "payload-too-large")["detail"]
        # A Content-Length over the limit is refused before any byte is read.
        reply = c.post(events_url(), content=b" " * (limit + 1))
        is_problem(reply, 413, "payload-too-large")
        # A small gzip that inflates past the limit.
        bomb = gzip.compress(b" " * (limit * 8))
        assert len(bomb) < limit
        reply = c.post(events_url(), content=bomb, headers={"Content-Encoding": "gzip"})
        assert "inflated" in is_problem(reply, 413, "payload-too-large")["detail"]
        # At the limit exactly: accepted (JSON with padding).
        doc = json.dumps(batch(chain(1))).encode()
        exact = doc + b" " * (limit - len(doc))
        assert c.post(events_url(), content=exact).status_code == 200
        packed = gzip.compress(exact)
        reply = c.post(events_url(), content=packed, headers={"Content-Encoding": "gzip"})
        assert reply.status_code == 200 and reply.json()["duplicates"] == 1
        # Bytes after the gzip stream, or a truncated one: 400; an unknown encoding: 415.
        reply = c.post(events_url(), content=packed + b"junk", headers={"Content-Encoding": "gzip"})
        is_problem(reply, 400, "bad-request")
        reply = c.post(events_url(), content=packed[:-9], headers={"Content-Encoding": "gzip"})
        is_problem(reply, 400, "bad-request")
        reply = c.post(events_url(), content=doc, headers={"Content-Encoding": "br"})
        is_problem(reply, 415, "unsupported-media-type")
        # The connection keeps working after every refusal.
        assert c.get("/healthz").status_code == 200


# -- storage ------------------------------------------------------------------------------


def test_sqlite_secure_delete_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set by the store itself, not left to how SQLite was compiled (Debian turns it on)."""
    connect = sqlite3.connect

    def connect_with_it_off(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete = OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", connect_with_it_off)
    db = tmp_path / "bo.sqlite3"
    with BackofficeStore(db) as store:
        assert store.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    with BackofficeStore(db, readonly=True) as store:
        assert store.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
