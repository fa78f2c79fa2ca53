"""The money invariant checker: the pure comparison per category, and
``posedge backoffice reconcile`` over a real back office database and an export file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from posedge.agent.cli import cli
from posedge.backoffice.reconcile import ExportError, read_export, reconcile
from posedge.simulator.backoffice import AuthorizationPolicy, BackofficeServer

from .helpers import authorization, reversal


class Journal:
    """Exported events as ``posedge journal export`` writes them (hashes are not checked)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, type_: str, txn: str | None, **payload: Any) -> None:
        seq = len(self.events) + 1
        self.events.append(
            {
                "seq": seq,
                "ts": f"2026-11-26T10:00:{seq % 60:02d}.000000+00:00",
                "type": type_,
                "txn": txn,
                "payload": payload,
                "prev_hash": "0" * 64,
                "hash": f"{seq:064x}",
            }
        )

    def sale(self, txn: str, amount: int, *types: str, **attempts: str) -> None:
        """``sale.created`` then ``types``; auth and reversal events name the online attempt
        unless ``attempts`` maps an event type to another."""
        self.add("sale.created", txn, amount=amount, currency="EUR", reference=txn)
        for type_ in types:
            attempt = attempts.get(type_.replace(".", "_"))
            if attempt is None:
                forward = type_.startswith("forward.")
                attempt = f"{txn}:forward" if forward else f"{txn}:online"
            payload = {"attempt": attempt} if type_.split(".")[0] in _NAMING else {}
            self.add(type_, txn, **payload)

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(ev, sort_keys=True) + "\n" for ev in self.events))
        return path


_NAMING = ("auth", "forward", "reversal")
ONLINE_APPROVED = ("card.read", "auth.requested", "auth.approved")
OFFLINE = ("card.read", "auth.requested", "auth.unavailable", "offline.approved")


def check(journal: Journal, captured: dict[str, int], reversals: Any = ()) -> dict[str, Any]:
    return reconcile("lane1", journal.events, captured, reversals)


def test_every_sale_matches() -> None:
    j = Journal()
    j.add("technician.note", None, note="no txn: not a sale")
    j.sale("s-ok", 100, *ONLINE_APPROVED)
    j.sale("s-declined", 200, "card.read", "auth.requested", "auth.declined")
    j.sale("s-void", 300, *ONLINE_APPROVED, "sale.voided", "reversal.requested", "reversal.acked")
    j.sale("s-fwd", 400, *OFFLINE, "forward.requested", "forward.approved")
    j.sale("s-cancel", 500, "sale.cancelled")
    doc = check(j, {"s-ok": 100, "s-fwd": 400})
    assert doc == {
        "terminal": "lane1",
        "sales": 5,
        "matched": 5,
        "ok": True,
        "mismatches": [],
        "not_final": [],
        "reversals_pending": [],
        "uncollectable": [],
        "unknown_at_till": [],
    }


def test_a_voided_sale_still_captured_is_a_mismatch() -> None:
    j = Journal()
    j.sale("s-void", 300, *ONLINE_APPROVED, "sale.voided", "reversal.requested", "reversal.acked")
    doc = check(j, {"s-void": 300})
    assert doc["ok"] is False and doc["matched"] == 0
    assert doc["mismatches"] == [
        {
            "txn": "s-void",
            "till_state": "voided",
            "forward": None,
            "expected_captured": 0,
            "captured": 300,
            "amount": 300,
            "currency": "EUR",
        }
    ]


def test_an_approved_sale_not_captured_is_a_mismatch() -> None:
    j = Journal()
    j.sale("s-ok", 100, *ONLINE_APPROVED)
    j.sale("s-fwd", 400, *OFFLINE, "forward.requested", "forward.approved")
    doc = check(j, {"s-ok": 200})  # captured twice, and the forward not at all
    assert [(m["txn"], m["expected_captured"], m["captured"]) for m in doc["mismatches"]] == [
        ("s-ok", 100, 200),
        ("s-fwd", 400, 0),
    ]
    assert doc["mismatches"][1]["till_state"] == "approved_offline"
    assert doc["mismatches"][1]["forward"] == "approved"


