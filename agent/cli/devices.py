"""``posedge devices``: list serial ports and USB devices, with models and access.

A technician's first command: what is attached, which known printer or
reader it is, the URL to configure, and whether this user may open it (if
not, the group to join or the udev rule to install). Subcommands (``check``)
are added to the :data:`devices` group by other modules.

This command only looks: it must never open, claim or write to a device.
"""

from __future__ import annotations

import click

from posedge.drivers.discovery import Discovery, FoundDevice, discover

from .context import get_cli
from .output import table


@click.group("devices", invoke_without_command=True)
@click.pass_context
def devices(ctx: click.Context) -> None:
    """List serial ports and USB devices, known models, and whether you can open them."""
    cli = get_cli(ctx)
    if ctx.invoked_subcommand is not None:
        return
    found = discover()
    cli.emit(found.as_dict(), render(found))


def render(found: Discovery) -> str:
    """Human text: one table per bus, then what to do about access problems."""
    parts = [_section("Serial ports", found.serial, "no serial ports found")]
    usb_empty = found.usb_problem or "no USB devices found"
    parts.append(_section("USB devices", found.usb, usb_empty))
    advice = [f"{d.url}: {d.access.advice}" for d in found.serial + found.usb if d.access.advice]
    if advice:
        parts.append("To get access:\n" + "\n".join(f"  {line}" for line in advice))
    return "\n\n".join(parts)


def _section(title: str, items: list[FoundDevice], empty: str) -> str:
    if not items:
        return f"{title}: {empty}"
    headers = ("URL", "VID:PID", "PRODUCT", "KNOWN MODEL", "ACCESS")
    rows = [
        (
            d.url,
            d.vid_pid or "-",
            d.product or "-",
            f"{d.model.name} [{d.model.kind}]" if d.model else "-",
            _access_text(d),
        )
        for d in items
    ]
    return table(headers, rows, title=title)


def _access_text(device: FoundDevice) -> str:
    if device.access.ok is None:
        return "unknown"
    return "ok" if device.access.ok else "DENIED"


def _add_subcommands() -> None:
    from posedge.agent.diagnostics.dump_cli import dump  # click only at import: cheap

    devices.add_command(dump)  # posedge devices dump (docs/diagnostics.md)


_add_subcommands()


def register(cli: click.Group) -> None:
    cli.add_command(devices)
