"""The lazily folded projection and the append's cached head.

Appends write only their event; reads of ``transactions`` fold first. These
tests pin what that must never break: a second writing process, a crash
before any fold, retention removing unfolded events, a duplicate
idempotency key from a second writer, and the partial index's query plan.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.agent.journal import JOURNAL_FILE_NAME, Event, Journal, verify_journal
from posedge.agent.journal.canonical import _ENCODER, canonical_json
from posedge.agent.journal.projection import (
    COLUMNS,
    PROJECTED_SEQ_KEY,
    STATE_AFTER,
    SUBSTATE_AFTER,
    SUMMARY_FIELDS,
    UNFINISHED_READ_STATES,
    read_row,
    row_dict,
    summary_patch,
)
from posedge.agent.journal.records import utc_now_iso
from posedge.agent.journal.schema import migrate
from posedge.agent.journal.txindex import OVERLAY_MAX_PENDING

from .helpers import posedge


def stored_watermark(state_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{state_dir / JOURNAL_FILE_NAME}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (PROJECTED_SEQ_KEY,)).fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_a_second_writing_process_is_caught_by_the_seq_key(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        jr.append("test.event", {"n": 1})
        jr.append("test.event", {"n": 2})
        # The CLI is a second process appending to the same file.
        noted = json.loads(
            posedge("--state-dir", str(tmp_path), "--json", "journal", "note", "visit").stdout
        )
        assert noted["seq"] == 3
        # This writer's cached head (seq 2) is stale: the insert of seq 3 is refused
        # and the event is rebuilt on the head read under the write lock.
        after = jr.append("test.event", {"n": 4})
        assert after.seq == 4 and after.prev_hash == noted["hash"]
        assert jr.append("test.event", {"n": 5}).prev_hash == after.hash
        assert [e.seq for e in jr.iter_events()] == [1, 2, 3, 4, 5]
        assert verify_journal(jr).ok


def test_two_writers_in_turn_keep_the_chain_gap_free(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as first, Journal.open(tmp_path) as second:
        for n in range(30):
            writer = first if (n // 3) % 2 == 0 else second  # runs of three, then switch
            writer.append("test.event", {"n": n}, txn=f"s{n % 4}")
        assert first.transactions.get("s1")["last_seq"] == 30  # type: ignore[index]
    with Journal.open(tmp_path, readonly=True) as jr:
        events = list(jr.iter_events())
        assert [e.seq for e in events] == list(range(1, 31))
        assert [e.payload["n"] for e in events] == list(range(30))
        assert verify_journal(jr).ok


CRASHING_WRITER = """
import os, sys
from pathlib import Path
from posedge.agent.journal import Journal
jr = Journal.open(Path(sys.argv[1]))
jr.append("sale.created", {"amount": 1250, "currency": "EUR", "idempotency_key": "k1"}, txn="s1")
jr.append("card.read", {"masked_pan": "411111******1111", "brand": "visa"}, txn="s1")
jr.append("auth.requested", {}, txn="s1")
os._exit(0)  # no close: nothing folded the projection
"""


def test_a_crash_before_any_fold_loses_nothing(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], check=True)
    assert stored_watermark(tmp_path) == 0  # the events are durable, the projection is not
    with Journal.open(tmp_path) as jr:
        # Reads of one sale fold its pending events in memory ...
        sale = jr.transactions.get("s1")
        assert sale is not None and sale["state"] == "authorizing"
        assert sale["amount"] == 1250 and sale["summary"]["masked_pan"] == "411111******1111"
        assert jr.transactions.by_idempotency_key("k1")["txn"] == "s1"  # type: ignore[index]
        assert stored_watermark(tmp_path) == 0
        # ... and recovery's scan folds the table itself.
        work = jr.transactions.needing_work(frozenset({"approved"}))
        assert [row["txn"] for row in work] == ["s1"] and work[0] == sale
    assert stored_watermark(tmp_path) == 3


def test_retention_folds_before_it_removes_events(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        jr.append("sale.created", {"amount": 700, "currency": "EUR"}, txn="s1")
        jr.append("auth.approved", {"auth_code": "A1"}, txn="s1")
        jr.set_acked(jr.head().seq)
        # Nothing has read the projection yet; prune removes both events.
        assert jr.prune(0.0) is not None
        assert [e.type for e in jr.iter_events()] == ["checkpoint"]
        sale = jr.transactions.get("s1")
        assert sale is not None and sale["state"] == "approved"
        assert sale["summary"]["auth_code"] == "A1" and sale["amount"] == 700
        assert verify_journal(jr).ok


def test_a_duplicate_idempotency_key_from_a_second_writer_does_not_stop_the_fold(
    tmp_path: Path,
) -> None:
    with Journal.open(tmp_path) as first, Journal.open(tmp_path) as second:
        first.append("sale.created", {"amount": 1, "idempotency_key": "k"}, txn="a")
        second.append("sale.created", {"amount": 2, "idempotency_key": "k"}, txn="b")
        second.append("card.read", {"brand": "visa"}, txn="b")
        for _ in ("before the fold", "after it"):
            assert first.transactions.by_idempotency_key("k")["txn"] == "a"  # type: ignore[index]
            later = first.transactions.get("b")
            assert later is not None and later["idem_key"] is None
            assert later["state"] == "card_read" and later["amount"] == 2
            first.transactions.needing_work(frozenset())  # folds the table
        assert stored_watermark(tmp_path) == 3


def test_a_read_only_opener_folds_privately_and_never_writes(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as writer:
        writer.append("sale.created", {"amount": 5, "idempotency_key": "k"}, txn="s1")
        assert writer.transactions.get("s1")["state"] == "created"  # type: ignore[index]
        writer.append("auth.approved", {"auth_code": "A7"}, txn="s1")
        writer.append("sale.created", {"amount": 6}, txn="s2")
        with Journal.open(tmp_path, readonly=True) as reader:
            sale = reader.transactions.get("s1")
            assert sale is not None and sale["state"] == "approved"
            assert sale["summary"]["auth_code"] == "A7"
            assert reader.transactions.by_idempotency_key("k")["txn"] == "s1"  # type: ignore[index]
            assert reader.transactions.get("s2")["amount"] == 6  # type: ignore[index]
            writer.append("sale.voided", {}, txn="s1")  # the reader's copy keeps up
            assert reader.transactions.get("s1")["state"] == "voided"  # type: ignore[index]
            assert reader.transactions.needing_work(frozenset())[0]["state"] == "voided"
            assert stored_watermark(tmp_path) == 0  # folded in the reader's TEMP copy only
        assert writer.transactions.get("s1")["state"] == "voided"  # type: ignore[index]
        writer.transactions.needing_work(frozenset())
        assert stored_watermark(tmp_path) == 4


def test_a_prune_that_removes_nothing_leaves_the_fold_to_the_next_read(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        jr.append("sale.created", {"amount": 9}, txn="s1")
        assert jr.prune(0.0) is None  # nothing acknowledged: rolled back
        assert jr.transactions.get("s1")["amount"] == 9  # type: ignore[index]


def test_the_status_query_uses_the_partial_index(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        plan = jr._conn.execute(
            f"EXPLAIN QUERY PLAN SELECT count(*) FROM transactions WHERE {UNFINISHED_READ_STATES}"
        ).fetchall()
        assert "transactions_unfinished_reads" in " ".join(str(tuple(row)) for row in plan)
        jr.append("sale.created", {"amount": 5}, txn="s1")
        jr.append("card.read", {"masked_pan": "411111******1111"}, txn="s1")
        jr.append("sale.abandoned", {}, txn="s1")
        jr.append("sale.created", {"amount": 6}, txn="s2")
        assert jr.transactions.incomplete_card_reads() == 1


def test_timestamps_are_iso_utc_with_microseconds_and_current() -> None:
    before = datetime.now(UTC)
    text = utc_now_iso()
    after = datetime.now(UTC)
    parsed = datetime.fromisoformat(text)
    assert parsed.isoformat(timespec="microseconds") == text
    assert parsed.utcoffset() == timedelta(0)
    assert before - timedelta(microseconds=1) <= parsed <= after + timedelta(microseconds=1)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_reused_encoder_writes_what_the_json_module_writes(value: dict[str, object]) -> None:
    assert canonical_json(value) == _ENCODER.encode(value)


# The projection's rules as the SQL upsert that implemented them before folding
# moved to Python (schema v3): the oracle the Python fold must agree with.
ORACLE_UPSERT = """
INSERT INTO transactions (txn, state, first_seq, last_seq, created_ts, updated_ts,
                          last_type, amount, currency, idem_key, summary)
VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (txn) DO UPDATE SET
    state      = COALESCE(?10, state),
    last_seq   = ?3,
    updated_ts = ?4,
    last_type  = ?5,
    amount     = COALESCE(amount, ?6),
    currency   = COALESCE(currency, ?7),
    idem_key   = COALESCE(idem_key, ?8),
    summary    = CASE WHEN ?9 = '{}' THEN summary ELSE json_patch(summary, ?9) END
"""


def oracle_fold(conn: sqlite3.Connection, event: Event) -> None:
    payload = event.payload
    state = STATE_AFTER.get(event.type)
    amount = payload.get("amount")
    currency = payload.get("currency")
    idem = payload.get("idempotency_key") if event.type == "sale.created" else None
    patch = summary_patch(event.type, payload, event.txn or "")
    if "attempts" in patch or "reversals" in patch:
        patch.pop("reversal", None)
    params = [
        event.txn, state or "open", event.seq, event.ts, event.type,
        amount if type(amount) is int else None,
        currency if isinstance(currency, str) else None,
        idem if isinstance(idem, str) else None,
        json.dumps(patch) if patch else "{}", state,
    ]  # fmt: skip
    try:
        conn.execute(ORACLE_UPSERT, params)
    except sqlite3.IntegrityError:  # the key is taken: the first sale keeps it
        params[7] = None
        conn.execute(ORACLE_UPSERT, params)


words = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
scalars = st.none() | st.booleans() | st.integers(-5, 5000) | words
field_values = scalars | st.dictionaries(words, scalars, max_size=3)
event_types = st.sampled_from(
    sorted({*STATE_AFTER, *SUBSTATE_AFTER, "test.event", "receipt.reprinted"})
)
payloads = st.dictionaries(
    # (masked_pan must look masked; the card-data guard has its own tests)
    st.sampled_from(
        sorted({*SUMMARY_FIELDS, "amount", "currency", "idempotency_key", "x"} - {"masked_pan"})
    ),
    field_values,
    max_size=5,
)
events_strategy = st.lists(
    st.tuples(event_types, st.sampled_from(["a", "b", "c"]), payloads), min_size=1, max_size=14
)


@settings(max_examples=120, deadline=None)
@given(events_strategy)
def test_the_fold_agrees_with_the_sql_rules_in_memory_and_on_disk(
    steps: list[tuple[str, str, dict[str, object]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Journal.open(Path(tmp)) as jr:
        for type_, txn, payload in steps:
            jr.append(type_, payload, txn=txn)
        oracle = sqlite3.connect(":memory:", isolation_level=None)
        migrate(oracle)
        for event in jr.iter_events():
            oracle_fold(oracle, event)
        expected = {
            row[0]: row_dict(row)
            for row in oracle.execute(f"SELECT {', '.join(COLUMNS)} FROM transactions")
        }
        keys = {row["idem_key"] for row in expected.values()} - {None}
        for txn in ("a", "b", "c"):  # pending events folded in memory
            assert _unflagged(jr.transactions.get(txn)) == expected.get(txn)
        for key in keys:
            got = jr.transactions.by_idempotency_key(key)
            assert _unflagged(got) == expected[_owner(expected, key)]
        jr.transactions.needing_work(frozenset())  # the table folded on disk
        for txn in ("a", "b", "c"):
            assert _unflagged(read_row(jr._conn, txn)) == expected.get(txn)
            assert _unflagged(jr.transactions.get(txn)) == expected.get(txn)


def _unflagged(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row without the derived ``reversal`` flag (tested on its own below), which the
    v3 SQL rules did not compute."""
    if row is None:
        return None
    summary = dict(row["summary"])
    if "attempts" in summary or "reversals" in summary:
        summary.pop("reversal", None)
    return {**row, "summary": summary}


def _owner(rows: dict[str, dict[str, object]], key: str) -> str:
    return next(txn for txn, row in rows.items() if row["idem_key"] == key)


def test_reads_fold_the_table_once_many_events_wait(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        for number in range(OVERLAY_MAX_PENDING):
            jr.append("test.event", {"n": number}, txn=f"s{number % 3}")
        assert jr.transactions.get("s0")["last_type"] == "test.event"  # type: ignore[index]
        assert stored_watermark(tmp_path) == 0  # within the overlay's bound: nothing written
        jr.append("auth.approved", {}, txn="s0")
        assert jr.transactions.get("s0")["state"] == "approved"  # type: ignore[index]
        assert stored_watermark(tmp_path) == OVERLAY_MAX_PENDING + 1
