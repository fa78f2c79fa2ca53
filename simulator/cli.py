"""``posedge simulate``: the simulator's command group, registered by entry point.

The root command loads it from the ``posedge.commands`` entry point group (see
pyproject), so the agent never imports the simulator. Its subcommands:

- ``simulate devices`` (this module): run a virtual printer and card reader in
  the foreground;
- ``simulate card`` / ``simulate fault`` (:mod:`posedge.simulator.simcontrol`):
  steer a running ``posedge run --simulate``;
- ``simulate backoffice`` (:mod:`posedge.simulator.cli_backoffice`): the back
  office with injected faults;
- ``simulate fleet`` (:mod:`posedge.simulator.fleet.cli`): a fleet of terminals
  against a back office.

``simulate devices`` serves each device on a pseudo-terminal (optionally behind
a stable symlink in ``--symlink-dir``) and on a TCP port (``socket://``), and
makes it reachable in process as ``sim://printer`` / ``sim://reader``. The
endpoints are printed once (one JSON document with ``--json``); then fault
commands are read from stdin, one per line (``printer paper_out``, ``reader
unreadable``, ``printer unplug``, ``printer replug``, ``printer clear``, with
optional ``key=value`` parameters), and a ``--scenario`` file may apply faults
on a timer. Runs until SIGINT or SIGTERM; end of stdin only stops reading
commands. Acknowledgements and errors go to stderr, so stdout stays one JSON
document. This command must never touch real hardware.

Importing this module stays cheap (every ``posedge`` invocation does): what a
subcommand needs beyond click is imported when it runs.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import click

from posedge.agent.cli.context import get_cli
from posedge.agent.cli.lazy import LazyGroup

from . import simcontrol

if TYPE_CHECKING:
    from .core import VirtualDevice
    from .reader import SimProtocol
    from .replay import Replay
    from .scenarios import Scenario, ScenarioStep

DEVICE_NAMES = ("printer", "reader")


@click.group("simulate", cls=LazyGroup)
def simulate() -> None:
    """Run simulated devices for tests, demos and technician training."""


@click.command("devices")
@click.option(
    "--symlink-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also create stable symlinks DIR/printer and DIR/reader to the pseudo-terminals.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="TCP address to listen on.")
@click.option("--printer-port", type=int, default=0, help="Printer TCP port [default: any].")
@click.option("--reader-port", type=int, default=0, help="Reader TCP port [default: any].")
@click.option(
    "--reader-protocol",
    type=click.Choice(["magtek", "framed"]),
    default="magtek",
    show_default=True,
    help="Protocol the virtual card reader speaks.",
)
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML scenario file: faults applied on a timer.",
)
@click.pass_context
def simulate_devices(
    ctx: click.Context,
    symlink_dir: Path | None,
    host: str,
    printer_port: int,
    reader_port: int,
    reader_protocol: SimProtocol,
    scenario: Path | None,
) -> None:
    """Serve a virtual printer and reader on pty and TCP until SIGINT/SIGTERM.

    A --scenario FILE in JSON is a device dump (posedge devices dump, SIGUSR1): the
    devices start in the dumped state, with its identity (docs/diagnostics.md)."""
    cli = get_cli(ctx)
    replay = _load_replay(scenario)
    devices = replay.devices if replay is not None else make_devices(reader_protocol)
    plan = None if replay is not None else _load_scenario(scenario, devices)
    if symlink_dir is not None:
        symlink_dir.mkdir(parents=True, exist_ok=True)
    ports = {"printer": printer_port, "reader": reader_port}
    stop = threading.Event()
    with ExitStack() as stack:
        endpoints = {
            name: stack.enter_context(_serve(name, device, host, ports[name], symlink_dir))
            for name, device in devices.items()
        }
        if replay is not None:
            _replay_notes(replay, cli.state_dir_option)
        cli.emit({"devices": endpoints, "present_card": " ".join(CARD_HINT)},
                 _human_endpoints(endpoints))  # fmt: skip
        sys.stdout.flush()
        _install_signal_handlers(stop)
        CommandReader(devices, sys.stdin, sys.stderr).start()
        if plan is not None:
            from .scenarios import ScenarioRunner

            runner = ScenarioRunner(plan, devices, on_error=_report_step_error, on_applied=_ack)
            stack.callback(runner.stop)
            runner.start()
        while not stop.wait(0.5):
            pass


def make_devices(reader_protocol: SimProtocol) -> dict[str, VirtualDevice]:
    """The virtual printer and reader."""
    from .printer import VirtualPrinter
    from .reader import VirtualReader

    return {"printer": VirtualPrinter(), "reader": VirtualReader(reader_protocol)}


def _load_replay(path: Path | None) -> Replay | None:
    """The replayed devices when ``path`` is a device dump (JSON); exit 2 when it is bad."""
    from .scenarios import ScenarioError, is_replay, load_replay

    if path is None or not is_replay(path):
        return None
    try:
        return load_replay(path)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None


def _replay_notes(replay: Replay, state_dir: Path | None) -> None:
    """Seed the statistics (only into a --state-dir given explicitly) and say what was not
    replayed, on stderr."""
    if state_dir is None:
        click.echo("replay: statistics not seeded (give --state-dir LAB_STATE_DIR)", err=True)
    else:
        for path in replay.seed_statistics(state_dir):
            click.echo(f"replay: statistics seeded into {path}", err=True)
    for note in replay.notes:
        click.echo(f"replay: {note}", err=True)


def _load_scenario(path: Path | None, devices: dict[str, VirtualDevice]) -> Scenario | None:
    from .scenarios import ScenarioError, load_scenario

    if path is None:
        return None
    try:
        return load_scenario(path, devices)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None


@contextmanager
def _serve(
    name: str, device: VirtualDevice, host: str, port: int, symlink_dir: Path | None
) -> Iterator[dict[str, Any]]:
    from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device

    from .links.pty import PtyLink
    from .links.tcp import TcpLink

    symlink = symlink_dir / name if symlink_dir is not None else None
    with PtyLink(device, symlink) as pty, TcpLink(device, host, port) as tcp:
        register_sim_device(name, device)
        try:
            yield {
                "kind": device.kind,
                "pty": pty.path,
                "pty_slave": pty.slave_path,
                "socket_url": tcp.url,
                "sim_url": f"sim://{name}",
            }
        finally:
            unregister_sim_device(name)


def _human_endpoints(endpoints: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, where in endpoints.items():
        lines.append(f"{name}: {where['pty']}  {where['socket_url']}")
    lines += CARD_HINT
    lines.append("Fault commands on stdin, e.g. 'printer paper_out', 'reader unreadable',")
    lines.append("'printer unplug', 'printer replug', 'printer clear'. Stop with Ctrl-C.")
    return "\n".join(lines)


CARD_HINT = [
    "To present a card, type on this terminal (stdin): 'reader card' swipes the default test",
    "card; 'reader card pan=4111111111111111 expiry=3012' a chosen test card (YYMM);",
    "'reader unreadable' makes the next swipe a bad read. The card is swiped when the host",
    "next reads the reader (magtek) or arms it (framed).",
]
"""The banner's how-to for cards (``cli.emit`` puts it in the JSON document too)."""


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _ack(step: ScenarioStep) -> None:
    click.echo(f"scenario: {step.device} {step.fault} applied at {step.at_s:g}s", err=True)


