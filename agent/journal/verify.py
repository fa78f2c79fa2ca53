"""Walk the whole chain and the checkpoints; name the first thing that is wrong.

Problems, by kind:

``missing``     a seq is absent (a deleted event), or no checkpoint covers a gap at the start
``modified``    an event's content no longer matches its hash, or its link was rewritten
``reordered``   an event verifies, but under another seq: events were moved or swapped
``bad_checkpoint`` a checkpoint's signature or position is wrong
``behind_anchor``  the head is older than an anchor the back office holds (deleted tail)
``anchor_mismatch`` the event at the anchor seq is not the one the back office holds

The walk streams rows in batches, so memory stays flat. Classifying a
problem may scan the table once more; that happens only on failure.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .chain import GENESIS_HASH
from .records import Checkpoint
from .store import Journal

ANCHOR_RE = re.compile(r"^(\d+):([0-9a-f]{64})$")
MAX_TRACE_DEPTH = 16


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = ANCHOR_RE.match(text.strip().lower())
        if match is None:
            raise ValueError(
                f"anchor {text!r} is not SEQ:HASH (a decimal seq, a colon, 64 hex digits), "
                "e.g. 1042:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            )
        return cls(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass
class VerifyResult:
    events: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoint_seq: int | None = None
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "checkpoint_seq": self.checkpoint_seq,
            "problem": self.problem.as_dict() if self.problem else None,
            "notes": self.notes,
        }


def verify_journal(journal: Journal, expect_head: Anchor | None = None) -> VerifyResult:
    """Verify checkpoints, every event's hash and link, and the optional anchor."""
    result = VerifyResult()
    start = _verify_checkpoints(journal, result)
    if result.problem:
        return result
    if start is not None:
        result.checkpoint_seq = start.seq
    expected_seq = start.seq + 1 if start else 1
    expected_prev = start.hash if start else GENESIS_HASH
    result.head_seq, result.head_hash = expected_seq - 1, expected_prev
    anchor_row: sqlite3.Row | None = None
    for row in journal.iter_rows(since=0):
        seq = int(row["seq"])
        if seq < expected_seq:
            result.problem = Problem(
                seq, "reordered", f"event seq {seq} lies inside the checkpointed prefix"
            )
            return result
        if seq > expected_seq:
            result.problem = Problem(
                expected_seq,
                "missing",
                f"events {_span(expected_seq, seq - 1)} are missing (deleted) before seq {seq}",
            )
            return result
        problem = _check_row(journal, row, expected_prev, start)
        if problem:
            result.problem = problem
            return result
        if expect_head and seq == expect_head.seq:
            anchor_row = row
        result.events += 1
        expected_prev = row["hash"]
        expected_seq = seq + 1
        result.head_seq, result.head_hash = seq, row["hash"]
    if expect_head:
        result.problem = _check_anchor(expect_head, result, start, anchor_row)
    return result


def _span(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}..{last}"


def _verify_checkpoints(journal: Journal, result: VerifyResult) -> Checkpoint | None:
    previous: Checkpoint | None = None
    for cp in journal.checkpoints():
        if journal.signer.checkpoint_sig(cp.seq, cp.hash, cp.ts) != cp.sig:
            result.problem = Problem(
                cp.seq, "bad_checkpoint", f"checkpoint at seq {cp.seq} has an invalid signature"
            )
            return None
        if previous is not None and cp.ts < previous.ts:
            result.problem = Problem(
                cp.seq, "bad_checkpoint", f"checkpoint at seq {cp.seq} is older than the one before"
            )
            return None
        previous = cp
    return previous


def _check_row(
    journal: Journal, row: sqlite3.Row, expected_prev: str, start: Checkpoint | None
) -> Problem | None:
    seq = int(row["seq"])
    if journal.signer.row_hash(row) != row["hash"]:
        original = _original_seq(journal, row, start, 0)
        if original is not None and original != seq:
            return Problem(
                seq, "reordered", f"the event stored at seq {seq} was written as seq {original}"
            )
        return Problem(
            seq,
            "modified",
            f"event seq {seq} does not match its hash: its type, time, transaction or "
            "payload was edited",
        )
    if row["prev_hash"] != expected_prev:
        predecessors = journal.find_seqs_by_hash(row["prev_hash"])
        if predecessors:
            return Problem(
                seq,
                "reordered",
                f"event seq {seq} follows seq {predecessors[0]} in the chain, not seq {seq - 1}",
            )
        return Problem(seq, "modified", f"event seq {seq} does not link to the event before it")
    return None


def _original_seq(
    journal: Journal, row: sqlite3.Row, start: Checkpoint | None, depth: int
) -> int | None:
    """The seq under which ``row`` verifies, found through its predecessor's hash."""
    prev = row["prev_hash"]
    candidate: int | None = None
    if prev == GENESIS_HASH:
        candidate = 1
    elif start is not None and prev == start.hash:
        candidate = start.seq + 1
    else:
        for pred_seq in journal.find_seqs_by_hash(prev):
            pred = _row_at(journal, pred_seq)
            if pred is None:
                continue
            if journal.signer.row_hash(pred) == pred["hash"]:
                candidate = pred_seq + 1
            elif depth < MAX_TRACE_DEPTH:
                found = _original_seq(journal, pred, start, depth + 1)
                candidate = found + 1 if found is not None else None
            break
    if candidate is None:
        return None
    recomputed = journal.signer.event_hash(
        prev, candidate, row["ts"], row["type"], row["txn"], row["payload"]
    )
    return candidate if recomputed == row["hash"] else None


def _row_at(journal: Journal, seq: int) -> sqlite3.Row | None:
    rows = list(journal.iter_rows(since=seq - 1, until=seq))
    return rows[0] if rows else None


def _check_anchor(
    anchor: Anchor, result: VerifyResult, start: Checkpoint | None, row: sqlite3.Row | None
) -> Problem | None:
    if result.head_seq < anchor.seq:
        return Problem(
            result.head_seq + 1,
            "behind_anchor",
            f"the journal ends at seq {result.head_seq} but the expected head is seq "
            f"{anchor.seq}: events {_span(result.head_seq + 1, anchor.seq)} were deleted "
            "from the tail",
        )
    if row is not None:
        if row["hash"] != anchor.hash:
            return Problem(
                anchor.seq,
                "anchor_mismatch",
                f"event seq {anchor.seq} has hash {row['hash'][:16]}…, the anchor says "
                f"{anchor.hash[:16]}…",
            )
        return None
    if start is not None and anchor.seq == start.seq:
        if start.hash != anchor.hash:
            return Problem(
                anchor.seq, "anchor_mismatch", "the checkpoint hash differs from the anchor"
            )
        return None
    result.notes.append(
        f"anchor seq {anchor.seq} lies in the pruned prefix; only the head position was checked"
    )
    return None
