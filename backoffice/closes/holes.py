"""Re-sent events for seqs the back office lacks below its head: do they fit the chain?

A terminal asked to resend from a seq (``resend_from`` in the heartbeat reply,
docs/sync-protocol.md) uploads events the back office already holds — duplicates,
compared by hash as always — and events at seqs it lost (rows deleted from its
table, a restore). :func:`refill` decides which of the batch's events at seqs at
or below the held head are *fills* (the back office holds no event there) and
whether every fill fits the hashes around it:

- back link: a fill's ``prev_hash`` is the hash of the event before it (held, or
  the batch's own event there, itself held or a fill checked the same way), or
  64 zeros at seq 1. A fill whose predecessor is missing too and not in the batch
  cannot be checked: the batch is a sequence gap naming the first seq of that hole;
- forward link: the held event after a fill (or the batch's own) names the fill's
  hash as its ``prev_hash``; a fill at the held head has the head's hash. A fill
  followed by another missing seq outside the batch is linked when that seq comes.

A held seq sent with another hash stays a conflict. Pure: no I/O; the store reads
the neighbouring rows and writes the fills (backoffice/store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from posedge.protocol.models import ZERO_HASH, Event


@dataclass(frozen=True)
class Refusal:
    """Why the batch's events below the head are refused (nothing is stored)."""

    status: Literal["sequence-gap", "chain-mismatch", "conflict"]
    expected_seq: int | None
    detail: str


def refill(
    old: Sequence[Event],
    stored: Mapping[int, tuple[str, str]],
    head_seq: int,
    head_hash: str | None,
    last_held_below: Callable[[int], int],
) -> tuple[list[Event], Refusal | None]:
    """The fills among ``old`` (the batch's events at seqs <= ``head_seq``), or a refusal.

    ``stored`` maps held seqs from one below the first of ``old`` to one above its
    last onto their (prev_hash, hash). ``last_held_below(seq)`` is the highest held
    seq below ``seq`` (0: none), asked only to name where an unchecked hole starts.
    """
    fills: list[Event] = []
    for ev in old:
        held = stored.get(ev.seq)
        if held is None:
            fills.append(ev)
        elif held[1] != ev.hash:
            return [], Refusal(
                "conflict",
                None,
                f"the back office holds a different event at seq {ev.seq} (hash differs); "
                "history was rewritten on one side - nothing stored",
            )
    if not fills:
        return [], None
    in_batch = {ev.seq: ev for ev in old}
    for ev in fills:
        refusal = _check_fill(ev, in_batch, stored, head_seq, head_hash, last_held_below)
        if refusal is not None:
            return [], refusal
    return fills, None


def _check_fill(
    ev: Event,
    in_batch: Mapping[int, Event],
    stored: Mapping[int, tuple[str, str]],
    head_seq: int,
    head_hash: str | None,
    last_held_below: Callable[[int], int],
) -> Refusal | None:
    before = ev.seq - 1
    if before == 0:
        expected_prev: str | None = ZERO_HASH
    elif before in stored:
        expected_prev = stored[before][1]
    elif before in in_batch:
        expected_prev = in_batch[before].hash
    else:
        start = last_held_below(ev.seq) + 1
        return Refusal(
            "sequence-gap",
            start,
            f"seq {ev.seq} is missing at the back office and so is seq {before}: a re-sent "
            f"event is accepted only after its predecessor - send from seq {start}",
        )
    if ev.prev_hash != expected_prev:
        return Refusal(
            "chain-mismatch",
            ev.seq,
            f"re-sent event {ev.seq} has a prev_hash that is not the hash of event {before}; "
            "it does not fit the held chain - nothing stored",
        )
    after = ev.seq + 1
    next_prev: str | None = None
    if after in stored:
        next_prev = stored[after][0]
    elif after in in_batch:
        next_prev = in_batch[after].prev_hash
    if ev.seq == head_seq and head_hash is not None and ev.hash != head_hash:
        next_prev = head_hash  # the head the terminals table records names another event
    if next_prev is not None and next_prev != ev.hash:
        return Refusal(
            "chain-mismatch",
            ev.seq,
            f"re-sent event {ev.seq} has a hash that event {after} does not name as its "
            "prev_hash; it does not fit the held chain - nothing stored",
        )
    return None
