"""Re-sent events for seqs the back office lost below its head (a resend): accepted when
they fit the hashes around them, refused otherwise — on a real store, both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import EventBatch

from ..helpers import batch, chain


@pytest.fixture
def store(db_target: Path | str) -> Iterator[BackofficeStore]:
    with BackofficeStore(db_target) as s:
        yield s


def upload(store: BackofficeStore, events: list[dict[str, Any]]) -> Any:
    return store.ingest(EventBatch.model_validate(batch(events)))


def delete(store: BackofficeStore, *seqs: int) -> None:
    with store.transaction() as tx:
        for seq in seqs:
            tx.execute("DELETE FROM events WHERE terminal = 'lane1' AND seq = ?", (seq,))


def held_seqs(store: BackofficeStore) -> list[int]:
    return [ev["seq"] for ev in store.events("lane1")]


def test_a_resent_hole_is_filled_and_the_rest_counted_as_duplicates(
    store: BackofficeStore,
) -> None:
    events = chain(10)
    assert upload(store, events).acked_seq == 10
    delete(store, 4, 5, 6)
    result = upload(store, events[3:])  # resend from seq 4, as asked
    assert result.status == "ok"
    assert result.filled == (4, 5, 6)
    assert (result.accepted, result.duplicates, result.acked_seq) == (3, 4, 10)
    assert held_seqs(store) == list(range(1, 11))
    assert store.held_integrity("lane1") == {"events": 10, "missing_seqs": 0, "chain_breaks": 0}


def test_a_resend_that_also_carries_new_events(store: BackofficeStore) -> None:
    events = chain(12)
    upload(store, events[:10])
    delete(store, 10)  # the head itself
    result = upload(store, events[9:])
    assert (result.status, result.filled, result.accepted, result.acked_seq) == (
        "ok", (10,), 3, 12,
    )  # fmt: skip
    assert held_seqs(store) == list(range(1, 13))


def test_a_resent_event_that_does_not_fit_the_chain_is_refused(store: BackofficeStore) -> None:
    events = chain(10)
    upload(store, events)
    delete(store, 5)
    forged = chain(1, start=5, prev=events[3]["hash"], salt="forged")  # right prev, other hash
    result = upload(store, forged)
    assert result.status == "chain-mismatch" and result.expected_seq == 5
    assert "event 6 does not name" in result.detail
    wrong_prev = chain(1, start=5, prev="ab" * 32)
    wrong_prev[0]["hash"] = events[4]["hash"]
    result = upload(store, wrong_prev)
    assert result.status == "chain-mismatch" and "not the hash of event 4" in result.detail
    assert 5 not in held_seqs(store)


def test_a_resend_starting_inside_a_hole_is_a_gap_naming_its_start(
    store: BackofficeStore,
) -> None:
    events = chain(10)
    upload(store, events)
    delete(store, 3, 4, 5)
    result = upload(store, events[4:])  # from 5: 3 and 4 are missing too
    assert (result.status, result.expected_seq) == ("sequence-gap", 3)
    assert held_seqs(store) == [1, 2, 6, 7, 8, 9, 10]


def test_a_held_seq_with_another_hash_is_still_a_conflict(store: BackofficeStore) -> None:
    events = chain(6)
    upload(store, events)
    delete(store, 2)
    other = chain(6, salt="other")
    result = upload(store, other[1:])
    assert result.status == "conflict" and "seq 3" in result.detail
    assert held_seqs(store) == [1, 3, 4, 5, 6]
