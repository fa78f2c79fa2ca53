"""The daemon killed with SIGKILL at each step of a sale, restarted, and checked end to end.

Each case runs ``posedge run --simulate`` as a real process with the engine's
crash hook (``POSEDGE_TEST_CRASH_AFTER=<event type>``: SIGKILL right after that
event is journaled), then restarts it without the hook on the same state
directory and waits — on the API, not on time — until the sale is final and
settled (receipt done, reversal acknowledged, forward complete). Then, with the
daemon stopped:

- the sale's final state, receipt and forward state are the ones expected for
  the step at which it died;
- the journal holds each decisive event exactly once and verifies
  (``posedge journal verify`` exits 0);
- the back office (its SQLite file, opened read-only) holds exactly one live
  authorization, or one with a matching reversal, or none at all — and a
  reversal only where one was owed.

One more case kills the daemon from outside while a forwarded authorization
has been committed by the back office but its reply was lost: the resend after
restart must be answered from the back office's idempotency record, not
authorized twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.agent.journal import Journal

from .daemon_support import POSEDGE, Daemon, wait_final, wait_until

CRASH_ENV = "POSEDGE_TEST_CRASH_AFTER"
SALE_BODY = {"amount": 2345, "currency": "EUR", "reference": "crash-1"}
SETTLED_RECEIPTS = {"printed", "failed", "not_required"}
SETTLE_TIMEOUT_S = 30.0
# The events that decide a sale's fate; each case names exactly how many of each it expects.
DECISIVE = (
    "sale.created", "card.read", "auth.requested", "auth.approved", "auth.declined",
    "auth.unknown", "auth.unavailable", "offline.approved", "sale.abandoned", "sale.cancelled",
    "sale.declined", "sale.reversed", "sale.voided", "reversal.requested", "reversal.acked",
    "forward.requested", "forward.approved", "forward.declined", "forward.expired",
)  # fmt: skip


@dataclass(frozen=True)
class Expected:
    state: str
    receipt: str
    events: dict[str, int]
    """Counts of the DECISIVE events for the sale; any not named must be absent."""
    forward: str | None = None
    authorizations: list[dict[str, Any]] = field(default_factory=list)
    """The back office's authorization rows for the sale (subset of columns)."""
    reversal: int | None = None
    """had_authorization of the one reversal the back office holds; None: no reversal."""


_BEFORE_AUTH = {"sale.created": 1, "card.read": 1}
_OFFLINE = {**_BEFORE_AUTH, "auth.requested": 1, "auth.unavailable": 1, "offline.approved": 1,
            "forward.requested": 1, "forward.approved": 1}  # fmt: skip
_REVERSED = {**_BEFORE_AUTH, "auth.requested": 1, "auth.unknown": 1, "reversal.requested": 1,
             "sale.reversed": 1, "reversal.acked": 1}  # fmt: skip
_FORWARDED = [{"forwarded": 1, "outcome": "approved", "reversed_at": None}]

CASES: dict[str, Expected] = {
    "sale.created": Expected("abandoned", "not_required", {"sale.created": 1, "sale.abandoned": 1}),
    "card.read": Expected("abandoned", "not_required", {**_BEFORE_AUTH, "sale.abandoned": 1}),
    # The request never left: the host holds no authorization, yet the reversal is sent
    # (the agent cannot know) and acknowledged as reversing nothing.
    "auth.requested": Expected(
        "reversed",
        "printed",
        _REVERSED,
        reversal=0,
    ),
    "auth.approved": Expected(
        "approved",
        "printed",
        {**_BEFORE_AUTH, "auth.requested": 1, "auth.approved": 1},
        authorizations=[{"forwarded": 0, "outcome": "approved", "reversed_at": None}],
    ),
    "forward.requested": Expected(
        "approved_offline", "printed", _OFFLINE, forward="approved", authorizations=_FORWARDED
    ),
}


# ---------------------------------------------------------------- helpers
@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Every daemon a test starts is killed and reaped at the end, whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


def start(daemons: list[Daemon], state_dir: Path, crash_after: str | None = None) -> Daemon:
    env = {CRASH_ENV: crash_after} if crash_after else {}
    daemon = Daemon(state_dir, env=env)
    daemons.append(daemon)
    return daemon


def post_sale(http: httpx.Client, key: str) -> httpx.Response:
    return http.post("/v1/sales", json=SALE_BODY, headers={"Idempotency-Key": key})


def simulator(http: httpx.Client, device: str, body: dict[str, Any]) -> None:
    response = http.post(f"/v1/simulator/{device}", json=body)
    assert response.status_code == 200, response.text


