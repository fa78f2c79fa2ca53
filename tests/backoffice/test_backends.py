"""Storage on SQLite and PostgreSQL: migrations, and what replicas need from the database.

"Two stores" below are two :class:`BackofficeStore` instances on one database — two
connection pools on PostgreSQL, as two ``serve`` replicas have — driven from many threads
that a barrier releases at once. Whatever the interleaving, the result must be what one
server gives: every event stored once and acknowledged right, one decision per attempt,
and "reversal wins" with a ``had_authorization`` that matches the authorization's answer.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from posedge.agent.cli import cli
from posedge.backoffice.db import DatabaseConfigError, lock_key, redact
from posedge.backoffice.registry import TerminalRegistry
from posedge.backoffice.schema import SCHEMA_VERSION, SQLITE_V2
from posedge.backoffice.store import BackofficeStore, ClaimLost, terminal_lock
from posedge.protocol.idempotency import authorization_fingerprint, fingerprint
from posedge.protocol.models import EventBatch
from posedge.protocol.signing import new_device_key, public_key_text
from posedge.simulator.pgserver import PostgresServer

from .backends import Databases, base_url, new_postgres_database
from .helpers import authorization, batch, chain, heartbeat, reversal

ARRIVED_LATE = "reversed before it arrived"
DECIDED_LATE = "reversed before it was decided"
THREADS = 8


@pytest.fixture
def two_stores(db_target: Path | str) -> Iterator[tuple[BackofficeStore, BackofficeStore]]:
    """Two stores on one database (opened before any test traffic)."""
    with (
        BackofficeStore(db_target, pool_size=THREADS) as one,
        BackofficeStore(db_target, pool_size=THREADS) as two,
    ):
        yield one, two


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(THREADS) as executor:
        yield executor


def auth_record(txn: str, amount: int = 1234) -> tuple[str, str, dict[str, Any]]:
    """(attempt, fingerprint, stored record) of the sale's online attempt."""
    record = {k: v for k, v in authorization(txn, amount).items() if k != "card"}
    return record["attempt"], authorization_fingerprint(record), record


def approved(txn: str, attempt: str) -> dict[str, Any]:
    return {"txn": txn, "attempt": attempt, "outcome": "approved", "auth_code": "A1B2C3",
            "reason": None}  # fmt: skip


# -- migrations -----------------------------------------------------------------------------


def test_a_version_2_sqlite_file_is_migrated_in_place(tmp_path: Path) -> None:
    """A file of the released version 2 keeps its events, money and answers, gets the
    registry and claim lease tables, and (opened by a server) loses only the claim a crash
    left pending."""
    path = tmp_path / "bo.sqlite3"
    events = chain(3)
    db = sqlite3.connect(path, isolation_level=None)
    for statement in SQLITE_V2:
        db.execute(statement)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    db.executemany(
        "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
        " VALUES ('lane1', ?, ?, ?, ?, ?, ?, ?)",
        [(e["seq"], e["ts"], e["type"], e["txn"], json.dumps(e["payload"]), e["prev_hash"],
          e["hash"]) for e in events],
    )  # fmt: skip
    db.execute(
        "INSERT INTO terminals (terminal, first_seq, held_seq, head_hash, enrolled_at)"
        " VALUES ('lane1', 1, 3, ?, 1.0)",
        (events[-1]["hash"],),
    )
    db.execute("INSERT INTO counters (terminal, duplicates) VALUES ('lane1', 5)")
    auth = (
        "INSERT INTO authorizations (terminal, idem_key, txn, body_sha256, state, amount,"
        " currency, masked_pan, forwarded, outcome, response_json, created_at, decided_at)"
        " VALUES ('lane1', ?, ?, 'f', ?, ?, 'EUR', '411111******1111', 0, ?, ?, 1.0, ?)"
    )
    answer = approved("s-1", "s-1:online")
    db.execute(auth, ("s-1:online", "s-1", "decided", 100, "approved", json.dumps(answer), 1.0))
    db.execute(auth, ("s-2:online", "s-2", "pending", 200, None, None, None))
    db.close()

    with BackofficeStore(path, serving=True) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.head("lane1") == (3, events[-1]["hash"])
        assert [e["hash"] for e in store.events("lane1")] == [e["hash"] for e in events]
        assert store.terminal_states()[0].counters["duplicates"] == 5
        assert store.captured("lane1") == {"s-1": 100}
        attempt, fp, record = auth_record("s-1", 100)
        assert store.claim_authorization("lane1", attempt, "f", record).response == answer
        # The pending claim was a crash's: gone, and the attempt is decided afresh.
        attempt, fp, record = auth_record("s-2", 200)
        claim = store.claim_authorization("lane1", attempt, fp, record)
        assert claim.kind == "new" and claim.token
        assert TerminalRegistry(store).terminals() == []
        assert store.ingest(EventBatch.model_validate(batch(chain(4)))).acked_seq == 4
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"terminal_registry", "terminal_rotation_nonces", "authorization_claims"} <= tables
    assert db.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]
    db.close()
    with BackofficeStore(path) as again:  # a current file: nothing changes
        assert again.head("lane1")[0] == 4


