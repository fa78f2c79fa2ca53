"""The agent's fast batch path (``agent/sync/batch.py``) against the protocol model, byte for byte.

``next_batch`` assembles the upload body from the journal's stored payload texts
without re-encoding them. These tests build batches through that path from real
journals — unicode, control characters, nulls, deep and odd payloads, signed and
unsigned — and check that :class:`posedge.protocol.models.EventBatch` accepts the
bytes, that the parsed batch is exactly the body (nothing lost, added or altered:
its canonical JSON is the body's), that each payload re-encodes to the very text
the journal hashed, and that the signature verifies for this batch only.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posedge.agent.journal import Journal
from posedge.agent.journal.canonical import canonical_json as journal_canonical
from posedge.agent.journal.errors import PayloadRejected
from posedge.agent.sync.batch import next_batch
from posedge.protocol.idempotency import canonical_json
from posedge.protocol.models import EventBatch
from posedge.protocol.signing import new_device_key, public_key_text, verify_batch

TERMINAL = "S1-L2"
KEY = new_device_key()
OTHER_KEY = new_device_key()

AWKWARD_PAYLOADS: list[dict[str, Any]] = [
    {},
    {"text": "café ☕ 𝄞 中文 \u2028\u2029 \u00a0"},
    {"nul": "a\x00b", "controls": "\t\n\r\x1b\x7f", "quote": '"\\/'},
    {"null": None, "list": [None, None], "empty": {}, "empty_list": []},
    {"nested": {"a": [1, {"b": [True, False, None, {"c": "ü"}]}], "d": {"e": {"f": {"g": []}}}}},
    {"big": 2**70, "neg": -(2**63), "zero": 0, "float": 1.5e300, "tiny": 5e-324, "pi": 3.14159},
    {'key "with" quotes\\': 1, "ключ": "значение", "": "empty key", "🔑": "emoji key"},
    {"amount": 1234, "currency": "EUR", "masked_pan": "411111******1111"},
]
AWKWARD_TXNS = [None, "s-1", "t:1.2_3-4", None, "x" * 128, None, "s-2", "s-2"]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "state") as jr:
        yield jr


def fill_awkward(journal: Journal) -> None:
    for payload, txn in zip(AWKWARD_PAYLOADS, AWKWARD_TXNS, strict=True):
        journal.append("test.event", payload, txn=txn)
    journal.append("sale.created", {"amount": 5, "currency": "EUR", "note": "ü"}, txn="s-3")


def check_batch(body: bytes, journal: Journal, terminal: str, signed: bool) -> EventBatch:
    """Everything a batch body must satisfy; returns the parsed batch."""
    batch = EventBatch.model_validate_json(body)
    as_sent = json.loads(body)
    # The model holds exactly what was sent: no field dropped, defaulted or coerced.
    assert batch.model_dump(mode="json", exclude_unset=True) == as_sent
    assert canonical_json(batch.model_dump(mode="json", exclude_unset=True)) == canonical_json(
        as_sent
    )
    assert batch.terminal == terminal
    stored = {row[0]: row for row in journal.read_raw(batch.first_seq - 1, len(batch.events))}
    for event in batch.events:
        _, ts, type_, txn, payload_text, prev_hash, digest = stored[event.seq]
        assert (event.ts, event.type, event.txn) == (ts, type_, txn)
        assert (event.prev_hash, event.hash) == (prev_hash, digest)
        # The payload re-encodes to the text the journal hashed (the chain still verifies).
        assert journal_canonical(event.payload) == payload_text
    if signed:
        assert batch.signature is not None
        assert verify_batch(
            public_key_text(KEY),
            batch.signature,
            terminal,
            batch.first_seq,
            batch.last_seq,
            batch.events[-1].hash,
        )
    else:
        assert batch.signature is None and "signature" not in as_sent
    return batch


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_awkward_events_round_trip(journal: Journal, signed: bool) -> None:
    fill_awkward(journal)
    batch = next_batch(journal, TERMINAL, 0, 1000, 1 << 20, KEY if signed else None)
    assert batch is not None and batch.count == len(AWKWARD_PAYLOADS) + 1
    parsed = check_batch(batch.body, journal, TERMINAL, signed)
    assert (parsed.first_seq, parsed.last_seq) == (batch.first_seq, batch.last_seq)
    assert parsed.events[-1].hash == batch.last_hash
    assert [e.payload for e in parsed.events[: len(AWKWARD_PAYLOADS)]] == AWKWARD_PAYLOADS


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_byte_bounded_batches_cover_the_journal_and_stay_under_the_bound(
    journal: Journal, signed: bool
) -> None:
    for number in range(60):
        journal.append(
            "test.event", {"n": number, "text": "é" * (number * 7 % 50), "x": None}, txn=None
        )
    max_bytes = 1500
    after, seen = 0, []
    while (batch := next_batch(journal, TERMINAL, after, 1000, max_bytes,
                               KEY if signed else None)) is not None:  # fmt: skip
        assert len(batch.body) <= max_bytes, f"batch {batch.first_seq}-{batch.last_seq}"
        parsed = check_batch(batch.body, journal, TERMINAL, signed)
        seen += [e.seq for e in parsed.events]
        after = batch.last_seq
    assert seen == list(range(1, 61))


def test_the_signature_covers_terminal_range_and_last_hash(journal: Journal) -> None:
    fill_awkward(journal)
    batch = next_batch(journal, TERMINAL, 2, 4, 1 << 20, KEY)
    assert batch is not None
    parsed = EventBatch.model_validate_json(batch.body)
    assert parsed.signature is not None
    public, sig = public_key_text(KEY), parsed.signature
    args = (TERMINAL, parsed.first_seq, parsed.last_seq, parsed.events[-1].hash)
    assert verify_batch(public, sig, *args)
    assert not verify_batch(public_key_text(OTHER_KEY), sig, *args)
    assert not verify_batch(public, sig, "S1-L3", *args[1:])
    assert not verify_batch(public, sig, TERMINAL, args[1] + 1, args[2], args[3])
    assert not verify_batch(public, sig, TERMINAL, args[1], args[2] + 1, args[3])
    assert not verify_batch(public, sig, TERMINAL, args[1], args[2], parsed.events[-1].prev_hash)


def test_a_terminal_id_needing_escapes_is_still_valid(journal: Journal) -> None:
    journal.append("test.event", {"a": 1})
    batch = next_batch(journal, "lane.1_a-b", 0, 10, 4096, KEY)
    assert batch is not None
    check_batch(batch.body, journal, "lane.1_a-b", True)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8), children, max_size=4
        )
    ),
    max_leaves=25,
)
PAYLOADS = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8), JSON_VALUES, max_size=5
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(PAYLOADS, min_size=1, max_size=6),
    txn=st.none() | st.from_regex(r"\A[A-Za-z0-9._:-]{1,20}\Z"),
    signed=st.booleans(),
)
def test_any_storable_payload_round_trips(
    payloads: list[dict[str, Any]], txn: str | None, signed: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Journal.open(Path(tmp) / "state") as journal:
        stored = []
        for payload in payloads:
            try:
                journal.append("test.event", payload, txn=txn)
            except PayloadRejected:  # card-like digit runs are refused by design
                continue
            stored.append(payload)
        batch = next_batch(journal, TERMINAL, 0, 100, 1 << 22, KEY if signed else None)
        if not stored:
            assert batch is None
            return
        assert batch is not None
        parsed = check_batch(batch.body, journal, TERMINAL, signed)
        assert [json.loads(journal_canonical(e.payload)) for e in parsed.events] == [
            json.loads(journal_canonical(p)) for p in stored
        ]
