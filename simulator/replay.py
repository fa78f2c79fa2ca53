"""Replay a device dump (docs/diagnostics.md): simulated devices in the dumped state.

``posedge simulate devices --scenario devices-….json`` builds, from a dump a terminal
wrote in the field (SIGUSR1 or ``posedge devices dump``):

* a :class:`ReplayedPrinter` reporting the dumped real-time status (cover open, paper
  near end, cutter error, …) — the conditions are derived so that the driver decodes
  the very same status — and carrying the dumped identity;
* a :class:`ReplayedReader` speaking the dumped protocol, with the dumped identity;
* a device the dump could not reach is unreachable here too (an unplugged one is
  unplugged, a silent one does not answer);
* with an explicit ``--state-dir``, the dumped statistics counters seeded into that
  state directory's ``devices/*.stats.json`` (the agent's counters live there, not in
  the device), so an agent run against the simulator reports them too.

What cannot be replayed is said, never silently dropped (:attr:`Replay.notes`): a reader
state other than idle (the simulated reader starts idle), ``HoursOnlineCount`` (time
the lab device is online), identity over a pty or TCP link (only ``sim://`` carries it).

Test and lab only: this module never touches real hardware.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from posedge.agent.diagnostics.dump import (
    DeviceDump,
    DumpedDevice,
    DumpFormatError,
    parse_dump,
)
from posedge.drivers.statistics import DeviceStatistics

from .core import VirtualDevice
from .printer import VirtualPrinter
from .reader import SimProtocol, VirtualReader

MAX_DUMP_BYTES = 4 << 20
UNPLUGGED_ERRORS = ("DeviceUnplugged", "DevicePermissionDenied", "DeviceBusy", "UnsupportedURL")
"""Errors that mean the device could not be opened: replayed as an unplugged device."""
NOT_SEEDED = ("HoursOnlineCount",)


class ReplayError(ValueError):
    """A dump file that cannot be replayed; the message says where and what."""


class ReplayedPrinter(VirtualPrinter):
    """A virtual printer carrying a field device's identity (``sim://`` reports it)."""

    def __init__(self, identity: Mapping[str, str | None] | None = None) -> None:
        super().__init__()
        self.identity: dict[str, str | None] = dict(identity or {})


class ReplayedReader(VirtualReader):
    """A virtual card reader carrying a field device's identity."""

    def __init__(
        self, protocol: SimProtocol = "magtek", identity: Mapping[str, str | None] | None = None
    ) -> None:
        super().__init__(protocol)
        self.identity: dict[str, str | None] = dict(identity or {})


@dataclass
class Replay:
    """The devices rebuilt from a dump, and what could not be reproduced."""

    dump: DeviceDump
    devices: dict[str, VirtualDevice]
    notes: list[str] = field(default_factory=list)

    def seed_statistics(self, state_dir: Path) -> list[Path]:
        """Write the dumped counters as the agent's statistics files in ``state_dir``."""
        written = []
        for kind, entry in self.dump.devices.items():
            counters = {k: v for k, v in entry.statistics.items() if k not in NOT_SEEDED}
            if not counters:
                continue
            stats = DeviceStatistics(state_dir, kind)
            if stats.path is not None and os.path.lexists(stats.path):
                os.unlink(stats.path)  # replace, never add to, what the lab had
                stats = DeviceStatistics(state_dir, kind)
            for name, value in counters.items():
                stats.increment(name, int(value))
            stats.save(force=True)
            if stats.path is not None:
                written.append(stats.path)
        return written


def is_device_dump(path: Path) -> bool:
    """True when ``path`` holds JSON (a dump), False for anything else (a TOML scenario)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.lstrip()[:1] == b"{"


def load_dump_file(path: Path) -> DeviceDump:
    """Read and validate a dump file; ReplayError names the file and the place in it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DUMP_BYTES + 1)
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read the dump: {exc.strerror}") from None
    if len(data) > MAX_DUMP_BYTES:
        raise ReplayError(f"{path}: larger than {MAX_DUMP_BYTES} bytes; not a device dump")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ReplayError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ReplayError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    try:
        return parse_dump(doc, source=str(path))
    except DumpFormatError as exc:
        raise ReplayError(str(exc)) from None


def replay(dump: DeviceDump) -> Replay:
    """Simulated printer and reader in the state ``dump`` recorded."""
    notes: list[str] = []
    devices: dict[str, VirtualDevice] = {
        "printer": _printer(dump.devices.get("printer"), notes),
        "reader": _reader(dump.devices.get("reader"), notes),
    }
    return Replay(dump=dump, devices=devices, notes=notes)


def _printer(entry: DumpedDevice | None, notes: list[str]) -> VirtualPrinter:
    if entry is None or not entry.configured:
        notes.append("printer: not configured in the dump; a healthy printer is simulated")
        return ReplayedPrinter()
    printer = ReplayedPrinter(entry.identity)
    if entry.status is not None:
        printer.load_state({"status": entry.status})
    _unreachable(printer, entry, notes)
    return printer


def _reader(entry: DumpedDevice | None, notes: list[str]) -> VirtualReader:
    if entry is None or not entry.configured:
        notes.append("reader: not configured in the dump; an idle magtek reader is simulated")
        return ReplayedReader()
    status = entry.status or {}
    protocol: SimProtocol = "framed" if status.get("protocol") == "framed" else "magtek"
    reader = ReplayedReader(protocol, entry.identity)
    state = status.get("state")
    if state in ("armed", "fault", "busy"):
        notes.append(f"reader: the dumped state {state!r} is not replayed; it starts idle")
    if status.get("online") is False:
        reader.unplug()
    _unreachable(reader, entry, notes)
    return reader


def _unreachable(device: VirtualDevice, entry: DumpedDevice, notes: list[str]) -> None:
    if entry.reachable is not False or not device.plugged:
        return
    last = entry.errors[-1]["error"] if entry.errors else ""
    if last in UNPLUGGED_ERRORS or (entry.status is None and last == "Offline"):
        device.unplug()
        notes.append(f"{entry.kind}: unreachable in the dump ({last}): unplugged")
    else:
        device.apply_fault("no_response")
        notes.append(f"{entry.kind}: unreachable in the dump ({last or 'no answer'}): silent")
