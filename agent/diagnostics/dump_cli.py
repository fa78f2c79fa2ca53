"""``posedge devices dump``: the printer's and reader's identity, status and statistics.

* With the daemon running on the state directory (it holds ``daemon.lock``), the dump
  comes from the daemon over the till API (``GET /v1/devices/dump``, the till's token),
  so this command never opens a device the daemon holds. A daemon that does not answer
  is exit 4.
* Without one, the configured devices are opened here and asked for their status only
  (``DLE EOT`` to the printer, ``S`` to a framed reader: nothing printed, nothing armed),
  then closed.

Default: the dump is written to ``<state dir>/dumps/devices-<UTC timestamp>.json`` (or
``--output FILE``) and its path printed. ``--json`` prints the document instead (and
still writes ``--output`` when given). Exit 0 · 2 bad usage or configuration · 3 a
configured device could not be reached (the dump is still written, with the error) ·
4 the running daemon did not answer.

Imports beyond click happen when the command runs (``posedge --help`` stays quick).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..config import Config

EXIT_UNREACHABLE_DEVICE = 3
API_TIMEOUT_S = 30.0


@click.command("dump")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Write the dump to FILE (mode 0600) instead of <state dir>/dumps/.",
)
@click.pass_context
def dump(ctx: click.Context, output: Path | None) -> None:
    """Dump the printer's and reader's identity, status and statistics to a file.

    Asks the running daemon when there is one (it holds the devices); otherwise opens the
    configured devices for status queries only. Exit 3 when a configured device cannot be
    reached (the dump is still written, with the error recorded).
    """
    from ..cli.context import get_cli
    from .dump import unreachable_devices
    from .files import write_dump, write_output

    cli = get_cli(ctx)
    config = cli.config  # a bad configuration fails here: exit 2, nothing touched
    state_dir = cli.state_dir
    doc = collect(config, state_dir)
    path = None
    if output is not None:
        path = write_output(output, doc)
    elif not cli.json_output:
        path = write_dump(state_dir, doc)
    cli.emit(doc, render(doc, path))
    bad = unreachable_devices(doc)
    if bad:
        click.echo(
            f"posedge: {' and '.join(bad)} could not be reached; the dump records the error"
            + (f" ({path})" if path else ""),
            err=True,
        )
        sys.exit(EXIT_UNREACHABLE_DEVICE)  # click's ctx.exit is swallowed by main()


def collect(config: Config, state_dir: Path) -> dict[str, Any]:
    """The dump: from the running daemon if there is one, else from devices opened here."""
    from ..cli.enroll import daemon_pid

    pid = daemon_pid(state_dir)
    if pid is not None:
        return ask_daemon(config, state_dir, pid)
    return dump_here(config, state_dir)


def ask_daemon(config: Config, state_dir: Path, pid: int) -> dict[str, Any]:
    """``GET /v1/devices/dump`` over the daemon's API socket."""
    import httpx

    from ..api.bearer import read_token, token_path
    from ..api.server import resolve_api_paths
    from ..errors import ConfigError, PeerUnreachable
    from .dump import DumpFormatError, parse_dump
    from .routes import DUMP_PATH

    who = f"the posedge daemon (pid {pid})" if pid > 0 else "the posedge daemon"
    paths = resolve_api_paths(config, state_dir)
    token = read_token(token_path(config, state_dir), "api.token_file")
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(paths.socket)),
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_TIMEOUT_S,
        ) as client:
            reply = client.get(DUMP_PATH)
    except httpx.HTTPError as exc:
        raise PeerUnreachable(
            f"{who} runs on {state_dir} but its API at {paths.socket} did not answer "
            f"({type(exc).__name__}); check `systemctl status posedge`"
        ) from None
    if reply.status_code == 401:
        raise ConfigError(
            f"{who} refused the token in {token_path(config, state_dir)}; run this as the "
            "service user with the same --config"
        )
    if reply.status_code == 404:
        raise PeerUnreachable(
            f"{who} has no {DUMP_PATH} (an older posedge?); send it SIGUSR1 instead: the dump "
            f"goes to {state_dir}/dumps/"
        )
    if reply.status_code != 200:
        raise PeerUnreachable(f"{who} answered {reply.status_code} to {DUMP_PATH}; see its log")
    try:
        doc: dict[str, Any] = reply.json()
        parse_dump(doc, source=f"{who}'s answer")
    except (ValueError, DumpFormatError) as exc:
        raise PeerUnreachable(f"{who} sent no valid device dump: {exc}") from None
    return doc


def dump_here(config: Config, state_dir: Path) -> dict[str, Any]:
    """Open each configured device, query its status, close it; the dump."""
    from posedge.drivers.errors import DeviceError
    from posedge.drivers.statistics import DeviceStatistics

    from ..devices import PRINTER_ID, READER_ID, open_printer, open_reader
    from ..sync.client import agent_version
    from .dump import build_dump, not_configured, probe_printer, probe_reader, unreachable

    devices: dict[str, dict[str, Any]] = {}
    url = config.printer.url
    if not url:
        devices["printer"] = not_configured("printer")
    else:
        try:
            printer = open_printer(config, state_dir)
        except DeviceError as exc:
            stats = DeviceStatistics(state_dir, PRINTER_ID).snapshot()
            devices["printer"] = unreachable("printer", url, exc, stats)
        else:
            try:
                devices["printer"] = probe_printer(printer, url)
            finally:
                printer.close()
                printer.transport.close()
    url = config.reader.url
    if not url:
        devices["reader"] = not_configured("reader")
    else:
        try:
            reader = open_reader(config, state_dir)
        except DeviceError as exc:
            stats = DeviceStatistics(state_dir, READER_ID).snapshot()
            devices["reader"] = unreachable("reader", url, exc, stats)
        else:
            try:
                devices["reader"] = probe_reader(reader, url)
            finally:
                reader.close()
    return build_dump(devices, reason="command", source="command", version=agent_version(),
                      journal_errors=_journal_errors(state_dir))  # fmt: skip


def _journal_errors(state_dir: Path) -> dict[str, list[dict[str, Any]]] | None:
    """Recent device errors from the journal, read-only; None when there is no journal."""
    from ..journal import Journal, JournalError
    from .dump import journal_device_errors

    try:
        journal = Journal.open(state_dir, readonly=True)
    except JournalError:
        return None
    try:
        return journal_device_errors(journal)
    finally:
        journal.close()


def render(doc: dict[str, Any], path: Path | None) -> str:
    """Human text: where the dump went, then one line per device."""
    lines = [f"device dump written to {path}"] if path is not None else []
    for kind, entry in doc["devices"].items():
        lines.append(f"  {kind:<8} {_device_line(entry)}")
    return "\n".join(lines)


def _device_line(entry: dict[str, Any]) -> str:
    if not entry["configured"]:
        return "not configured"
    status = entry.get("status") or {}
    where = entry.get("url") or "?"
    if entry.get("reachable") is False:
        last = entry["errors"][-1] if entry.get("errors") else {}
        return f"{where}  UNREACHABLE: {last.get('error', '?')}: {last.get('message', '')}"
    model = entry.get("identity", {}).get("model")
    state = status.get("state")
    if state is None:  # a printer
        faults = status.get("faults") or []
        warnings = status.get("warnings") or []
        state = "ready" if not faults else "NOT READY (" + ", ".join(faults) + ")"
        if warnings:
            state += " · " + ", ".join(warnings)
    return f"{where}  {state}" + (f"  [{model}]" if model else "")
