"""Attempts and reversals in the projection: what is owed, what is pending, the flag.

Crash recovery finds sales through ``summary.reversal == "pending"`` and
reverses what :func:`owed_reversals` names, so these rules decide whether a
voided or in-doubt sale's money is ever released.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from posedge.agent.journal import Journal
from posedge.agent.journal.projection import owed_reversals, pending_reversals

SALE = {"amount": 700, "currency": "EUR", "request_hash": "h", "idempotency_key": "k"}


def fold(tmp_path: Path, steps: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    with Journal.open(tmp_path) as jr:
        jr.append("sale.created", SALE, txn="s-1")
        for type_, payload in steps:
            jr.append(type_, payload, txn="s-1")
        row = jr.transactions.get("s-1")
        assert row is not None
        # The same row again from the table folded on disk.
        jr.transactions.needing_work(frozenset())
        assert jr.transactions.get("s-1") == row
        return row


def reversal(attempt: str) -> dict[str, Any]:
    return {"attempt": attempt, "key": f"{attempt}:reversal", "request": {"attempt": attempt}}


ONLINE, FORWARD = "s-1:online", "s-1:forward"


def test_an_unknown_online_attempt_is_owed_until_its_reversal_is_journaled(
    tmp_path: Path,
) -> None:
    row = fold(
        tmp_path, [("auth.requested", {"attempt": ONLINE}), ("auth.unknown", {"attempt": ONLINE})]
    )
    assert owed_reversals(row["state"], row["summary"]) == [ONLINE]
    assert row["summary"]["reversal"] == "pending"


def test_a_journaled_reversal_is_pending_with_its_request_then_acked(tmp_path: Path) -> None:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("auth.requested", {"attempt": ONLINE}),
        ("auth.unknown", {"attempt": ONLINE}),
        ("reversal.requested", reversal(ONLINE)),
    ]
    row = fold(tmp_path / "a", steps)
    assert owed_reversals(row["state"], row["summary"]) == []
    pending = pending_reversals("s-1", row["summary"])
    assert pending[ONLINE]["request"] == {"attempt": ONLINE}
    assert pending[ONLINE]["key"] == f"{ONLINE}:reversal"
    row = fold(
        tmp_path / "b",
        [*steps, ("reversal.acked", {"attempt": ONLINE, "had_authorization": False})],
    )
    assert pending_reversals("s-1", row["summary"]) == {}
    assert row["summary"]["reversal"] == "acked"


@pytest.mark.parametrize(
    ("forward_steps", "owed"),
    [
        # Approved online, voided: the online attempt holds money.
        ([], [ONLINE]),
        # Forward in flight at the void: it may land; reverse it too.
        ([("forward.requested", {"attempt": FORWARD}), ("forward.cancelled", {})],
         [ONLINE, FORWARD]),
        # Forward approved before the void.
        ([("forward.requested", {"attempt": FORWARD}), ("forward.approved", {"attempt": FORWARD})],
         [ONLINE, FORWARD]),
        # Forward declined: nothing to release there.
        ([("forward.requested", {"attempt": FORWARD}), ("forward.declined", {"attempt": FORWARD})],
         [ONLINE]),
    ],
)  # fmt: skip
def test_a_void_owes_a_reversal_of_every_attempt_that_may_hold_money(
    tmp_path: Path, forward_steps: list[tuple[str, dict[str, Any]]], owed: list[str]
) -> None:
    steps = [
        ("auth.requested", {"attempt": ONLINE}),
        ("auth.approved", {"attempt": ONLINE}),
        *forward_steps,
    ]
    before = fold(tmp_path / "before", steps)
    assert owed_reversals(before["state"], before["summary"]) == (
        [FORWARD] if ("forward.cancelled", {}) in forward_steps else []
    )
    row = fold(tmp_path / "after", [*steps, ("sale.voided", {"reason": "voided by the till"})])
    assert sorted(owed_reversals(row["state"], row["summary"])) == sorted(owed)
    assert row["summary"]["reversal"] == "pending"


def test_an_unavailable_or_declined_attempt_is_never_reversed(tmp_path: Path) -> None:
    row = fold(
        tmp_path,
        [
            ("auth.requested", {"attempt": ONLINE}),
            ("auth.unavailable", {"attempt": ONLINE}),
            ("offline.approved", {"offline": True}),
            ("sale.voided", {"reason": "voided"}),
            ("forward.cancelled", {"reason": "voided before the forward completed"}),
        ],
    )
    assert owed_reversals(row["state"], row["summary"]) == []
    assert "reversal" not in row["summary"]


def test_events_before_protocol_v2_name_their_attempts_by_the_old_keys(tmp_path: Path) -> None:
    row = fold(
        tmp_path,
        [
            ("auth.requested", {}),
            ("auth.unknown", {"reason": "timeout"}),
            ("reversal.requested", {"reason": "timeout waiting for response"}),
            ("offline.approved", {"offline": True}),
            ("forward.requested", {}),
        ],
    )
    attempts = row["summary"]["attempts"]
    assert attempts["s-1"]["outcome"] == "unknown"
    assert attempts["s-1:forward"]["outcome"] == "requested"
    # The old reversal is pending but its request was never journaled: recovery writes one.
    assert pending_reversals("s-1", row["summary"]) == {"s-1": {"state": "pending"}}
