"""``posedge demo``: the whole product in one command (the README's main job).

Runs the real agent with simulated devices and an embedded reference back
office, and drives it through the real till API (HTTP over its Unix socket):
online sales with two test cards, a network outage (store-and-forward), an
in-doubt authorization (reversal), a paper-out (receipt failed, reprinted), a
void right after approval (alert); then recovery (forwards and reversals
complete), a full sync and a verified journal. Everything it writes, the back
office database included, stays under the state directory (a temporary one
when --state-dir is not given). Registered by the ``posedge.commands`` entry point.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from posedge.agent.cli.context import CliContext, pass_cli
from posedge.agent.cli.output import table
from posedge.agent.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from posedge.agent.config import Config
    from posedge.agent.journal import Journal
    from posedge.agent.service import Agent

    Narrate = Callable[[str], None]

MASTERCARD_TEST_PAN = "5555555555554444"
SCENARIO_SALES = 5
SETTLE_TIMEOUT_S = 60.0
IN_DOUBT_DROPS = 20


@click.command()
@click.option(
    "--sales",
    type=click.IntRange(SCENARIO_SALES + 1, 1000),
    default=10,
    show_default=True,
    help=f"Sales in the session: {SCENARIO_SALES} scripted incidents plus ordinary sales.",
)
@pass_cli
def demo(cli: CliContext, sales: int) -> None:
    """Run a scripted session against simulated hardware and print a summary.

    The narration reports what happened, read back from the till API and the journal:
    a step that did not go as scripted says so."""
    configure_logging("error")  # the story goes to stdout; only real errors to stderr
    narrate = (lambda text: None) if cli.json_output else click.echo
    if cli.state_dir_option is not None:
        # cli.state_dir refuses a directory others could tamper with (exit 2), like every
        # other command; the temporary one below is the demo's own, 0700 from tempfile.
        summary = asyncio.run(_session(cli.state_dir, sales, narrate))
    else:
        with tempfile.TemporaryDirectory(prefix="posedge-demo-") as tmp:
            summary = asyncio.run(_session(Path(tmp), sales, narrate))
    rows = [(key.replace("_", " "), str(value)) for key, value in summary.items()]
    cli.emit(summary, table(["summary", ""], rows))


def _demo_config() -> Config:
    from posedge.agent.config import Config

    return Config.model_validate(
        {
            "terminal": {"id": "demo-lane-1"},
            "sales": {"authorization_timeout": "2s", "merchant_name": "posedge demo shop"},
            "offline": {"max_per_sale": {"EUR": 10000}, "max_total": {"EUR": 50000}},
            "sync": {"backoff_initial": "50ms", "backoff_cap": "500ms",
                     "heartbeat_interval": "5s"},
            "log": {"level": "error"},
        }
    )  # fmt: skip


class _Till:
    """The till's side: real HTTP calls to the agent's API."""

    def __init__(self, http: httpx.AsyncClient, journal: Journal) -> None:
        self.http = http
        self.journal = journal
        self.ids: list[str] = []

    def types(self, sale_id: str) -> list[str]:
        """The journaled event types of a sale (what happened, not what was meant to)."""
        return [event.type for event in self.journal.iter_events() if event.txn == sale_id]

    def alerts(self, sale_id: str) -> list[str]:
        return [
            f"{event.payload.get('kind')}: {event.payload.get('detail')}"
            for event in self.journal.iter_events()
            if event.txn == sale_id and event.type == "alert.raised"
        ]

    async def sale(self, amount: int, reference: str) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/sales",
            json={"amount": amount, "currency": "EUR", "reference": reference},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        response.raise_for_status()
        sale_id = response.json()["id"]
        self.ids.append(sale_id)
        return await self.wait(sale_id)

    async def wait(self, sale_id: str) -> dict[str, Any]:
        for _ in range(30):
            doc: dict[str, Any] = (
                await self.http.get(f"/v1/sales/{sale_id}", params={"wait": 10})
            ).json()
            if doc["final"]:
                return doc
        raise click.ClickException(f"sale {sale_id} did not finish")

    async def settled(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Wait until the receipt of a final sale has printed or failed."""
        for _ in range(500):
            if doc["receipt"]["state"] not in ("pending", "printing"):
                return doc
            await asyncio.sleep(0.01)
            doc = (await self.http.get(f"/v1/sales/{doc['id']}")).json()
        raise click.ClickException(f"receipt of sale {doc['id']} did not settle")

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(path, json=body or {})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self.http.get("/v1/status")).json()
        return result