def test_replicas_starting_at_once_migrate_once(postgres: PostgresServer) -> None:
    """Concurrent CREATE TABLE IF NOT EXISTS collide in PostgreSQL's catalog; the
    migration's advisory lock makes the others wait and then find the schema current."""
    url = new_postgres_database(postgres, "race")
    barrier = threading.Barrier(THREADS, timeout=30)

    def start(_: int) -> int:
        barrier.wait()
        with BackofficeStore(url, pool_size=1) as store:
            return store.schema_version

    with ThreadPoolExecutor(THREADS) as executor:
        assert list(executor.map(start, range(THREADS))) == [SCHEMA_VERSION] * THREADS
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT key, value FROM meta").fetchall() == [
            ("schema_version", str(SCHEMA_VERSION))
        ]


# -- events ---------------------------------------------------------------------------------


def test_one_terminals_batches_racing_on_two_stores_are_stored_once(
    two_stores: tuple[BackofficeStore, BackofficeStore], pool: ThreadPoolExecutor
) -> None:
    """Eight threads send overlapping, duplicated and premature batches of one terminal's
    chain to either store until it is all held: every event is accepted exactly once, each
    answer is right for the head at its turn, and the counters add up."""
    total = 300
    events = chain(total)
    barrier = threading.Barrier(THREADS, timeout=30)

    def sender(index: int) -> list[tuple[int, int, Any]]:
        rng = random.Random(index)
        store = two_stores[index % 2]
        out = []
        barrier.wait()
        while (held := store.head("lane1")[0]) < total:
            start = max(1, held + 1 - rng.randint(0, 8))
            if rng.random() < 0.15:
                start = min(total, held + 2 + rng.randint(0, 4))  # ahead of the head: a gap
            end = min(total, start + rng.randint(0, 12))
            result = store.ingest(EventBatch.model_validate(batch(events[start - 1 : end])))
            out.append((start, end, result))
        return out

    results = [r for part in pool.map(sender, range(THREADS)) for r in part]
    store = two_stores[0]
    assert [(e["seq"], e["hash"]) for e in store.events("lane1")] == [
        (e["seq"], e["hash"]) for e in events
    ]
    assert store.head("lane1") == (total, events[-1]["hash"])
    assert store.held_integrity("lane1") == {"events": total, "missing_seqs": 0,
                                             "chain_breaks": 0}  # fmt: skip
    assert sum(r.accepted for _, _, r in results) == total
    gaps = 0
    for start, end, r in results:
        if r.status == "ok":
            assert r.accepted + r.duplicates == end - start + 1
            assert r.acked_seq >= end
            assert r.head_hash == events[r.acked_seq - 1]["hash"]
        else:
            assert r.status == "sequence-gap", r
            assert start > r.acked_seq + 1 == r.expected_seq and r.accepted == 0
            gaps += 1
    counters = store.terminal_states()[0].counters
    assert counters["duplicates"] == sum(r.duplicates for _, _, r in results)
    assert counters["gaps"] == gaps > 0
    assert counters["chain_breaks"] == counters["conflicts"] == 0
    assert len(results) > total // 12  # the threads did race


