"""``posedge test print`` and ``posedge test swipe``: a technician exercises one device.

``test print`` prints the test receipt (title, sizes, CODE128, QR code, cut)
and reports the printer's status; ``test swipe`` waits for one swipe and shows
what may be shown of it (masked PAN, brand, expiry, per-track quality).
``posedge devices check`` (UnifiedPOS health checks) lives here too and is
added to the ``devices`` group.

Exit codes: 0 ok · 2 usage/configuration (no URL, unsupported URL, bad
option) · 3 the device is not ready, the job was not confirmed, the read
failed, or the device is unplugged / silent.

This module must never print, log or put in JSON the full PAN, the
cardholder name or any track data: only :meth:`CardRead.summary` fields
without the PAN token.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from posedge.drivers.cardreader import CardReader, SwipeTimeout
from posedge.drivers.errors import (
    DeviceBusy,
    DeviceError,
    DevicePermissionDenied,
    DeviceTimeout,
    DeviceUnplugged,
    ProtocolError,
    UnsupportedURL,
)
from posedge.drivers.health import HealthLevel, HealthResult
from posedge.drivers.printer import FAULT_HINTS, PrinterNotReady, PrintResult, ReceiptPrinter
from posedge.drivers.reader.tracks import CardUnreadable

from ..errors import ConfigError
from .context import CliContext, get_cli
from .devices import devices

if TYPE_CHECKING:
    from ..config import Config

EXIT_CHECK_FAILED = 3
HEALTH_LEVELS = tuple(level.value for level in HealthLevel)

_HINTS: tuple[tuple[type[DeviceError], str], ...] = (
    (CardUnreadable, "swipe again, steadily and in one motion; clean the head if it repeats"),
    (SwipeTimeout, "swipe a card while the command waits, or raise --timeout"),
    (DeviceTimeout, "check the device is powered, the cable, and the baud rate / protocol"),
    (DeviceUnplugged, "check the cable and power, then run `posedge devices`"),
    (DeviceBusy, "stop the other program holding the device"),
    (DevicePermissionDenied, "fix the access rights as the message says"),
    (ProtocolError, "check the configured protocol and serial settings match the device"),
)


def _hint(exc: DeviceError) -> str:
    return next((hint for kind, hint in _HINTS if isinstance(exc, kind)), "check the device")


def _error_doc(exc: DeviceError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": _hint(exc)}


def _fail(cli: CliContext, doc: dict[str, Any], human: str) -> NoReturn:
    """Report a failed check: JSON on stdout, or the human text on stderr; exit 3."""
    if cli.json_output:
        cli.emit(doc)
    else:
        click.echo(human, err=True)
    sys.exit(EXIT_CHECK_FAILED)


def _bad_url(exc: UnsupportedURL, given: str | None, key: str, option: str) -> Exception:
    """An unsupported URL is a usage error (option) or a configuration error (config key)."""
    if given is not None:
        return click.BadParameter(exc.message, param_hint=option)
    return ConfigError(f"{key}: {exc.message}")


@click.group("test")
def test_group() -> None:
    """Exercise one device: print a test receipt, read a test swipe."""


# ---- test print ----------------------------------------------------------------
@test_group.command("print")
@click.option("--printer", "url", metavar="URL", help="Printer URL [default: printer.url].")
@click.pass_context
def test_print(ctx: click.Context, url: str | None) -> None:
    """Print the test receipt and report the printer's status.

    Exit 3 naming the fault when the printer is not ready (nothing is printed),
    when the job could not be confirmed (reprint), or when the printer is
    unplugged or silent.
    """
    from ..devices import PRINTER_ID

    cli = get_cli(ctx)
    printer = _open_printer(cli, cli.config, url)
    try:
        result = printer.print_receipt(printer.test_receipt())
    except PrinterNotReady as exc:
        _not_ready(cli, printer.url, exc)
    except DeviceError as exc:
        # print_receipt notes a job that may be partly printed; errors before it sent nothing.
        partial = bool(getattr(exc, "__notes__", None))
        _device_failed(cli, PRINTER_ID, printer.url, exc, printed=None if partial else False)
    finally:
        printer.close()
        printer.transport.close()
    _report_print(cli, printer.url, result)


def _open_printer(cli: CliContext, config: Config, url: str | None) -> ReceiptPrinter:
    from ..devices import PRINTER_ID, open_printer

    try:
        return open_printer(config, cli.state_dir, url)
    except UnsupportedURL as exc:
        raise _bad_url(exc, url, "printer.url", "--printer") from None
    except DeviceError as exc:
        _device_failed(cli, PRINTER_ID, exc.url or url or "", exc, printed=False)


def _not_ready(cli: CliContext, url: str, exc: PrinterNotReady) -> NoReturn:
    from ..devices import PRINTER_ID

    doc = {
        "device": PRINTER_ID,
        "url": url,
        "ok": False,
        "printed": False,
        "faults": exc.faults,
        "status": exc.status.as_dict(),
        "print": None,
        "error": _error_doc(exc)
        | {"hint": "; ".join(FAULT_HINTS.get(f, "check the printer") for f in exc.faults)},
    }
    lines = [f"printer {url}: NOT READY — nothing was printed"]
    lines += [f"  {fault}: {FAULT_HINTS.get(fault, 'check the printer')}" for fault in exc.faults]
    _fail(cli, doc, "\n".join(lines))


def _device_failed(
    cli: CliContext, device: str, url: str, exc: DeviceError, *, printed: bool | None
) -> NoReturn:
    from ..devices import PRINTER_ID

    doc: dict[str, Any] = {"device": device, "url": url, "ok": False, "error": _error_doc(exc)}
    human = f"{device} {url}: {type(exc).__name__}: {exc.message}\n  what to check: {_hint(exc)}"
    if device == PRINTER_ID:
        doc |= {"printed": printed, "status": None, "print": None}
        if printed is None:
            human += "\n  the receipt may be incomplete: reprint after fixing"
    _fail(cli, doc, human)


def _report_print(cli: CliContext, url: str, result: PrintResult) -> None:
    from ..devices import PRINTER_ID

    doc: dict[str, Any] = {
        "device": PRINTER_ID,
        "url": url,
        "ok": result.ok,
        "printed": result.complete,
        "status": result.status.as_dict(),
        "print": result.as_dict(),
        "error": None,
    }
    if not result.ok:
        hint = FAULT_HINTS.get(result.fault or "", "check the printer, then reprint")
        doc["error"] = {
            "type": "NotConfirmed",
            "message": f"the printer did not confirm the job ({result.fault}); reprint needed",
            "hint": hint,
        }
        human = (
            f"printer {url}: test receipt NOT CONFIRMED ({result.fault}) — reprint needed\n"
            f"  what to check: {hint}"
        )
        _fail(cli, doc, human)
    warnings = f" (warnings: {', '.join(result.warnings)})" if result.warnings else ""
    lines = [
        f"printer {url}: test receipt printed and confirmed "
        f"({result.lines_printed} lines, {result.bytes_sent} bytes)",
        f"  status: ready{warnings}",
    ]
    cli.emit(doc, "\n".join(lines))


# ---- test swipe ----------------------------------------------------------------
@test_group.command("swipe")
@click.option("--reader", "url", metavar="URL", help="Card reader URL [default: reader.url].")
@click.option(
    "--protocol",
    type=click.Choice(["magtek", "framed"]),
    default=None,
    help="Reader protocol [default: reader.protocol].",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1, max=600),
    default=None,
    metavar="S",
    help="Seconds to wait for the swipe [default: reader.swipe_timeout].",
)
@click.pass_context
def test_swipe(
    ctx: click.Context,
    url: str | None,
    protocol: str | None,
    timeout_s: float | None,
) -> None:
    """Wait for one swipe; show masked PAN, brand, expiry and per-track quality.

    Never shows the full card number or track data. Exit 3 with the reason on
    a failed read, a timeout, or an unplugged / silent reader.
    """
    from ..devices import READER_ID, swipe_timeout_s

    cli = get_cli(ctx)
    config = cli.config
    wait_s = timeout_s if timeout_s is not None else swipe_timeout_s(config)
    reader = _open_reader(cli, config, url, protocol)
    click.echo(f"Swipe a card on {reader.url} ({reader.protocol}) within {wait_s:g}s …", err=True)
    try:
        with reader.read_card(wait_s) as card:
            summary = card.summary()
    except KeyboardInterrupt:
        reader.cancel()
        raise
    except CardUnreadable as exc:
        _unreadable(cli, reader, exc)
    except DeviceError as exc:
        _device_failed(cli, READER_ID, reader.url, exc, printed=None)
    finally:
        reader.close()
    summary.pop("pan_token", None)
    doc = {
        "device": READER_ID,
        "url": reader.url,
        "protocol": reader.protocol,
        "ok": True,
        "card": summary,
    }
    cli.emit(doc, _card_text(reader, summary))


def _open_reader(
    cli: CliContext, config: Config, url: str | None, protocol: str | None
) -> CardReader:
    from ..devices import READER_ID, open_reader

    try:
        return open_reader(config, cli.state_dir, url, protocol)
    except UnsupportedURL as exc:
        raise _bad_url(exc, url, "reader.url", "--reader") from None
    except DeviceError as exc:
        _device_failed(cli, READER_ID, exc.url or url or "", exc, printed=None)


def _unreadable(cli: CliContext, reader: CardReader, exc: CardUnreadable) -> NoReturn:
    from ..devices import READER_ID

    quality = {str(n): q.value for n, q in exc.track_quality.items()}
    doc = {
        "device": READER_ID,
        "url": reader.url,
        "protocol": reader.protocol,
        "ok": False,
        "track_quality": quality,
        "error": _error_doc(exc),
    }
    tracks = ", ".join(f"track {n}: {q}" for n, q in quality.items())
    _fail(
        cli,
        doc,
        f"reader {reader.url}: card NOT READ ({tracks})\n  what to check: {_hint(exc)}",
    )


def _card_text(reader: CardReader, card: dict[str, Any]) -> str:
    tracks = card["track_quality"]
    expiry = str(card["expiry"])
    rows = [
        ("masked PAN", str(card["masked_pan"])),
        ("brand", str(card["brand"] or "unknown")),
        ("expiry", f"20{expiry[:2]}-{expiry[2:]}" + (" (EXPIRED)" if card["expired"] else "")),
        ("service code", f"{card['service_code']}" + (" (chip card)" if card["chip_card"] else "")),
    ]
    rows += [(f"track {n}", str(q)) for n, q in sorted(tracks.items())]
    body = "\n".join(f"  {label:<13}{value}" for label, value in rows)
    return f"reader {reader.url} ({reader.protocol}): card read\n{body}"


# ---- devices check -------------------------------------------------------------
@devices.command("check")
@click.option("--printer", "printer_url", metavar="URL", help="Printer [default: printer.url].")
@click.option("--reader", "reader_url", metavar="URL", help="Card reader [default: reader.url].")
@click.option(
    "--level",
    type=click.Choice(HEALTH_LEVELS),
    default=HealthLevel.INTERNAL.value,
    show_default=True,
    help="internal: status only; external: print a test receipt / read a swipe; "
    "interactive: as external, then you confirm (needs a terminal).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1, max=600),
    default=None,
    metavar="S",
    help="Seconds to wait for a swipe at external level [default: reader.swipe_timeout].",
)
@click.pass_context
def devices_check(
    ctx: click.Context,
    printer_url: str | None,
    reader_url: str | None,
    level: str,
    timeout_s: float | None,
) -> None:
    """UnifiedPOS health checks ("Internal HCheck: Successful") on the printer and reader.

    Devices default to printer.url and reader.url; a device with no URL is
    skipped. Exit 3 if any check fails.
    """
    from ..devices import PRINTER_ID, READER_ID, swipe_timeout_s

    cli = get_cli(ctx)
    health = HealthLevel(level)
    if health is HealthLevel.INTERACTIVE and not sys.stdin.isatty():
        raise click.UsageError(
            "--level interactive needs a technician at a terminal (stdin is not a TTY); "
            "use --level internal or --level external",
            ctx,
        )
    config = cli.config
    targets = {
        PRINTER_ID: printer_url if printer_url is not None else config.printer.url,
        READER_ID: reader_url if reader_url is not None else config.reader.url,
    }
    if not any(targets.values()):
        raise ConfigError(
            "no device to check: set printer.url / reader.url in the configuration "
            "or pass --printer URL / --reader URL"
        )
    confirm = _confirm if health is HealthLevel.INTERACTIVE else None
    wait_s = timeout_s if timeout_s is not None else swipe_timeout_s(config)
    checks: list[dict[str, Any]] = []
    if targets[PRINTER_ID]:
        checks.append(_check_printer(cli, config, printer_url, health, confirm))
    if targets[READER_ID]:
        checks.append(_check_reader(cli, config, reader_url, health, confirm, wait_s))
    ok = all(check["ok"] for check in checks)
    lines = [f"{c['device']:<8} {c['url']}  {c['text']}" for c in checks]
    doc = {"ok": ok, "level": health.value, "checks": checks}
    cli.emit(doc, "\n".join(lines))
    if not ok:
        sys.exit(EXIT_CHECK_FAILED)


def _confirm(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def _check_printer(
    cli: CliContext,
    config: Config,
    url: str | None,
    level: HealthLevel,
    confirm: Callable[[str], bool] | None,
) -> dict[str, Any]:
    from ..devices import PRINTER_ID, open_printer

    try:
        printer = open_printer(config, cli.state_dir, url)
    except UnsupportedURL as exc:
        raise _bad_url(exc, url, "printer.url", "--printer") from None
    except DeviceError as exc:
        return _open_failed(PRINTER_ID, exc.url or url or config.printer.url or "", level, exc)
    try:
        result = printer.check_health(level, confirm=confirm)
    finally:
        printer.close()
        printer.transport.close()
    return {"url": printer.url, **result.as_dict()}


def _check_reader(
    cli: CliContext,
    config: Config,
    url: str | None,
    level: HealthLevel,
    confirm: Callable[[str], bool] | None,
    timeout_s: float,
) -> dict[str, Any]:
    from ..devices import READER_ID, open_reader

    try:
        reader = open_reader(config, cli.state_dir, url)
    except UnsupportedURL as exc:
        raise _bad_url(exc, url, "reader.url", "--reader") from None
    except DeviceError as exc:
        return _open_failed(READER_ID, exc.url or url or config.reader.url or "", level, exc)
    if level is not HealthLevel.INTERNAL:
        click.echo(f"Swipe a card on {reader.url} within {timeout_s:g}s …", err=True)
    try:
        result = reader.check_health(level, timeout_s=timeout_s, confirm=confirm)
    finally:
        reader.close()
    return {"url": reader.url, **result.as_dict()}


def _open_failed(device: str, url: str, level: HealthLevel, exc: DeviceError) -> dict[str, Any]:
    problem = f"{type(exc).__name__}: {exc.message}"
    result = HealthResult.make(device, level, problem, hint=_hint(exc))
    return {"url": url, **result.as_dict()}


def register(cli: click.Group) -> None:
    cli.add_command(test_group)
