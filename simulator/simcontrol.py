"""``posedge simulate card`` / ``posedge simulate fault``: steer a running ``run --simulate``.

They call the agent's simulator routes (``POST /v1/simulator/{device}``) over
its API socket with its token, both found from the state directory and the
configuration, exactly as the till would reach the API. Without a running
simulated agent they exit 4 and say so. Subcommands of ``posedge simulate``
(:mod:`posedge.simulator.cli`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from posedge.agent.cli.context import CliContext, pass_cli
from posedge.agent.errors import ConfigError, PeerUnreachable

TIMEOUT_S = 10.0


def _post(cli: CliContext, device: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx  # here, not at import: every posedge invocation imports this module

    from posedge.agent.api import resolve_api_paths

    paths = resolve_api_paths(cli.config, cli.state_dir)
    try:
        token = Path(paths.token_file).read_text("utf-8").strip()
    except OSError:
        raise PeerUnreachable(
            f"no API token at {paths.token_file}: is `posedge run --simulate` running with "
            f"--state-dir {cli.state_dir}?"
        ) from None
    transport = httpx.HTTPTransport(uds=str(paths.socket))
    try:
        with httpx.Client(
            transport=transport, base_url="http://posedge", timeout=TIMEOUT_S
        ) as http:
            reply = http.post(
                f"/v1/simulator/{device}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.TransportError:
        raise PeerUnreachable(
            f"cannot reach the agent on {paths.socket}: start `posedge run --simulate` with "
            f"--state-dir {cli.state_dir} first"
        ) from None
    if reply.status_code == 404 and "simulator" not in reply.text:
        raise ConfigError("the running agent is not simulated: start it with `run --simulate`")
    doc: dict[str, Any] = reply.json() if reply.content else {}
    if reply.status_code >= 400:
        raise ConfigError(f"the simulator refused: {doc.get('detail', reply.text)}")
    return doc


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="PARAMS")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@click.command("card")
@click.option("--pan", default=None, help="A test card number (e.g. 5555555555554444).")
@click.option("--expiry", default=None, metavar="YYMM", help="Expiry of the test card.")
@click.option("--service-code", default=None, help="e.g. 201 for a chip card (swipe fallback).")
@click.option("--unreadable", is_flag=True, help="Make the next swipe a bad read instead.")
@pass_cli
def card(
    cli: CliContext, pan: str | None, expiry: str | None, service_code: str | None, unreadable: bool
) -> None:
    """Present a chosen test card (or a bad read) at the running simulated reader."""
    if unreadable:
        if pan or expiry or service_code:
            raise click.UsageError("--unreadable takes no card details")
        doc = _post(cli, "reader", {"fault": "unreadable", "params": {"count": 1}})
        cli.emit(doc, "the next swipe will be unreadable")
        return
    params = {
        key: value
        for key, value in (("pan", pan), ("expiry", expiry), ("service_code", service_code))
        if value is not None
    }
    doc = _post(cli, "reader", {"fault": "card", "params": params})
    cli.emit(doc, "the test card will be presented at the next swipe")


@click.command("fault")
@click.argument("device", type=click.Choice(["printer", "reader", "backoffice"]))
@click.argument("name")
@click.argument("params", nargs=-1, metavar="[KEY=VALUE]...")
@pass_cli
def fault(cli: CliContext, device: str, name: str, params: tuple[str, ...]) -> None:
    """Inject a fault into the running simulation.

    Printer: paper_out, paper_near_end, cover_open, cutter_error, unplug, replug, clear, …
    Reader: unreadable, bad_lrc, no_card, card pan=…, clear, …
    Back office: power off|on, clear, or a rule kind (down duration_s=60, latency
    latency_s=2, drop_reply endpoint=authorizations count=1, …).
    """
    body: dict[str, Any]
    if device == "backoffice" and name == "power":
        if params not in (("on",), ("off",)):
            raise click.BadParameter("say `power off` or `power on`", param_hint="PARAMS")
        body = {"power": params[0]}
    elif device == "backoffice":
        body = {"clear": True} if name == "clear" else {"kind": name, **_params(params)}
    else:
        body = {"fault": name, "params": _params(params)}
    doc = _post(cli, device, body)
    cli.emit(doc, f"{device}: {name} applied")


def register(simulate: click.Group) -> None:
    simulate.add_command(card)
    simulate.add_command(fault)