def test_a_heartbeat_does_not_wait_for_the_terminals_ingest(postgres: PostgresServer) -> None:
    """An ingest holds its terminal's lock to commit; another store's ingest of that
    terminal waits for it, while a heartbeat of the same terminal goes through."""
    url = new_postgres_database(postgres, "hb")
    with (
        BackofficeStore(url) as one,
        BackofficeStore(url) as two,
        ThreadPoolExecutor(2) as executor,
    ):
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with one.db.transaction() as tx:
                tx.lock(terminal_lock("lane1"))
                holding.set()
                assert release.wait(30)

        holder = executor.submit(hold)
        assert holding.wait(30)
        try:
            waiting = executor.submit(two.ingest, EventBatch.model_validate(batch(chain(2))))
            with psycopg.connect(base_url(postgres), autocommit=True) as conn:
                deadline = time.monotonic() + 30
                while not conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND objid = (%s::bigint & 4294967295)::oid",
                    (lock_key(terminal_lock("lane1")),),
                ).fetchone()[0]:
                    assert time.monotonic() < deadline, "the second ingest never waited"
                    time.sleep(0.005)
            two.record_heartbeat("lane1", heartbeat(head_seq=2), 60)
            assert not waiting.done()
        finally:
            release.set()
        holder.result(30)
        assert waiting.result(30).acked_seq == 2
        (state,) = two.terminal_states()
        assert state.reported_head_seq == 2 and state.held_seq == 2


# -- authorizations and reversals -----------------------------------------------------------


def test_duplicate_authorizations_on_two_stores_decide_once(
    two_stores: tuple[BackofficeStore, BackofficeStore], pool: ThreadPoolExecutor
) -> None:
    """The same attempt claimed by eight threads at once on two stores: one claim is new,
    every other one is in progress, and after the decision every store replays it."""
    for n in range(15):
        attempt, fp, record = auth_record(f"s-{n}")
        barrier = threading.Barrier(THREADS, timeout=30)

        def claim(
            index: int,
            attempt: str = attempt,
            fp: str = fp,
            record: dict[str, Any] = record,
            barrier: threading.Barrier = barrier,
        ) -> Any:
            barrier.wait()
            return two_stores[index % 2].claim_authorization("lane1", attempt, fp, record)

        claims = list(pool.map(claim, range(THREADS)))
        assert sorted(c.kind for c in claims) == ["in-progress"] * (THREADS - 1) + ["new"]
        decided = two_stores[n % 2].decide_authorization(
            "lane1", attempt, approved(f"s-{n}", attempt)
        )
        for store in two_stores:
            replay = store.claim_authorization("lane1", attempt, fp, record)
            assert (replay.kind, replay.response) == ("replay", decided)
    assert two_stores[1].captured("lane1") == {f"s-{n}": 1234 for n in range(15)}


