"""Event batches for upload: bounded by count and bytes, encoded without re-parsing.

The journal stores each payload as canonical JSON text, so a batch body is
assembled from those texts directly: no decode/encode round trip per event,
and memory holds one batch at a time however long the backlog.

An enrolled terminal passes its device key: the body then carries
``signature``, the key's signature over (terminal, first seq, last seq, hash of
the last event) (:func:`posedge.protocol.signing.sign_batch`). The bytes are
tested against :class:`posedge.protocol.models.EventBatch`
(tests/protocol/test_batch_bytes.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posedge.protocol.signing import sign_batch

from ..journal import Journal

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# ,"signature":"<86 characters>"
_SIGNATURE_BYTES = 101


@dataclass(frozen=True)
class Batch:
    first_seq: int
    last_seq: int
    count: int
    body: bytes
    last_hash: str


def next_batch(
    journal: Journal,
    terminal: str,
    after_seq: int,
    max_events: int,
    max_bytes: int,
    signing_key: Ed25519PrivateKey | None = None,
) -> Batch | None:
    """The events after ``after_seq`` that fit the bounds (at least one), or None;
    signed by ``signing_key`` when given."""
    rows = journal.read_raw(after_seq, max_events)
    if not rows:
        return None
    head = f'{{"terminal":{_dumps(terminal)},"first_seq":{rows[0][0]},"last_seq":'
    parts: list[str] = []
    size = len(head) + 64 + (_SIGNATURE_BYTES if signing_key is not None else 0)
    last = rows[0]
    for row in rows:
        seq, ts, type_, txn, payload, prev_hash, digest = row
        text = (
            f'{{"seq":{seq},"ts":{_dumps(ts)},"type":{_dumps(type_)},"txn":{_dumps(txn)},'
            f'"payload":{payload},"prev_hash":"{prev_hash}","hash":"{digest}"}}'
        )
        encoded_len = len(text.encode("utf-8")) if not text.isascii() else len(text)
        if parts and size + encoded_len + 1 > max_bytes:
            break
        parts.append(text)
        size += encoded_len + 1
        last = row
    signature = (
        ""
        if signing_key is None
        else f',"signature":"{sign_batch(signing_key, terminal, rows[0][0], last[0], last[6])}"'
    )
    body = f'{head}{last[0]},"events":[{",".join(parts)}]{signature}}}'
    return Batch(rows[0][0], last[0], len(parts), body.encode("utf-8"), last[6])
