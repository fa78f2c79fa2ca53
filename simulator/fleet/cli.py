"""``posedge simulate fleet``: a simulated fleet of terminals against a back office.

Exit codes (DESIGN §3): 0 the run ended and every event that was allowed to
reach the back office is acknowledged · 2 usage (the message names the option
and what to fix), a refused token or enrolment · 3 the run ended but the back
office refused something (a terminal stopped uploading) or events it should
hold are missing · 4 the back office is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from posedge.agent.cli.context import get_cli
from posedge.agent.errors import ConfigError, PeerUnreachable, PosedgeError

# Every ``posedge`` invocation imports this module: the simulator itself (the model, and
# the runner with httpx, cryptography and the agent's journal) loads when the command runs.
if TYPE_CHECKING:
    from .faults import Fault
    from .model import Fleet
    from .runner import FleetRunner, Progress

# The opening-hours templates of .model.HOURS_TEMPLATES (a test keeps the two equal).
HOURS_CHOICES = ("supermarket", "convenience", "mall", "around-the-clock")

EXIT_USAGE = 2
EXIT_CHECK = 3


def _duration(param: str, text: str, *, allow_zero: bool = False) -> float:
    from .faults import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None
    if value < 0 or (value == 0 and not allow_zero):
        raise click.BadParameter(
            f"{text!r} must be more than 0" + (" (0 turns it off)" if allow_zero else ""),
            param_hint=param,
        )
    return value


def _speed(text: str) -> float | None:
    if text.strip().lower() in ("max", "replay"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise click.BadParameter(
            f"{text!r} is not a speed; give simulated seconds per real second (1 = real time, "
            "60 = one simulated minute per second) or max (replay as fast as possible)",
            param_hint="--speed",
        )
    return value


def _start(text: str | None, default: float) -> float:
    if text is None or text.strip().lower() == "now":
        return default
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time; write e.g. 2026-11-26T08:00:00+00:00 or now",
            param_hint="--start",
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no UTC offset; add one, e.g. {text.strip()}+00:00",
            param_hint="--start",
        )
    return moment.timestamp()


@click.command("fleet")
@click.option(
    "--terminals",
    type=int,
    default=10,
    show_default=True,
    help="Simulated terminals (lanes) in the fleet.",
)
@click.option(
    "--stores",
    type=int,
    default=None,
    help="Stores the lanes are spread over [default: one per 10 terminals].",
)
@click.option(
    "--backoffice",
    "backoffice",
    metavar="URL",
    help="Back office base URL, e.g. http://127.0.0.1:8080 (not needed with --list).",
)
@click.option(
    "--duration",
    metavar="DURATION",
    help="Simulated time to run (90s, 30m, 8h, 2d, 8w) [default: until Ctrl-C; "
    "required with --speed max].",
)
@click.option(
    "--speed",
    default="1",
    show_default=True,
    metavar="FACTOR|max",
    help="Simulated seconds per real second (60: a simulated minute per second); "
    "max replays the window as fast as the back office answers.",
)
@click.option(
    "--start",
    "start_text",
    metavar="ISO-TIME",
    help="Simulated start time with UTC offset [default: now in real time; "
    "now minus --duration with --speed max].",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the fleet, its traffic and its sales: the same seed, the same run.",
)
@click.option(
    "--heartbeat-interval",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Simulated time between a terminal's heartbeats; 0 sends none.",
)
@click.option(
    "--batch-size", type=int, default=500, show_default=True, help="Most events in one upload."
)
@click.option(
    "--upload-interval",
    metavar="DURATION",
    help="How long an event may wait before its terminal uploads (simulated time) "
    "[default: 10s in real time, 1h with --speed max: one replay round].",
)
@click.option(
    "--connections",
    type=int,
    default=32,
    show_default=True,
    help="Most concurrent requests (the HTTP connection pool).",
)
@click.option(
    "--timeout",
    "timeout_text",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Timeout of one request.",
)
@click.option(
    "--fault",
    "fault_texts",
    multiple=True,
    metavar="KIND[=VARIANT]:TARGET@WHEN[/DURATION]",
    help="Inject a fault (repeatable): silent|dead|backlog:TERMINAL@+2h, "
    "network-down:STORE@+1h/30m, dead-reader[=unplugged|worn-head|no-evidence]:TERMINAL@+1h. "
    "See docs/fleet-simulator.md.",
)
@click.option(
    "--random-faults",
    type=int,
    default=0,
    metavar="N",
    help="Also inject N random faults in the window (seeded by --seed).",
)
@click.option(
    "--token",
    "shared_token",
    metavar="TOKEN",
    help="Bearer token for every terminal without one in --tokens-file.",
)
@click.option(
    "--tokens-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help='Per-terminal bearer tokens: TOML/JSON `terminal-id = "token"` (the back '
    "office's --tokens format). Without tokens: open mode.",
)
@click.option(
    "--sign/--no-sign",
    default=False,
    show_default=True,
    help="Sign every batch with the terminal's Ed25519 device key.",
)
@click.option(
    "--enrol-codes",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help='Enrol terminals first: TOML/JSON `terminal-id = "code"`; enrolled '
    "terminals take the id and token the back office answers and sign every batch.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue each terminal's chain from the head the back office holds.",
)
@click.option(
    "--drain-timeout",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Real time allowed at the end for the last uploads.",
)
@click.option(
    "--timezone",
    "timezones",
    multiple=True,
    metavar="ZONE",
    help="Store time zones, round robin (repeatable) "
    "[default: Europe/Berlin, Europe/London, Europe/Lisbon].",
)
@click.option(
    "--hours",
    type=click.Choice(HOURS_CHOICES),
    help="One opening-hours template for every store [default: a seeded mix].",
)
@click.option(
    "--store-prefix",
    default="store",
    show_default=True,
    help="Store ids are PREFIX001…, terminal ids PREFIX001-lane01…: simulator processes with "
    "different prefixes can share one back office.",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Print the fleet (stores, hours, terminals) and exit; no requests.",
)
@click.option("--details", is_flag=True, help="With --json: one entry per terminal in the summary.")
@click.pass_context
def fleet_command(
    ctx: click.Context,
    terminals: int,
    stores: int | None,
    backoffice: str | None,
    duration: str | None,
    speed: str,
    start_text: str | None,
    seed: int,
    heartbeat_interval: str,
    batch_size: int,
    upload_interval: str | None,
    connections: int,
    timeout_text: str,
    fault_texts: tuple[str, ...],
    random_faults: int,
    shared_token: str | None,
    tokens_file: Path | None,
    sign: bool,
    enrol_codes: Path | None,
    resume: bool,
    drain_timeout: str,
    timezones: tuple[str, ...],
    hours: str | None,
    store_prefix: str,
    list_only: bool,
    details: bool,
) -> None:
    """Simulate a fleet of terminals speaking the sync protocol to a back office.

    Every terminal sells by its store's opening hours and an hour-of-week
    profile (bursty arrivals), journals the events a real agent journals in a
    hash chain, uploads them in signed or unsigned batches and sends
    heartbeats; faults make lanes silent or dead, cut a store's network or
    stall a terminal's uploads. Prints a summary (one JSON document with
    --json). Exit 0 when everything that could be delivered was acknowledged.
    """
    cli = get_cli(ctx)
    fleet = _fleet(terminals, stores, seed, timezones, hours, store_prefix)
    if list_only:
        _print_fleet(cli, fleet)
        return
    if not backoffice:
        raise click.UsageError("give the back office URL with --backoffice URL (or use --list)")
    if not backoffice.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{backoffice!r} is not an http:// or https:// URL", param_hint="--backoffice"
        )
    speed_value = _speed(speed)
    length = _duration("--duration", duration) if duration is not None else None
    if speed_value is None and length is None:
        raise click.UsageError(
            "--speed max replays a window: give its length with --duration (e.g. --duration 8w)"
        )
    now = time.time()
    start = _start(start_text, now - length if speed_value is None and length else now)
    end = None if length is None else start + length
    if batch_size < 1 or batch_size > 50_000:
        raise click.BadParameter(f"{batch_size} is out of range 1-50000", param_hint="--batch-size")
    if connections < 1 or connections > 4096:
        raise click.BadParameter(
            f"{connections} is out of range 1-4096", param_hint="--connections"
        )
    if random_faults < 0:
        raise click.BadParameter("must be 0 or more", param_hint="--random-faults")
    if random_faults and end is None:
        raise click.UsageError("--random-faults needs a window: give --duration")
    faults = _faults(fault_texts, fleet, start)
    if random_faults:
        assert end is not None
        faults.extend(random_faults_of(fleet, start, end, random_faults, seed))
    from .runner import FleetRunError, FleetRunner, RunOptions

    tokens = _mapping(tokens_file, "--tokens-file", "token") if tokens_file else {}
    codes = _mapping(enrol_codes, "--enrol-codes", "code") if enrol_codes else {}
    if tokens and shared_token is None:
        missing = [t for t in fleet.terminals if t not in tokens and t not in codes]
        if missing:
            raise click.BadParameter(
                f"{len(missing)} terminals have no token (first: {', '.join(missing[:3])}); "
                "add them to the file, or give --token for the rest",
                param_hint="--tokens-file",
            )
    unknown = sorted(set(codes) - set(fleet.terminals))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown[:3])} {'is' if len(unknown) == 1 else 'are'} not a terminal "
            "of this fleet (see --list)",
            param_hint="--enrol-codes",
        )
    options = RunOptions(
        backoffice=backoffice,
        start=start,
        end=end,
        speed=speed_value,
        heartbeat_interval_s=_duration("--heartbeat-interval", heartbeat_interval, allow_zero=True),
        batch_size=batch_size,
        upload_interval_s=(
            _duration("--upload-interval", upload_interval, allow_zero=speed_value is not None)
            if upload_interval is not None
            else None
        ),
        connections=connections,
        timeout_s=_duration("--timeout", timeout_text),
        tokens=tokens,
        shared_token=shared_token,
        sign=sign,
        enrol_codes=codes,
        resume=resume,
        drain_timeout_s=_duration("--drain-timeout", drain_timeout, allow_zero=True),
    )
    progress = _progress_printer() if not cli.json_output and sys.stderr.isatty() else None
    runner = FleetRunner(fleet, options, faults, progress=progress)
    try:
        asyncio.run(_run_with_signals(runner))
    except FleetRunError as exc:
        error = {2: ConfigError, 4: PeerUnreachable}.get(exc.exit_code, PosedgeError)
        raise error(str(exc)) from None
    finally:
        if progress is not None:
            click.echo("", err=True)  # end the progress line
    report = runner.report(details=details)
    cli.emit(report, _human(report))
    if not report["ok"]:
        sys.stdout.flush()
        sys.exit(EXIT_CHECK)


def random_faults_of(fleet: Fleet, start: float, end: float, count: int, seed: int) -> list[Fault]:
    from .faults import random_faults

    return random_faults(fleet, start, end, count, seed=seed)


async def _run_with_signals(runner: FleetRunner) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, runner.stop)
    try:
        await runner.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def _fleet(
    terminals: int,
    stores: int | None,
    seed: int,
    timezones: tuple[str, ...],
    hours: str | None,
    store_prefix: str = "store",
) -> Fleet:
    from .model import DEFAULT_TIMEZONES, FleetError, build_fleet

    if terminals < 1:
        raise click.BadParameter(f"{terminals}: give at least 1", param_hint="--terminals")
    store_count = stores if stores is not None else max(1, terminals // 10)
    if store_count < 1:
        raise click.BadParameter(f"{store_count}: give at least 1", param_hint="--stores")
    if store_count > terminals:
        raise click.BadParameter(
            f"{store_count} stores cannot each have a lane with {terminals} terminals; give at "
            "most as many stores as terminals",
            param_hint="--stores",
        )
    try:
        return build_fleet(
            terminals,
            store_count,
            seed=seed,
            timezones=timezones or DEFAULT_TIMEZONES,
            hours=hours,
            store_prefix=store_prefix,
        )
    except FleetError as exc:
        option = "--store-prefix" if "store prefix" in str(exc) else "--timezone"
        raise click.BadParameter(str(exc), param_hint=option) from None


def _faults(texts: tuple[str, ...], fleet: Fleet, start: float) -> list[Fault]:
    from .faults import FaultSpecError, parse_fault

    out = []
    for text in texts:
        try:
            out.append(parse_fault(text, fleet, start))
        except FaultSpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--fault") from None
    return out


def _mapping(path: Path, option: str, what: str) -> dict[str, str]:
    from .enrol import load_mapping

    try:
        return load_mapping(path, what)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _print_fleet(cli: Any, fleet: Fleet) -> None:
    lines = [f"{len(fleet.lanes)} terminals in {len(fleet.stores)} stores (seed {fleet.seed})"]
    for store in fleet.stores:
        lines.append(
            f"{store.id}  {store.timezone:<16} {store.hours_template:<16} scale {store.scale:.2f}"
            f"  {store.currency}  lanes {', '.join(store.lanes)}"
        )
    cli.emit(fleet.as_dict(), "\n".join(lines))


def _progress_printer() -> Any:
    from .traffic import iso

    def show(progress: Progress) -> None:
        click.echo(
            f"\r{iso(round(progress.sim_time))}  events {progress.events_accepted}"
            f"/{progress.events_generated}  heartbeats {progress.heartbeats}"
            f"  unsynced {progress.unsynced}  errors {progress.errors}   ",
            err=True,
            nl=False,
        )

    return show


def _human(report: dict[str, Any]) -> str:
    events, beats, lat = report["events"], report["heartbeats"], report["latency_ms"]
    window = report["window"]
    lines = [
        f"fleet {report['fleet']['terminals']} terminals / {report['fleet']['stores']} stores, "
        f"{report['mode']} {window['start']} → {window['end']} in {report['elapsed_s']:.1f} s",
        f"events: {events['generated']} generated, {events['accepted']} accepted, "
        f"{events['duplicates']} duplicates, {events['unsynced']} unsynced "
        f"({events['unsynced_blocked_by_faults']} held back by faults), "
        f"{events['batches']} batches, {events['accepted_per_s']} events/s",
        f"heartbeats: {beats['sent']} sent, {beats['failed']} failed, "
        f"{beats['suppressed_by_faults']} suppressed by faults",
        f"latency events p50 {lat['events']['p50_ms']} ms p99 {lat['events']['p99_ms']} ms; "
        f"heartbeat p50 {lat['heartbeat']['p50_ms']} ms p99 {lat['heartbeat']['p99_ms']} ms",
        f"sales: {report['sales']['total']} {report['sales']['outcomes']}",
    ]
    if report["errors"]["total"]:
        lines.append(f"errors: {report['errors']['by_kind']}")
    for failed in report["terminals_failed"][:10]:
        lines.append(f"terminal {failed['terminal']} stopped uploading: {failed['reason']}")
    for fault in report["faults"]:
        end = fault["end"] or "the end"
        lines.append(f"fault {fault['kind']} {fault['target']} {fault['start']} → {end}")
    lines.append("ok" if report["ok"] else "NOT OK: events the back office should hold are missing")
    return "\n".join(lines)


__all__ = ["fleet_command"]