def test_a_reversal_racing_its_authorization_on_two_stores(
    two_stores: tuple[BackofficeStore, BackofficeStore], pool: ThreadPoolExecutor
) -> None:
    """A reversal on one store races the claim (even rounds) or the decision (odd rounds)
    of its attempt on the other. Whichever wins, nothing stays captured, and the reversal
    says it released money exactly when the authorization answered approved."""
    outcomes = set()
    for n in range(40):
        txn = f"s-{n}"
        attempt, fp, record = auth_record(txn)
        body = reversal(txn)
        here, there = two_stores[n % 2], two_stores[(n + 1) % 2]
        barrier = threading.Barrier(2, timeout=30)
        race_decision = n % 2 == 1

        def authorize(
            here: BackofficeStore = here, attempt: str = attempt, fp: str = fp,
            record: dict[str, Any] = record, txn: str = txn, barrier: threading.Barrier = barrier,
            race_decision: bool = race_decision,
        ) -> dict[str, Any]:  # fmt: skip
            if not race_decision:
                barrier.wait()
            claim = here.claim_authorization("lane1", attempt, fp, record)
            if race_decision:
                barrier.wait()
            if claim.kind == "new":
                return here.decide_authorization("lane1", attempt, approved(txn, attempt))
            assert claim.kind == "refused" and claim.response is not None
            return claim.response

        def reverse(
            there: BackofficeStore = there, body: dict[str, Any] = body,
            barrier: threading.Barrier = barrier,
        ) -> dict[str, Any]:  # fmt: skip
            barrier.wait()
            ack = there.record_reversal(
                "lane1", body["reversal"], body["txn"], body["attempt"], fingerprint(body)
            )
            assert ack.kind == "new" and ack.response is not None
            return ack.response

        answer_f, ack_f = pool.submit(authorize), pool.submit(reverse)
        answer, ack = answer_f.result(30), ack_f.result(30)
        if answer["outcome"] == "approved":
            assert ack["had_authorization"] is True
        else:
            assert answer["reason"] in (ARRIVED_LATE, DECIDED_LATE)
            assert ack["had_authorization"] is False
        outcomes.add(answer["outcome"] + ("" if answer["reason"] is None else answer["reason"]))
        assert txn not in there.captured("lane1")
        (row,) = [r for r in here.authorizations("lane1") if r["idem_key"] == attempt]
        assert row["state"] == "decided" and row["reversed_at"] is not None
        assert there.claim_authorization("lane1", attempt, fp, record).response == answer
        again = here.record_reversal(
            "lane1", body["reversal"], body["txn"], body["attempt"], fingerprint(body)
        )
        assert (again.kind, again.response) == ("replay", ack)
    assert two_stores[0].captured("lane1") == {}
    assert len(outcomes) >= 2  # the races went more than one way


def test_an_abandoned_claim_is_taken_over_after_its_lease(
    two_stores: tuple[BackofficeStore, BackofficeStore],
) -> None:
    """A replica that dies while deciding leaves a pending claim: in progress for every
    replica until its lease runs out, then another replica takes it over; the first
    decision recorded is the answer on both."""
    one, two = two_stores
    attempt, fp, record = auth_record("s-1")
    first = one.claim_authorization("lane1", attempt, fp, record, 1000.0, lease_s=30.0)
    assert first.kind == "new"
    assert two.claim_authorization("lane1", attempt, fp, record, 1029.0).kind == "in-progress"
    second = two.claim_authorization("lane1", attempt, fp, record, 1031.0, lease_s=30.0)
    assert second.kind == "new" and second.token != first.token
    one.release_authorization("lane1", attempt, first.token)  # not its claim any more
    assert one.claim_authorization("lane1", attempt, fp, record, 1032.0).kind == "in-progress"
    answer = one.decide_authorization("lane1", attempt, approved("s-1", attempt))
    declined = {**approved("s-1", attempt), "outcome": "declined", "auth_code": None,
                "reason": "do not honour"}  # fmt: skip
    assert two.decide_authorization("lane1", attempt, declined) == answer
    assert two.captured("lane1") == {"s-1": 1234}
    # A claim taken over and then given up by its new holder: the old holder lost it.
    attempt, fp, record = auth_record("s-2")
    old = one.claim_authorization("lane1", attempt, fp, record, 2000.0, lease_s=1.0)
    new = two.claim_authorization("lane1", attempt, fp, record, 2002.0, lease_s=1.0)
    two.release_authorization("lane1", attempt, new.token)
    assert old.token != new.token
    with pytest.raises(ClaimLost):
        one.decide_authorization("lane1", attempt, approved("s-2", attempt))
    assert one.claim_authorization("lane1", attempt, fp, record, 2003.0).kind == "new"