def test_sales_whose_money_may_still_move_are_not_final() -> None:
    j = Journal()
    j.sale("s-auth", 100, "card.read", "auth.requested")
    j.sale("s-doubt", 200, "card.read", "auth.requested", "auth.unknown", "reversal.requested")
    j.sale("s-unforwarded", 300, *OFFLINE)
    j.sale("s-forwarding", 400, *OFFLINE, "forward.requested")
    doc = check(j, {})
    assert doc["not_final"] == ["s-auth", "s-doubt", "s-unforwarded", "s-forwarding"]
    assert doc["matched"] == 0 and doc["mismatches"] == [] and doc["ok"] is False
    assert doc["reversals_pending"] == [
        {"txn": "s-doubt", "attempt": "s-doubt:online", "at_backoffice": False}
    ]


def test_reversals_the_till_still_waits_for() -> None:
    j = Journal()
    # A void of an offline sale whose forward was in flight: two reversals, one acked.
    j.sale(
        "s-void",
        500,
        "card.read",
        "auth.requested",
        "auth.unknown",
        "reversal.requested",
        "reversal.acked",
        "offline.approved",
        "forward.requested",
        "sale.voided",
    )
    j.add("reversal.requested", "s-void", attempt="s-void:forward")
    # A sale journaled before protocol version 2: its reversal names no attempt.
    j.sale("s-old", 600, "card.read", "auth.requested", "auth.unknown", "sale.reversed")
    j.add("reversal.requested", "s-old", reason="timeout")
    reversals = [{"txn": "s-void", "attempt": "s-void:forward", "had_authorization": True}]
    doc = check(j, {}, reversals)
    assert doc["reversals_pending"] == [
        {"txn": "s-void", "attempt": "s-void:forward", "at_backoffice": True},
        {"txn": "s-old", "attempt": "s-old", "at_backoffice": False},
    ]
    assert doc["mismatches"] == [] and doc["matched"] == 2 and doc["ok"] is False
    j.add("reversal.acked", "s-void", attempt="s-void:forward")
    j.add("reversal.acked", "s-old", had_authorization=False)
    assert check(j, {}, reversals)["ok"] is True


def test_uncollectable_offline_sales_are_listed_not_failed() -> None:
    j = Journal()
    j.sale("s-declined", 700, *OFFLINE, "forward.requested", "forward.declined")
    j.sale("s-expired", 800, *OFFLINE, "forward.expired")
    doc = check(j, {})
    assert doc["ok"] is True and doc["matched"] == 2
    assert doc["uncollectable"] == [
        {"txn": "s-declined", "forward": "declined", "amount": 700},
        {"txn": "s-expired", "forward": "expired", "amount": 800},
    ]
    captured = check(j, {"s-declined": 700})  # the back office says it holds the money
    assert [m["txn"] for m in captured["mismatches"]] == ["s-declined"]


def test_money_captured_for_a_sale_the_till_does_not_have() -> None:
    j = Journal()
    j.sale("s-ok", 100, *ONLINE_APPROVED)
    j.add("receipt.printed", "s-pruned")  # events of a sale, but not the sale itself
    doc = check(j, {"s-ok": 100, "s-ghost": 900, "s-pruned": 50})
    assert doc["unknown_at_till"] == [
        {"txn": "s-ghost", "captured": 900},
        {"txn": "s-pruned", "captured": 50},
    ]
    assert doc["sales"] == 1 and doc["matched"] == 1 and doc["ok"] is False


def test_read_export_names_the_file_and_line(tmp_path: Path) -> None:
    j = Journal()
    j.sale("s-ok", 100, *ONLINE_APPROVED)
    path = j.write(tmp_path / "events.jsonl")
    assert read_export(path) == j.events
    with path.open("a") as out:
        out.write("\n{not json\n")
    with pytest.raises(ExportError, match=r"events\.jsonl:6: not a JSON object"):
        read_export(path)
    path.write_text('{"seq": "1", "type": "sale.created", "txn": "s", "payload": {}}\n')
    with pytest.raises(ExportError, match=r"events\.jsonl:1: not a journal event"):
        read_export(path)
    with pytest.raises(ExportError, match="cannot read"):
        read_export(tmp_path / "missing.jsonl")