def expect_killed(daemon: Daemon) -> None:
    code = daemon.wait_exit(30)
    tail = "".join(daemon.stderr_lines[-20:])
    assert code == -signal.SIGKILL, f"expected death by the crash hook, exit {code}:\n{tail}"


def settled_view(http: httpx.Client, sale_id: str) -> dict[str, Any]:
    """Wait until the sale is final and nothing is left to do for it; its view."""
    doc = wait_final(http, sale_id, SETTLE_TIMEOUT_S)
    assert doc["final"], doc

    def settled() -> bool:
        nonlocal doc
        doc = http.get(f"/v1/sales/{sale_id}").json()
        status = http.get("/v1/status").json()
        return (
            doc["receipt"]["state"] in SETTLED_RECEIPTS
            and doc["forward_state"] not in ("pending", "requested")
            and status["in_doubt"] == 0
            and status["forwards_pending"] == 0
        )

    assert wait_until(settled, SETTLE_TIMEOUT_S), doc
    return doc


def resume(daemons: list[Daemon], state_dir: Path, key: str) -> dict[str, Any]:
    """Restart without the hook, find the sale by its key, settle it, stop cleanly."""
    daemon = start(daemons, state_dir)
    daemon.wait_ready()
    with daemon.client() as http:
        # The same key and body name the same sale across the crash: no second sale.
        again = post_sale(http, key)
        assert again.status_code == 202, again.text
        view = settled_view(http, again.json()["id"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0, "".join(daemon.stderr_lines[-20:])
    return view


def journal_types(state_dir: Path, txn: str) -> list[str]:
    with Journal.open(state_dir, readonly=True) as journal:
        return [e.type for e in journal.iter_events() if e.txn == txn]


def journal_sale_ids(state_dir: Path) -> set[str]:
    with Journal.open(state_dir, readonly=True) as journal:
        return {e.txn for e in journal.iter_events() if e.type == "sale.created" and e.txn}


def backoffice_rows(state_dir: Path, txn: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(authorizations, reversals) the back office holds for the sale."""
    uri = (state_dir / "backoffice.sqlite3").resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    db.row_factory = sqlite3.Row
    try:
        auths = db.execute(
            "SELECT * FROM authorizations WHERE txn = ? OR txn LIKE ?", (txn, f"{txn}:%")
        ).fetchall()
        reversals = db.execute("SELECT * FROM reversals WHERE txn = ?", (txn,)).fetchall()
    finally:
        db.close()
    return [dict(r) for r in auths], [dict(r) for r in reversals]


def verify_journal_cli(state_dir: Path) -> None:
    result = subprocess.run(
        [str(POSEDGE), "--state-dir", str(state_dir), "journal", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def check_outcome(state_dir: Path, sale_id: str, view: dict[str, Any], want: Expected) -> None:
    assert journal_sale_ids(state_dir) == {sale_id}, "the restart created a second sale"
    assert view["state"] == want.state, view
    assert view["receipt"]["state"] == want.receipt, view
    assert view["forward_state"] == want.forward, view

    types = journal_types(state_dir, sale_id)
    counts = Counter(t for t in types if t in DECISIVE)
    assert counts == Counter(want.events), types
    receipts = [t for t in types if t.startswith("receipt.")]
    if want.receipt == "printed":
        assert receipts and receipts[-1] == "receipt.printed", types
    else:
        assert receipts == [], types

    auths, reversals = backoffice_rows(state_dir, sale_id)
    columns = ("forwarded", "outcome", "reversed_at")
    assert [{c: a[c] for c in columns} for a in auths] == want.authorizations, auths
    assert all(a["state"] == "decided" for a in auths), auths
    if want.reversal is None:
        assert reversals == [], reversals
    else:
        assert len(reversals) == 1 and reversals[0]["had_authorization"] == want.reversal
        # A reversal of an authorization marks it: never a live authorization plus a reversal.
        assert all(a["reversed_at"] is not None for a in auths), auths
    vault = state_dir / "vault"
    assert not vault.exists() or not any(sale_id in p.name for p in vault.iterdir())
    verify_journal_cli(state_dir)


# ---------------------------------------------------------------- the steps of an online sale
@pytest.mark.parametrize("step", ["sale.created", "card.read", "auth.requested", "auth.approved"])
def test_killed_at_a_step_of_an_online_sale(
    step: str, state_dir: Path, daemons: list[Daemon]
) -> None:
    key = f"crash-{step}"
    daemon = start(daemons, state_dir, crash_after=step)
    daemon.wait_ready()
    with daemon.client() as http:
        try:
            response = post_sale(http, key)
        except httpx.TransportError:
            response = None  # died before answering (sale.created is journaled first)
    expect_killed(daemon)
    if response is not None:
        assert response.status_code == 202, response.text
    sale_id = next(iter(journal_sale_ids(state_dir)))
    assert journal_types(state_dir, sale_id)[-1] == step, "the hook fired at another step"

    view = resume(daemons, state_dir, key)
    assert view["id"] == sale_id
    check_outcome(state_dir, sale_id, view, CASES[step])


# ---------------------------------------------------------------- mid-forward
def test_killed_after_the_forward_intent_is_journaled(
    state_dir: Path, daemons: list[Daemon]
) -> None:
    """Offline sale during an outage; the forward worker journals its intent and dies."""
    key = "crash-forward"
    daemon = start(daemons, state_dir, crash_after="forward.requested")
    daemon.wait_ready()
    with daemon.client() as http:
        simulator(http, "backoffice", {"power": "off"})
        response = post_sale(http, key)
        assert response.status_code == 202, response.text
    expect_killed(daemon)
    sale_id = response.json()["id"]
    types = journal_types(state_dir, sale_id)
    assert types[-1] == "forward.requested" and "offline.approved" in types, types
    assert backoffice_rows(state_dir, sale_id) == ([], []), "nothing reached the host yet"

    view = resume(daemons, state_dir, key)
    check_outcome(state_dir, sale_id, view, CASES["forward.requested"])


def test_killed_while_the_forward_reply_is_lost(state_dir: Path, daemons: list[Daemon]) -> None:
    """The host committed the forwarded authorization but the agent never heard back:
    after the restart the resend (same key) is answered from the host's record."""
    key = "crash-forward-reply"
    daemon = start(daemons, state_dir)
    daemon.wait_ready()
    with daemon.client() as http:
        simulator(http, "backoffice", {"power": "off"})
        response = post_sale(http, key)
        assert response.status_code == 202, response.text
        sale_id = response.json()["id"]
        assert wait_final(http, sale_id)["state"] == "approved_offline"
        simulator(http, "backoffice", {"kind": "drop_reply", "endpoint": "authorizations",
                                       "count": 1000})  # fmt: skip
        simulator(http, "backoffice", {"power": "on"})

        def committed_by_host() -> bool:
            auths, _ = backoffice_rows(state_dir, sale_id)
            return any(a["forwarded"] == 1 and a["state"] == "decided" for a in auths)

        assert wait_until(committed_by_host, SETTLE_TIMEOUT_S)
    daemon.proc.kill()
    assert daemon.wait_exit(30) == -signal.SIGKILL
    assert "forward.approved" not in journal_types(state_dir, sale_id)

    view = resume(daemons, state_dir, key)
    check_outcome(state_dir, sale_id, view, CASES["forward.requested"])


# ---------------------------------------------------------------- mid-void
def test_killed_between_the_void_and_its_reversal(state_dir: Path, daemons: list[Daemon]) -> None:
    """SIGKILL right after ``sale.voided`` is journaled, before any reversal is: recovery
    must reverse the approved authorization (not only print the void receipt)."""
    key = "crash-void"
    daemon = start(daemons, state_dir, crash_after="sale.voided")
    daemon.wait_ready()
    with daemon.client() as http:
        response = post_sale(http, key)
        assert response.status_code == 202, response.text
        sale_id = response.json()["id"]
        assert wait_final(http, sale_id)["state"] == "approved"
        with pytest.raises(httpx.TransportError):
            http.post(f"/v1/sales/{sale_id}/void")
    expect_killed(daemon)
    types = journal_types(state_dir, sale_id)
    assert types[-1] == "sale.voided" and "reversal.requested" not in types, types
    auths, reversals = backoffice_rows(state_dir, sale_id)
    assert [a["reversed_at"] for a in auths] == [None] and reversals == []  # money still held

    view = resume(daemons, state_dir, key)
    assert view["state"] == "voided" and view["receipt"]["state"] == "printed", view
    types = journal_types(state_dir, sale_id)
    assert Counter(t for t in types if t in DECISIVE) == Counter(
        {**_BEFORE_AUTH, "auth.requested": 1, "auth.approved": 1, "sale.voided": 1,
         "reversal.requested": 1, "reversal.acked": 1}
    ), types  # fmt: skip
    auths, reversals = backoffice_rows(state_dir, sale_id)
    assert len(auths) == 1 and auths[0]["reversed_at"] is not None, auths
    assert len(reversals) == 1 and reversals[0]["had_authorization"] == 1, reversals
    verify_journal_cli(state_dir)
