"""The till API over real HTTP against the real sales engine.

An in-process :class:`~posedge.agent.service.Agent` in simulate mode (virtual
printer and reader on ``sim://``, the embedded reference back office with its
SQLite file in the state dir) runs in its own event loop thread, behind the real
:class:`~posedge.agent.api.ApiServer` on a Unix socket and loopback TCP — the
composition ``posedge run --simulate`` serves. Tests talk HTTP only, drive the
simulated devices through the simulator routes, and check what the API says
against the journal and the back office.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from posedge.agent.api import ApiServer, create_app, load_or_create_token
from posedge.agent.carddata import find_card_data
from posedge.agent.config import Config
from posedge.agent.journal import Journal, verify_journal
from posedge.agent.service import Agent
from posedge.agent.simroutes import add_simulator_routes
from posedge.drivers.reader.pan import looks_like_pan
from posedge.drivers.reader.tracks import pan_token

from ..agent.api.test_bad_requests import CASES as BAD_REQUESTS
from ..agent.api.test_endpoints import problem_of
from .daemon_support import wait_until

T = TypeVar("T")
SALE = {"amount": 1234, "currency": "EUR", "reference": "order-1", "online": "prefer"}
SETTLED_RECEIPTS = ("printed", "failed", "not_required")
CARD_DELAY_S = 0.02
MAX_EXAMPLES = 20


def agent_config() -> Config:
    return Config.model_validate(
        {
            "terminal": {"id": "api-real-1"},
            "reader": {"swipe_timeout": "20s"},
            "sales": {"authorization_timeout": "2s"},
            "sync": {"backoff_initial": "50ms", "backoff_cap": "500ms"},
            "log": {"level": "error"},
        }
    )


class RunningAgent:
    """Agent + till API (with simulator routes) in a background event loop thread."""

    def __init__(self, state_dir: Path, card_delay_s: float = CARD_DELAY_S) -> None:
        self.state_dir = state_dir
        self.agent = Agent(agent_config(), state_dir, simulate=True, card_delay_s=card_delay_s)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.api: ApiServer | None = None
        self.token = ""

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the agent's loop (the engine and journal belong to it)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    async def _start(self) -> None:
        await self.agent.start()
        assert self.agent.engine is not None
        self.token = load_or_create_token(self.agent.config, self.state_dir)
        app = create_app(
            self.agent.engine, token=self.token, currencies=self.agent.config.sales.currencies
        )
        add_simulator_routes(app, self.agent)
        self.api = ApiServer(app, self.state_dir / "api.sock", "127.0.0.1:0", log_level="error")
        await self.api.start()

    async def _stop(self) -> None:
        if self.api is not None:
            await self.api.stop()
        await self.agent.stop()

    def __enter__(self) -> RunningAgent:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    @property
    def tcp_url(self) -> str:
        assert self.api is not None and self.api.tcp_url is not None
        return self.api.tcp_url

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.state_dir / "api.sock")),
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30.0,
        )

    # ------------------------------------------------------------ observations
    def head_seq(self) -> int:
        def head() -> int:
            assert self.agent.journal is not None
            return self.agent.journal.head().seq

        return self.call(head)

    def events(self, txn: str | None = None) -> list[tuple[str, str | None, dict[str, Any]]]:
        def read() -> list[tuple[str, str | None, dict[str, Any]]]:
            assert self.agent.journal is not None
            return [
                (e.type, e.txn, e.payload)
                for e in self.agent.journal.iter_events()
                if txn is None or e.txn == txn
            ]

        return self.call(read)

    def backoffice(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        uri = (self.state_dir / "backoffice.sqlite3").resolve().as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True)
        db.row_factory = sqlite3.Row
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningAgent]:
    with RunningAgent(tmp_path / "state") as agent:
        yield agent


@pytest.fixture
def http(running: RunningAgent) -> Iterator[httpx.Client]:
    with running.client() as client:
        yield client


def post_sale(http: httpx.Client, key: str | None = None, **changes: Any) -> httpx.Response:
    return http.post(
        "/v1/sales", json={**SALE, **changes}, headers={"Idempotency-Key": key or uuid.uuid4().hex}
    )


def final(http: httpx.Client, sale_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(10):
        doc = http.get(f"/v1/sales/{sale_id}", params={"wait": 5}).json()
        if doc["final"]:
            return doc
    raise AssertionError(f"sale not final: {doc}")


def settled(http: httpx.Client, sale_id: str) -> dict[str, Any]:
    """The final view once its receipt has printed or failed."""
    doc = final(http, sale_id)

    def done() -> bool:
        nonlocal doc
        doc = http.get(f"/v1/sales/{sale_id}").json()
        return bool(doc["receipt"]["state"] in SETTLED_RECEIPTS)

    assert wait_until(done, 20), doc
    return doc


def simulator(http: httpx.Client, device: str, body: dict[str, Any]) -> None:
    reply = http.post(f"/v1/simulator/{device}", json=body)
    assert reply.status_code == 200, reply.text


# ---------------------------------------------------------------- happy path
def test_a_sale_over_http_is_authorized_journaled_and_printed(
    running: RunningAgent, http: httpx.Client
) -> None:
    reply = post_sale(http, "happy-1")
    assert reply.status_code == 202, reply.text
    created = reply.json()
    assert reply.headers["location"] == f"/v1/sales/{created['id']}"
    assert created["state"] in ("created", "card_read", "authorizing", "approved")

    doc = settled(http, created["id"])
    assert doc["state"] == "approved" and doc["final"] is True
    assert doc["masked_pan"] == "411111******1111" and doc["brand"] == "visa"
    assert doc["auth_code"] and doc["decline_reason"] is None and doc["offline"] is False
    assert doc["receipt"] == {"state": "printed", "copies": ["customer", "merchant"], "error": None}
    assert [t for t, _, _ in running.events(created["id"])] == [
        "sale.created", "card.read", "auth.requested", "auth.approved",
        "receipt.printing", "receipt.printed",
    ]  # fmt: skip
    auths = running.backoffice("SELECT * FROM authorizations WHERE txn = ?", created["id"])
    assert [(a["outcome"], a["amount"], a["masked_pan"]) for a in auths] == [
        ("approved", 1234, "411111******1111")
    ]
    printed = running.call(lambda: running.agent.world.printer.plain_text())  # type: ignore[union-attr]
    assert doc["auth_code"] in printed and "4111111111111111" not in printed

    # The same sale over loopback TCP, and the long-poll on a final sale answers at once.
    with httpx.Client(base_url=running.tcp_url, headers=http.headers) as tcp:
        assert tcp.get(f"/v1/sales/{created['id']}", params={"wait": 30}).json() == doc
    status = http.get("/v1/status").json()
    assert status["network"]["state"] == "online" and status["active_sale"] is None
    assert http.get("/v1/health").status_code == 200


def test_second_card_sale_with_another_card_is_its_brand(http: httpx.Client) -> None:
    simulator(http, "reader", {"fault": "card", "params": {"pan": "5555555555554444"}})
    doc = settled(http, post_sale(http).json()["id"])
    assert doc["state"] == "approved" and doc["masked_pan"] == "555555******4444"
    assert doc["brand"] == "mastercard"


# ---------------------------------------------------------------- idempotency
def test_same_key_same_body_is_the_same_sale_different_body_is_422(
    running: RunningAgent, http: httpx.Client
) -> None:
    first = post_sale(http, "idem-1")
    assert first.status_code == 202
    sale_id = first.json()["id"]
    again = post_sale(http, "idem-1")
    assert again.status_code == 202 and again.json()["id"] == sale_id
    doc = settled(http, sale_id)
    head = running.head_seq()
    # After the outcome, the replay is the final sale, not a new one.
    replay = post_sale(http, "idem-1")
    assert replay.status_code == 202 and replay.json() == doc
    problem_of(post_sale(http, "idem-1", amount=999), 422, "idempotency-mismatch")
    problem_of(post_sale(http, "idem-1", online="require"), 422, "idempotency-mismatch")
    assert running.head_seq() == head, "a replay or a mismatch journaled something"
    created = [txn for t, txn, _ in running.events() if t == "sale.created"]
    assert created == [sale_id]
    assert len(running.backoffice("SELECT * FROM authorizations WHERE txn = ?", sale_id)) == 1


# ---------------------------------------------------------------- one reader, cancel
def test_second_sale_while_one_waits_for_a_card_is_409_then_cancel(
    running: RunningAgent, http: httpx.Client
) -> None:
    simulator(http, "reader", {"fault": "no_card"})
    waiting = post_sale(http).json()
    head = running.head_seq()
    problem_of(post_sale(http), 409, "reader-busy")
    assert running.head_seq() == head
    assert http.get("/v1/status").json()["active_sale"] == waiting["id"]

    # Void and reprint make no sense yet; cancel does.
    problem_of(http.post(f"/v1/sales/{waiting['id']}/void"), 409, "state-conflict")
    problem_of(http.post(f"/v1/sales/{waiting['id']}/reprint"), 409, "state-conflict")
    cancelled = http.post(f"/v1/sales/{waiting['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    doc = cancelled.json()
    assert doc["state"] == "cancelled" and doc["receipt"]["state"] == "not_required"
    assert http.post(f"/v1/sales/{waiting['id']}/cancel").json()["state"] == "cancelled"
    assert [t for t, _, _ in running.events(waiting["id"])] == ["sale.created", "sale.cancelled"]
    assert running.backoffice("SELECT * FROM authorizations WHERE txn = ?", waiting["id"]) == []

    # The reader is free again: the next sale goes through.
    simulator(http, "reader", {"fault": "no_card", "params": {"on": False}})
    nxt = post_sale(http)
    assert nxt.status_code == 202, nxt.text
    assert settled(http, nxt.json()["id"])["state"] == "approved"
    problem_of(http.post(f"/v1/sales/{nxt.json()['id']}/cancel"), 409, "state-conflict")


# ---------------------------------------------------------------- void
def test_void_right_after_approval_raises_an_alert_and_reverses(
    running: RunningAgent, http: httpx.Client
) -> None:
    sale_id = post_sale(http, amount=4200).json()["id"]
    assert settled(http, sale_id)["state"] == "approved"
    reply = http.post(f"/v1/sales/{sale_id}/void")
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "voided"
    assert http.post(f"/v1/sales/{sale_id}/void").json()["state"] == "voided"  # idempotent
    doc = settled(http, sale_id)
    assert doc["state"] == "voided" and doc["receipt"]["state"] == "printed"

    recent = http.get("/v1/status").json()["alerts"]["recent"]
    assert [(a["kind"], a["sale"]) for a in recent] == [("void_after_approval", sale_id)]
    events = running.events(sale_id)
    alerts = [p for t, _, p in events if t == "alert.raised"]
    assert [a["kind"] for a in alerts] == ["void_after_approval"]
    assert [p["request"]["reason"] for t, _, p in events if t == "reversal.requested"] == ["void"]

    def reversed_at_host() -> bool:
        rows = running.backoffice("SELECT * FROM reversals WHERE txn = ?", sale_id)
        return len(rows) == 1 and rows[0]["had_authorization"] == 1

    assert wait_until(reversed_at_host, 20)
    assert wait_until(lambda: any(t == "reversal.acked" for t, _, _ in running.events(sale_id)))
    (auth,) = running.backoffice("SELECT * FROM authorizations WHERE txn = ?", sale_id)
    assert auth["outcome"] == "approved" and auth["reversed_at"] is not None


# ---------------------------------------------------------------- reprint
def test_paper_out_fails_the_receipt_not_the_sale_then_reprint(
    running: RunningAgent, http: httpx.Client
) -> None:
    simulator(http, "printer", {"fault": "paper_out"})
    sale_id = post_sale(http, amount=900).json()["id"]
    doc = settled(http, sale_id)
    assert doc["state"] == "approved" and doc["auth_code"]
    assert doc["receipt"]["state"] == "failed" and doc["receipt"]["error"]

    # Still out of paper: the reprint fails too, the sale stays approved.
    again = http.post(f"/v1/sales/{sale_id}/reprint")
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "approved" and again.json()["receipt"]["state"] == "failed"

    simulator(http, "printer", {"fault": "clear"})
    reprinted = http.post(f"/v1/sales/{sale_id}/reprint")
    assert reprinted.status_code == 200, reprinted.text
    body = reprinted.json()
    assert body["state"] == "approved" and body["receipt"]["state"] == "printed"
    assert body["receipt"]["copies"] == ["customer", "merchant"]  # a reprint skips no copy
    types = [t for t, _, _ in running.events(sale_id)]
    assert types.count("auth.approved") == 1
    assert types[-6:] == [
        "receipt.printing", "receipt.failed", "receipt.printing", "receipt.failed",
        "receipt.printing", "receipt.printed",
    ]  # fmt: skip
    printed = running.call(lambda: running.agent.world.printer.plain_text())  # type: ignore[union-attr]
    assert "REPRINT" in printed.upper()


# ---------------------------------------------------------------- digests vs the card-data guard
def _plain_digest(reference: str) -> str:
    body = {"amount": 1234, "currency": "EUR", "reference": reference, "online": "prefer"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def test_a_sale_whose_request_digest_holds_a_card_like_digit_run_is_taken(
    running: RunningAgent, http: httpx.Client
) -> None:
    """Regression: the card-data guard read Luhn-valid digit runs inside hex digests as
    card numbers, so about 1 sale in 125 (its journaled request hash) was a 500."""
    run = re.compile(r"[0-9]{13,19}")

    def card_like(digest: str) -> bool:
        return any(looks_like_pan(m.group()) for m in run.finditer(digest))

    reference = next(
        ref for ref in (f"digest-{n}" for n in range(20_000)) if card_like(_plain_digest(ref))
    )
    reply = post_sale(http, "digest-1", reference=reference)
    assert reply.status_code == 202, reply.text
    assert settled(http, reply.json()["id"])["state"] == "approved"
    assert post_sale(http, "digest-1", reference=reference).json()["id"] == reply.json()["id"]


def test_hex_digests_and_pan_tokens_never_look_like_card_numbers() -> None:
    """Regression: 1 card in ~125 per device key had a token the journal refused at card.read."""
    tokens = [pan_token("4111111111111111", os.urandom(32)) for _ in range(3000)]
    digests = [hashlib.sha256(os.urandom(16)).hexdigest() for _ in range(3000)]
    assert [t for t in tokens + digests if find_card_data({"value": t})] == []


# ---------------------------------------------------------------- bad requests
def test_bad_requests_are_problems_and_journal_nothing(
    running: RunningAgent, http: httpx.Client
) -> None:
    """Every class of bad body or header (the API tests' matrix) against the real engine."""
    head = running.head_seq()
    for case_id, kwargs, status, name, field in BAD_REQUESTS:
        kwargs = dict(kwargs)
        explicit = "headers" in kwargs
        headers = kwargs.pop("headers", {"Idempotency-Key": f"bad-{case_id}"})
        if "content" in kwargs and not explicit:
            headers = {**headers, "Content-Type": "application/json"}
        reply = http.post("/v1/sales", headers=headers, **kwargs)
        try:
            problem_of(reply, status, name, field)
        except AssertionError as exc:
            raise AssertionError(f"case {case_id}: {exc}") from exc
        assert running.head_seq() == head, f"case {case_id} journaled something"
    assert http.get("/v1/status").json()["active_sale"] is None
    # ... and the agent still sells.
    assert settled(http, post_sale(http).json()["id"])["state"] == "approved"


def test_refusals_outside_the_body_journal_nothing(
    running: RunningAgent, http: httpx.Client
) -> None:
    sale_id = settled(http, post_sale(http).json()["id"])["id"]
    head = running.head_seq()
    with running.client(token="wrong-token") as intruder:
        problem_of(post_sale(intruder), 401, "unauthorized")
        problem_of(intruder.post(f"/v1/sales/{sale_id}/void"), 401, "unauthorized")
    problem_of(post_sale(http, currency="JPY"), 422, "validation", "currency")
    for verb in ("cancel", "void", "reprint"):
        problem_of(http.post(f"/v1/sales/s-nope/{verb}"), 404, "not-found")
    problem_of(http.get("/v1/sales/s-nope"), 404, "not-found")
    problem_of(http.get(f"/v1/sales/{sale_id}", params={"wait": "61"}), 400, "bad-request", "wait")
    problem_of(http.post(f"/v1/sales/{sale_id}/cancel"), 409, "state-conflict")
    assert running.head_seq() == head
    assert http.get(f"/v1/sales/{sale_id}").json()["state"] == "approved"


# ---------------------------------------------------------------- property test
def fuzzing_schema(running: RunningAgent) -> Any:
    """The document the running agent serves, with currency narrowed to the terminal's
    configured list (the document names it in prose) so positive cases reach the engine."""
    with httpx.Client(base_url=running.tcp_url) as client:
        document = client.get("/openapi.json").json()
    currency = document["components"]["schemas"]["SaleCreate"]["properties"]["currency"]
    currency["enum"] = list(running.agent.config.sales.currencies)
    return schemathesis.openapi.from_dict(document)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_no_server_error_from_the_real_engine(
    running: RunningAgent, mode: schemathesis.GenerationMode
) -> None:
    schema = fuzzing_schema(running)
    auth = {"Authorization": f"Bearer {running.token}"}
    checks = [not_a_server_error, content_type_conformance]
    if mode == schemathesis.GenerationMode.POSITIVE:
        checks += [status_code_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    fuzzed: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def property_(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=running.tcp_url, headers=auth, checks=checks, timeout=30
            )

        try:
            property_()
        except Unsatisfiable:
            # Nothing to break in an operation without inputs (GET /v1/health, ...).
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed.append(operation.label)
    assert "POST /v1/sales" in fuzzed and "GET /v1/sales/{id}" in fuzzed, fuzzed
    # The engine took sales along the way and its journal still verifies.
    created = [t for t, _, _ in running.events() if t == "sale.created"]
    if mode == schemathesis.GenerationMode.POSITIVE:
        assert created, "no generated sale reached the engine"

    def verified() -> bool:
        assert running.agent.journal is not None
        return verify_journal(running.agent.journal).ok

    assert running.call(verified)


def test_journal_verifies_while_the_agent_holds_it(
    running: RunningAgent, http: httpx.Client
) -> None:
    for amount in (1, 2, 3):
        settled(http, post_sale(http, amount=amount).json()["id"])

    def verified() -> bool:
        assert running.agent.journal is not None
        return verify_journal(running.agent.journal).ok

    assert running.call(verified)
    with Journal.open(running.state_dir, readonly=True) as journal:
        assert verify_journal(journal).ok