# -- the command, over a real back office ------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def bo_db(db_target: Path | str) -> Path | str:
    """A back office that approved s-ok and s-void (then reversed s-void's online attempt),
    and an approved forward for s-fwd."""
    db = db_target
    with BackofficeServer(db) as bo, httpx.Client(base_url=bo.url, timeout=5.0) as c:
        bo.config.policy = AuthorizationPolicy()
        for body in (
            authorization("s-ok", 100),
            authorization("s-void", 300),
            authorization("s-fwd", 400, forwarded=True),
        ):
            reply = c.post(
                "/v1/authorizations", json=body, headers={"Idempotency-Key": body["attempt"]}
            )
            assert reply.json()["outcome"] == "approved"
        rev = reversal("s-void", amount=300)
        assert c.post(
            "/v1/reversals", json=rev, headers={"Idempotency-Key": rev["reversal"]}
        ).json()["had_authorization"]
    return db


def till_journal() -> Journal:
    j = Journal()
    j.sale("s-ok", 100, *ONLINE_APPROVED)
    j.sale("s-void", 300, *ONLINE_APPROVED, "sale.voided", "reversal.requested", "reversal.acked")
    j.sale("s-fwd", 400, *OFFLINE, "forward.requested", "forward.approved")
    return j


def test_reconcile_cli_ok_and_mismatch(bo_db: Path | str, tmp_path: Path) -> None:
    export = till_journal().write(tmp_path / "events.jsonl")
    result = run(
        "--json", "backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export)
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)  # exactly one JSON document
    assert doc["terminal"] == "lane1" and doc["ok"] is True
    assert doc["sales"] == 3 and doc["matched"] == 3
    human = run("backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export))
    assert human.exit_code == 0
    assert "terminal lane1: 3 sales, 3 matched" in human.output and "— OK" in human.output

    # The till says s-ok was voided: the back office still holds its money.
    j = till_journal()
    j.add("sale.voided", "s-ok")
    j.write(export)
    result = run(
        "backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export), "--json"
    )
    assert result.exit_code == 3, result.output
    doc = json.loads(result.output)
    assert [(m["txn"], m["till_state"], m["captured"]) for m in doc["mismatches"]] == [
        ("s-ok", "voided", 100)
    ]
    human = run("backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export))
    assert human.exit_code == 3
    assert "mismatches" in human.output and "s-ok" in human.output
    assert "NOT OK" in human.output


def test_reconcile_cli_bad_input_exits_2(bo_db: Path | str, tmp_path: Path) -> None:
    journal = till_journal()
    export = journal.write(tmp_path / "events.jsonl")
    with export.open("a") as out:
        out.write("garbage\n")
    result = run("backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export))
    assert result.exit_code == 2
    assert f"events.jsonl:{len(journal.events) + 1}: not a JSON object" in result.output
    missing = run(
        "backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(tmp_path / "no")
    )
    assert missing.exit_code == 2 and "cannot read" in missing.output
    till_journal().write(export)
    no_db = run(
        "backoffice", "reconcile", "--db", str(tmp_path / "no.db"), "--journal-export", str(export)
    )
    assert no_db.exit_code == 2 and "no back office database" in no_db.output
    not_db = tmp_path / "not.db"
    not_db.write_text("hello, not sqlite\n" * 100)
    result = run("backoffice", "reconcile", "--db", str(not_db), "--journal-export", str(export))
    assert result.exit_code == 2 and "not a readable back office database" in result.output


def test_reconcile_cli_needs_terminal_when_the_db_holds_several(
    bo_db: Path | str, tmp_path: Path
) -> None:
    with BackofficeServer(bo_db) as bo, httpx.Client(base_url=bo.url, timeout=5.0) as c:
        body = authorization("s-9", terminal="lane2")
        c.post("/v1/authorizations", json=body, headers={"Idempotency-Key": body["attempt"]})
    export = till_journal().write(tmp_path / "events.jsonl")
    args = ["backoffice", "reconcile", "--db", str(bo_db), "--journal-export", str(export)]
    result = run(*args)
    assert result.exit_code == 2
    assert "2 terminals (lane1, lane2)" in result.output and "--terminal" in result.output
    result = run("--json", *args, "--terminal", "lane1")
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True
    result = run("--json", *args, "--terminal", "lane2")
    assert result.exit_code == 3
    assert json.loads(result.output)["unknown_at_till"] == [{"txn": "s-9", "captured": 1234}]