def test_a_restarted_server_and_a_tool_beside_it_treat_pending_claims_right(
    databases: Databases,
) -> None:
    """A tool that opens the database beside a running server (``terminals add``) leaves
    the server's claim alone. A restarted SQLite server (the only process on its file)
    decides a claim its crashed run left at once; on PostgreSQL another replica may be
    deciding it, so it stays in progress until its lease expires."""
    target = databases.new("bo")
    attempt, fp, record = auth_record("s-1")
    with BackofficeStore(target, serving=True) as server:
        assert server.claim_authorization("lane1", attempt, fp, record, 1000.0).kind == "new"
        BackofficeStore(target).close()
        answer = server.decide_authorization("lane1", attempt, approved("s-1", attempt))
        assert answer["outcome"] == "approved"
        attempt, fp, record = auth_record("s-2")
        assert server.claim_authorization("lane1", attempt, fp, record, 1000.0).kind == "new"
    with BackofficeStore(target, serving=True) as restarted:
        again = restarted.claim_authorization("lane1", attempt, fp, record, 1001.0)
        assert again.kind == ("new" if databases.backend == "sqlite" else "in-progress")
        later = restarted.claim_authorization("lane1", attempt, fp, record, 1030.5)
        assert later.kind == ("in-progress" if databases.backend == "sqlite" else "new")


# -- the registry on both backends ----------------------------------------------------------