async def _session(
    state_dir: Path, sales: int, narrate: Narrate, config: Config | None = None
) -> dict[str, Any]:
    # Imported here, not at import: every posedge invocation imports this module.
    import httpx

    from posedge.agent.api import ApiServer, create_app, load_or_create_token
    from posedge.agent.journal import verify_journal
    from posedge.agent.service import Agent
    from posedge.agent.simroutes import add_simulator_routes

    agent = Agent(config or _demo_config(), state_dir, simulate=True, card_delay_s=0.05)
    await agent.start()
    assert agent.engine is not None and agent.journal is not None
    token = load_or_create_token(agent.config, state_dir)
    app = create_app(agent.engine, token=token, currencies=agent.config.sales.currencies)
    add_simulator_routes(app, agent)
    api = ApiServer(app, state_dir / "api.sock", log_level="error")
    await api.start()
    try:
        transport = httpx.AsyncHTTPTransport(uds=str(state_dir / "api.sock"))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://posedge", timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ) as http:  # fmt: skip
            till = _Till(http, agent.journal)
            await _script(till, sales, narrate)
            await _settle(till, narrate)
        narrate("full sync to the back office …")
        if agent.runner is not None:
            await asyncio.to_thread(agent.runner.stop)
        assert agent.sync is not None
        report = await asyncio.to_thread(agent.sync.drain)
        if report.complete:
            narrate(f"  the back office acknowledged every event (through seq {report.acked_seq})")
        else:
            error = report.errors[-1] if report.errors else "stopped"
            narrate(f"  sync INCOMPLETE: acknowledged through seq {report.acked_seq} of "
                    f"{report.head_seq}; last error: {error}")  # fmt: skip
        verified = verify_journal(agent.journal)
        narrate("journal verified: the hash chain is intact" if verified.ok
                else "journal verification FAILED")  # fmt: skip
        return _summary(agent, till.ids, report.acked_seq, verified.ok)
    finally:
        await api.stop()
        await agent.stop()


def outcome(doc: dict[str, Any]) -> str:
    """What the API says happened to a sale, in words (state, why, card, receipt)."""
    words = [doc["state"].replace("_", " ")]
    if doc.get("decline_reason"):
        words.append(f"({doc['decline_reason']})")
    if doc.get("masked_pan"):
        words.append(f"{doc.get('brand') or 'card'} {doc['masked_pan']}")
    receipt = doc.get("receipt") or {}
    if receipt.get("state") == "failed":
        words.append(f"— receipt FAILED: {receipt.get('error') or 'no reason given'}")
    elif receipt.get("state") == "printed":
        words.append(f"— receipt printed ({', '.join(receipt.get('copies') or []) or 'no copy'})")
    return " ".join(words)