def _report_step_error(step: ScenarioStep, exc: Exception) -> None:
    click.echo(f"scenario: step at {step.at_s:g}s ({step.device} {step.fault}): {exc}", err=True)


class CommandReader:
    """Reads fault commands from a stream on a daemon thread; stops at end of input."""

    def __init__(self, devices: dict[str, VirtualDevice], source: TextIO, replies: TextIO) -> None:
        self.devices = devices
        self.source = source
        self.replies = replies
        self._thread = threading.Thread(target=self._run, name="fault-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        for line in self.source:
            if line.strip() and not line.lstrip().startswith("#"):
                self._reply(self.execute(line))

    def execute(self, line: str) -> str:
        """Apply one command; return the acknowledgement or error text."""
        from .scenarios import ScenarioError, parse_fault_command

        try:
            name, fault, params = parse_fault_command(line.strip())
        except ScenarioError as exc:
            return f"error: {exc}"
        device = self.devices.get(name)
        if device is None:
            return f"error: unknown device {name!r}; use one of: {', '.join(self.devices)}"
        try:
            device.apply_fault(fault, **params)
        except (ValueError, TypeError) as exc:
            return f"error: {name} {fault}: {exc}"
        return f"ok: {name} {fault}"

    def _reply(self, text: str) -> None:
        self.replies.write(text + "\n")
        self.replies.flush()


# ---- the group's subcommands ---------------------------------------------------
# Each subcommand module keeps its imports light; add new ``simulate`` subcommands here.
simulate.add_command(simulate_devices)
simcontrol.register(simulate)  # simulate card, simulate fault
# Imported when run (they pull in the back office, starlette, httpx): `simulate --help` is quick.
simulate.add_lazy(
    "backoffice",
    "posedge.simulator.cli_backoffice:simulate_backoffice",
    "Serve the back office with injected faults until SIGINT/SIGTERM.",
)
simulate.add_lazy(
    "fleet",
    "posedge.simulator.fleet.cli:fleet_command",
    "Simulate a fleet of terminals speaking the sync protocol to a back office.",
)
