"""``posedge backoffice closes`` and ``posedge backoffice settlement`` over a back office a
real till uploaded its closes to (both backends), and their answers to bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from posedge.agent.cli import cli

from .conftest import TERMINAL
from .support import Till

HEADER = "record,store,business_day,terminal,currency,brand,outcome,count,amount_minor,amount"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def db(till: Till) -> str:
    target = till.backoffice.db
    return str(target)


def two_days(till: Till) -> tuple[str, str]:
    """Day 1: two visa sales and a declined mastercard one; day 2: the first voided, a
    sale in USD. Both closes uploaded and reconciled."""
    a = till.sale(1250)
    till.sale(2000)
    till.sale(951, outcome="declined", brand="mastercard")
    till.close()
    till.now = till.now.replace(day=2)
    till.void(a, 1250)
    till.sale(999, currency="USD")
    till.close()
    till.upload()
    return a, "2026-12-02"


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_settlement_csv_rows_totals_and_adjustments(till: Till) -> None:
    two_days(till)
    first = run(
        "backoffice", "settlement", "--db", db(till), "--store", "S1", "--day", "2026-12-01"
    )
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == HEADER
    got = [(r["record"], r["currency"], r["brand"], r["outcome"], r["count"], r["amount_minor"],
            r["amount"]) for r in rows(first.output)]  # fmt: skip
    assert got == [
        ("sales", "EUR", "mastercard", "declined", "1", "951", "9.51"),
        ("sales", "EUR", "visa", "approved", "2", "3250", "32.50"),
        ("total", "EUR", "*", "captured", "2", "3250", "32.50"),
        ("total", "EUR", "*", "adjustment", "0", "0", "0.00"),
        ("total", "EUR", "*", "net_captured", "2", "3250", "32.50"),
    ]
    second = run(
        "backoffice", "settlement", "--db", db(till), "--store", "S1", "--day", "2026-12-02"
    )
    assert second.exit_code == 0, second.output
    day2 = [(r["record"], r["currency"], r["brand"], r["outcome"], r["amount_minor"], r["amount"])
            for r in rows(second.output)]  # fmt: skip
    assert day2 == [
        ("sales", "EUR", "visa", "voided", "1250", "12.50"),
        ("sales", "USD", "visa", "approved", "999", "9.99"),
        ("total", "EUR", "*", "captured", "0", "0.00"),
        ("total", "EUR", "*", "adjustment", "-1250", "-12.50"),
        ("total", "EUR", "*", "net_captured", "-1250", "-12.50"),
        ("total", "USD", "*", "captured", "999", "9.99"),
        ("total", "USD", "*", "adjustment", "0", "0.00"),
        ("total", "USD", "*", "net_captured", "999", "9.99"),
    ]
    assert {r["store"] for r in rows(second.output)} == {"S1"}
    assert {r["terminal"] for r in rows(second.output)} == {"*"}


def test_settlement_per_lane_to_a_file_and_as_json(till: Till, tmp_path: Path) -> None:
    two_days(till)
    out = tmp_path / "settle.csv"
    done = run("backoffice", "settlement", "--db", db(till), "--store", "S1", "--day",
               "2026-12-01", "--per-lane", "--output", str(out))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "-> " in done.output and str(out) in done.output
    lanes = [(r["record"], r["terminal"], r["outcome"]) for r in rows(out.read_text())]
    assert ("sales", TERMINAL, "approved") in lanes
    assert ("total", TERMINAL, "net_captured") in lanes and ("total", "*", "net_captured") in lanes
    doc = json.loads(run("--json", "backoffice", "settlement", "--db", db(till), "--store", "S1",
                         "--day", "2026-12-01").output)  # fmt: skip
    assert doc["ok"] is True and doc["lanes"] == {TERMINAL: "reconciled"}
    assert doc["columns"] == HEADER.split(",")


def test_settlement_with_a_lane_not_reconciled_is_exit_3(till: Till, tmp_path: Path) -> None:
    sale = till.sale(1000)
    till.void(sale, 1000, tell_backoffice=False)  # the back office keeps the money
    till.close()
    till.upload()
    out = tmp_path / "s.csv"
    done = run("backoffice", "settlement", "--db", db(till), "--store", "S1", "--day",
               "2026-12-01", "--output", str(out))  # fmt: skip
    assert done.exit_code == 3
    assert f"{TERMINAL} (mismatch)" in done.output  # the warning (stderr is mixed in here)
    assert out.read_text().splitlines()[0] == HEADER
    missing = run("backoffice", "settlement", "--db", db(till), "--store", "S1", "--day",
                  "2026-11-30")  # fmt: skip
    assert missing.exit_code == 3 and f"{TERMINAL} (no close)" in missing.output


def test_closes_lists_lanes_per_day(till: Till) -> None:
    two_days(till)
    doc = json.loads(run("--json", "backoffice", "closes", "--db", db(till)).output)
    assert [(d["terminal"], d["business_day"], d["state"]) for d in doc["lanes"]] == [
        (TERMINAL, "2026-12-01", "reconciled"),
        (TERMINAL, "2026-12-02", "reconciled"),
    ]
    one = json.loads(run("--json", "backoffice", "closes", "--db", db(till), "--day",
                         "2026-12-02", "--store", "S1").output)  # fmt: skip
    assert [d["business_day"] for d in one["lanes"]] == ["2026-12-02"]
    narrow = run("backoffice", "closes", "--db", db(till), env={"COLUMNS": "30"})
    assert narrow.exit_code == 0 and TERMINAL in narrow.output  # never cut


def test_closes_exit_3_and_reconcile_again(till: Till) -> None:
    till.sale(1000)
    till.close()
    till.upload()
    with till.store.transaction() as tx:
        tx.execute("DELETE FROM events WHERE terminal = ? AND seq = 2", (TERMINAL,))
    again = run("--json", "backoffice", "closes", "reconcile", "--db", db(till), "--all")
    assert again.exit_code == 3, again.output
    assert json.loads(again.output)["states"] == {"missing_seqs": 1}
    listed = run("backoffice", "closes", "--db", db(till))
    assert listed.exit_code == 3 and "missing_seqs" in listed.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--day", "2026-13-01"], "'2026-13-01' is not a business day: give YYYY-MM-DD"),
        (["--day", "20261201"], "'20261201' is not a business day"),
        (["--day", "yesterday"], "'yesterday' is not a business day"),
        (["--store", "nowhere"], "no store 'nowhere'"),
    ],
)
def test_bad_input_is_exit_2(till: Till, args: list[str], expected: str) -> None:
    till.sale(1000)
    till.close()
    till.upload()
    base = {"--store": "S1", "--day": "2026-12-01"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    settle = run("backoffice", "settlement", "--db", db(till), *flat)
    assert settle.exit_code == 2 and expected in settle.output, settle.output
    listing = run("backoffice", "closes", "--db", db(till), *args)
    assert listing.exit_code == 2 and expected in listing.output, listing.output
    if "nowhere" in expected:
        assert "known stores: S1" in settle.output


def test_bad_output_and_database_are_exit_2(till: Till, tmp_path: Path) -> None:
    till.sale(1000)
    till.close()
    till.upload()
    nowhere = tmp_path / "no-such-dir" / "s.csv"
    done = run("backoffice", "settlement", "--db", db(till), "--store", "S1", "--day",
               "2026-12-01", "--output", str(nowhere))  # fmt: skip
    assert done.exit_code == 2 and "cannot write" in done.output
    assert not nowhere.parent.exists()
    missing = run("backoffice", "closes", "--db", str(tmp_path / "missing.sqlite3"))
    assert missing.exit_code == 2 and "no back office database" in missing.output
    needs: Any = run("backoffice", "settlement", "--db", db(till), "--day", "2026-12-01")
    assert needs.exit_code == 2 and "--store" in needs.output


def test_reconcile_in_worker_processes(till: Till, tmp_path: Path) -> None:
    other = Till(tmp_path / "lane2", till.backoffice, "S1-lane02")
    try:
        for lane in (till, other):
            lane.sale(1000)
            lane.close()
            lane.upload()
    finally:
        other.close_all()
    with till.store.transaction() as tx:
        tx.execute("DELETE FROM events WHERE terminal = 'S1-lane02' AND seq = 3")
    done = run("--json", "backoffice", "closes", "reconcile", "--db", db(till), "--all",
               "--workers", "2")  # fmt: skip
    assert done.exit_code == 3, done.output
    doc = json.loads(done.output)
    assert doc["states"] == {"missing_seqs": 1, "reconciled": 1}
    assert {(c["terminal"], c["runs"]) for c in doc["closes"]} == {(TERMINAL, 2), ("S1-lane02", 2)}