async def _script(till: _Till, sales: int, narrate: Narrate) -> None:
    """The session; every outcome narrated is read back from the API or the journal."""
    ordinary = sales - SCENARIO_SALES
    for number in range(ordinary):
        if number % 2:
            await till.post("/v1/simulator/reader",
                            {"fault": "card", "params": {"pan": MASTERCARD_TEST_PAN}})  # fmt: skip
        doc = await till.sale(1000 + 250 * number, f"order-{number + 1}")
        narrate(f"sale {number + 1}: {outcome(doc)}")
    narrate("network outage: powering the back office off …")
    await till.post("/v1/simulator/backoffice", {"power": "off"})
    doc = await till.sale(2500, "outage-1")
    narrate(f"  sale during the outage: {outcome(doc)}{_offline_note(doc)}")
    await till.post("/v1/simulator/backoffice", {"power": "on"})
    narrate("in-doubt authorization: the host commits, and its replies are lost …")
    # Every retry of the attempt too (the idempotent replay would tell the outcome).
    await till.post("/v1/simulator/backoffice", {"kind": "drop_reply",
                    "endpoint": "authorizations", "count": IN_DOUBT_DROPS})  # fmt: skip
    # Its receipt must be out before the paper runs out, or it fails too.
    doc = await till.settled(await till.sale(1800, "in-doubt-1"))
    await till.post("/v1/simulator/backoffice", {"clear": True})
    narrate(f"  {_in_doubt_note(till.types(doc['id']))}; the sale is {outcome(doc)}")
    narrate("paper out at the printer …")
    await till.post("/v1/simulator/printer", {"fault": "paper_out"})
    doc = await till.settled(await till.sale(900, "paper-out-1"))
    narrate(f"  sale {outcome(doc)}")
    await till.post("/v1/simulator/printer", {"fault": "clear"})
    doc = await till.post(f"/v1/sales/{doc['id']}/reprint")
    narrate(f"  paper loaded, reprint: {outcome(doc)}")
    doc = await till.sale(4200, "void-1")
    doc = await till.post(f"/v1/sales/{doc['id']}/void")
    alerts = till.alerts(doc["id"])
    raised = f"alert raised: {'; '.join(alerts)}" if alerts else "no alert was raised"
    narrate(f"void right after approval: {outcome(doc)} ({raised})")
    await till.post("/v1/simulator/backoffice", {"power": "off"})
    doc = await till.sale(1300, "outage-2")
    narrate(f"another outage sale: {outcome(doc)}{_offline_note(doc)}")


def _offline_note(doc: dict[str, Any]) -> str:
    if doc.get("offline") and doc["state"] == "approved_offline":
        return " — stored to forward when the back office is back (store-and-forward)"
    return " — NOT approved offline"


def _in_doubt_note(types: list[str]) -> str:
    if "auth.unknown" not in types:
        return "the authorization's outcome was known after all (no reversal needed)"
    if "reversal.requested" in types:
        return "authorization outcome unknown: a reversal was queued"
    return "authorization outcome unknown, but NO reversal was queued"


async def _settle(till: _Till, narrate: Narrate) -> None:
    narrate("recovery: powering the back office on; forwarding and reversing …")
    await till.post("/v1/simulator/backoffice", {"power": "on"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while True:
        status = await till.status()
        if status["forwards_pending"] == 0 and status["in_doubt"] == 0:
            break
        if loop.time() > deadline:
            raise click.ClickException("forwards and reversals did not complete in time")
        await asyncio.sleep(0.1)
    done = Counter(t for sale in till.ids for t in till.types(sale))
    narrate(f"  {done['forward.approved']} forwarded sales approved, "
            f"{done['forward.declined']} declined; {done['reversal.acked']} reversals "
            "acknowledged")  # fmt: skip


def _summary(agent: Agent, ids: list[str], synced: int, verified: bool) -> dict[str, Any]:
    assert agent.engine is not None and agent.journal is not None
    states = Counter(view.state.value for view in map(agent.engine.get_sale, ids) if view)
    events = Counter(event.type for event in agent.journal.iter_events())
    return {
        "sales": len(ids),
        "approved_online": states["approved"] + states["voided"],
        "approved_offline": states["approved_offline"],
        "declined": states["declined"],
        "reversed": events["reversal.acked"],
        "voided": states["voided"],
        "alerts": events["alert.raised"],
        "receipts_printed": events["receipt.printed"],
        "receipts_failed": events["receipt.failed"],
        "events_journaled": agent.journal.head().seq,
        "events_synced": synced,
        "journal_verified": verified,
    }