def test_the_terminal_registry_on_each_backend(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:
        registry = TerminalRegistry(store)
        record, code = registry.add("s1-1", "s1", "1")
        assert record.status == "active" and record.terminal == "s1-1"
        key = new_device_key()
        enrolled = registry.enrol(code, public_key_text(key))
        assert enrolled.kind == "ok" and enrolled.token
        assert registry.enrol(code, public_key_text(key)).kind == "used"
        found = registry.by_token(enrolled.token)
        assert found is not None and found.terminal == "s1-1" and found.enrolled
        rotated = registry.rotate("s1-1", enrolled.token, "n" * 16)
        assert rotated.kind == "ok" and rotated.token != enrolled.token
        assert registry.rotate("s1-1", enrolled.token, "n" * 16).kind == "nonce-reused"
        assert registry.revoke("s1-1").revoked
    with BackofficeStore(db_target, readonly=True) as reader:
        assert [r.terminal for r in TerminalRegistry(reader).terminals()] == ["s1-1"]


# -- read-only and bad --db -----------------------------------------------------------------


def test_a_read_only_store_never_writes(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:
        store.ingest(EventBatch.model_validate(batch(chain(2))))
    with BackofficeStore(db_target, readonly=True) as reader:
        assert reader.head("lane1")[0] == 2
        with pytest.raises((sqlite3.OperationalError, psycopg.errors.ReadOnlySqlTransaction)):
            reader.record_heartbeat("lane1", heartbeat(), 60)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_bad_db_targets_say_what_is_wrong_and_never_show_the_password(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    secret = "s3cr3t-Pa55"
    port = postgres.port
    empty = new_postgres_database(postgres, "empty")
    export = tmp_path / "events.jsonl"
    export.write_text("")
    nowhere = f"postgresql://postgres:{secret}@127.0.0.1:{_closed_port()}/bo"
    cases = [
        (["backoffice", "report", "--db", f"mysql://bo:{secret}@localhost/bo"], 2,
         "unsupported scheme mysql://"),
        (["backoffice", "report", "--db", f"postgresql://bo:{secret}@[::1/bo"], 2,
         "not a valid PostgreSQL URL"),
        (["backoffice", "report", "--db", f"postgresql://bo@h/bo?password={secret}&x=1"], 2,
         "not a valid PostgreSQL URL"),
        (["backoffice", "report", "--db",
          f"postgresql://postgres:{secret}@127.0.0.1:{port}/no_such_db"], 2,
         'database "no_such_db" does not exist'),
        (["backoffice", "report", "--db", empty.replace("postgres@", f"postgres:{secret}@")], 2,
         "holds no back office schema"),
        (["backoffice", "report", "--db", nowhere], 4, "cannot reach PostgreSQL"),
        (["backoffice", "reconcile", "--db", nowhere, "--journal-export", str(export)], 4,
         "cannot reach PostgreSQL"),
        (["backoffice", "serve", "--db", nowhere, "--listen", "127.0.0.1:0"], 4,
         "cannot reach PostgreSQL"),
        (["simulate", "backoffice", "--db", nowhere, "--listen", "127.0.0.1:0"], 4,
         "cannot reach PostgreSQL"),
        (["backoffice", "serve", "--db", nowhere, "--db-pool-size", "0"], 2, "--db-pool-size"),
        (["backoffice", "serve", "--db", str(tmp_path), "--listen", "127.0.0.1:0"], 2,
         "is a directory"),
    ]  # fmt: skip
    runner = CliRunner()
    for args, code, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
        assert secret not in result.output, result.output
    assert redact(nowhere) == nowhere.replace(secret, "***")


def test_a_newer_schema_is_refused_on_each_backend(db_target: Path | str) -> None:
    BackofficeStore(db_target).close()
    with BackofficeStore(db_target) as store:
        store.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DatabaseConfigError, match="schema version 99"):
        BackofficeStore(db_target)


def test_each_backend_runs_here(databases: Databases) -> None:
    """The parametrization really gives each backend (a SQLite path, a PostgreSQL URL)."""
    target = databases.new("probe")
    with ExitStack() as stack:
        store = stack.enter_context(BackofficeStore(target))
        assert store.db.dialect == databases.backend


def test_a_row_above_the_head_written_outside_fails_the_upload_whole(
    db_target: Path | str,
) -> None:
    """The lock means no row can sit above the head; one written there behind the back
    office's back (a restore, a hand edit) must not be overwritten or skipped silently: the
    batch fails whole with a message saying so, and the store is as it was."""
    events = chain(10)
    with BackofficeStore(db_target) as store:
        assert store.ingest(EventBatch.model_validate(batch(events[:4]))).acked_seq == 4
        intruder = events[6]
        with store.transaction() as db:
            db.execute(
                "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ("lane1", intruder["seq"], intruder["ts"], "edited.outside", None, "{}",
                 intruder["prev_hash"], intruder["hash"]),
            )  # fmt: skip
        with pytest.raises(RuntimeError, match=r"seqs 5\.\.10 were stored already.*outside"):
            store.ingest(EventBatch.model_validate(batch(events[4:])))
        assert store.head("lane1") == (4, events[3]["hash"])
        held = store.events("lane1")
        assert [e["seq"] for e in held] == [1, 2, 3, 4, 7]
        assert held[-1]["type"] == "edited.outside"  # left as found, for whoever investigates


def test_copy_rows_refuses_a_taken_key_and_writes_nothing(db_target: Path | str) -> None:
    from posedge.backoffice.db import DuplicateRows

    with BackofficeStore(db_target) as store:
        with store.transaction() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("copy-test-b", "old"))
        rows = [("copy-test-a", "1"), ("copy-test-b", "2"), ("copy-test-c", "3")]
        with pytest.raises(DuplicateRows, match="meta"), store.transaction() as db:
            db.copy_rows("meta", ("key", "value"), rows)
        got = store.db.execute("SELECT key, value FROM meta WHERE key LIKE 'copy-test-%'").rows
        assert [tuple(r) for r in got] == [("copy-test-b", "old")]
        with store.transaction() as db:
            db.copy_rows("meta", ("key", "value"), [rows[0], rows[2]])
        got = store.db.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'copy-test-%' ORDER BY key"
        ).rows
        assert [tuple(r) for r in got] == [
            ("copy-test-a", "1"), ("copy-test-b", "old"), ("copy-test-c", "3")
        ]  # fmt: skip


def test_a_replica_whose_pool_does_not_fit_the_server_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A serving store opens its whole pool at start; a server without room for it is a
    clear error at start (not slow uploads later), naming --db-pool-size and max_connections."""
    import posedge.backoffice.db as db_module

    monkeypatch.setattr(db_module, "CONNECT_TIMEOUT_S", 2)  # the pool's wait, not the probe's
    with PostgresServer(max_connections=4) as small:
        url = small.url("tiny")
        with BackofficeStore(url, pool_size=2, serving=True):
            pass  # two connections fit
        with pytest.raises(db_module.DatabaseUnavailable) as info:
            BackofficeStore(url, pool_size=8, serving=True)
        message = str(info.value)
        assert "opens all its 8 connections (--db-pool-size)" in message
        assert re.search(r"only [0-4] opened", message), message
        assert "max_connections" in message
        with BackofficeStore(url, pool_size=8):  # a tool's pool opens on demand: it starts
            pass
