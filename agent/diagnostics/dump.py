"""The device dump: one versioned JSON document about the printer and the card reader.

Collected from *open* device objects (the daemon's own, or ones ``posedge devices dump``
opened), through the drivers' APIs only: :meth:`ReceiptPrinter.status` (``DLE EOT 1..4``
decoded), :meth:`CardReader.status`, the UnifiedPOS statistics counters, and what the
URL tells of the device's identity (:mod:`.identity`). Recent errors come from the query
made for this dump and from the journal's ``device.status`` events. The format is in
docs/diagnostics.md; :func:`parse_dump` reads it back strictly (the simulator replays a
dump with it).

Never card data: nothing here reads a card, the reader's status is its state only, and
:func:`check_no_card_data` refuses a document the card-data guard objects to. URLs lose
any user name, password and secret-looking query parameter. No pyserial or pyusb
exception leaves this module: the drivers map them to :class:`DeviceError`, which
becomes an ``errors`` entry, never an exception.
"""

from __future__ import annotations

import math
import os
import platform
import re
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from posedge.drivers.cardreader import CardReader
from posedge.drivers.errors import DeviceError
from posedge.drivers.escpos.status import PrinterStatus
from posedge.drivers.printer import ReceiptPrinter

from ..carddata import find_card_data
from ..errors import PosedgeError
from ..journal import Journal
from .identity import IDENTITY_KEYS, device_identity, empty_identity

DUMP_FORMAT = "posedge.device-dump"
DUMP_VERSION = 1
DEVICE_KINDS = ("printer", "reader")
REASONS = ("signal", "api", "command")
READER_STATES = ("idle", "armed", "fault", "unknown", "busy")
READER_PROTOCOLS = ("magtek", "framed")
MAX_ERRORS = 20
"""Recent errors kept per device (newest last)."""
JOURNAL_SCAN_EVENTS = 5000
"""How far back in the journal recent device errors are looked for."""
_SECRET_QUERY_KEYS = ("pass", "pwd", "secret", "token", "key", "auth", "cred")
_TOP_KEYS = ("format", "version", "created_at", "reason", "host", "agent", "devices")
_DEVICE_KEYS = ("kind", "configured", "url", "reachable", "identity", "status", "statistics",
                "errors")  # fmt: skip
_ERROR_KEYS = ("at", "source", "error", "message")
_OK_STATES = ("ok", "configured", "not_configured")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_SECRET_PARAM = re.compile(
    r"(?P<key>\b\w*(?:" + "|".join(_SECRET_QUERY_KEYS) + r")\w*=)[^&\s):;,]+", re.IGNORECASE
)


class DumpError(PosedgeError):
    """A dump that cannot be made or written (internal: exit 1 unless a subclass says)."""


class DumpFormatError(ValueError):
    """A document that is not a valid device dump; the message says where and what."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---- URLs ----------------------------------------------------------------------
def redact_url(url: str | None) -> str | None:
    """``url`` without user name, password and secret-looking query parameters."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme:  # a device path: nothing to hide
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = [
        (k, v if not any(s in k.lower() for s in _SECRET_QUERY_KEYS) else "REDACTED")
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe=",:"), "")
    )


def scrub_text(text: str) -> str:
    """``text`` (an error message) with URL user names, passwords and secret parameters
    removed: pyserial puts the whole URL in its messages."""
    return _SECRET_PARAM.sub(r"\g<key>REDACTED", _USERINFO.sub(r"\g<scheme>", text))


# ---- one device ------------------------------------------------------------------
def error_entry(
    exc: BaseException, *, source: str = "query", at: str | None = None
) -> dict[str, Any]:
    """An ``errors`` item for a driver error (its message never holds card data)."""
    message = exc.message if isinstance(exc, DeviceError) else str(exc)
    return {
        "at": at or now_iso(),
        "source": source,
        "error": type(exc).__name__,
        "message": scrub_text(message)[:300],
    }


def not_configured(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "configured": False,
        "url": None,
        "reachable": None,
        "identity": empty_identity(),
        "status": None,
        "statistics": {},
        "errors": [],
    }


def unreachable(
    kind: str, url: str, exc: BaseException, statistics: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The entry of a configured device that could not even be opened."""
    entry = not_configured(kind)
    entry.update(
        configured=True,
        url=redact_url(url),
        reachable=False,
        identity=device_identity(url),
        statistics=dict(statistics or {}),
        errors=[error_entry(exc, source="open")],
    )
    return entry


def probe_printer(printer: ReceiptPrinter, url: str | None = None) -> dict[str, Any]:
    """Identity, real-time status and statistics of an open printer (status queries only).

    The statistics are read *before* the status query, so the query itself (a cover
    open it is the first to see, a timeout) never shows in them; it shows in ``status``
    and ``errors``."""
    target = url or printer.url
    statistics = printer.stats.snapshot()
    entry = not_configured("printer")
    entry.update(configured=True, url=redact_url(target), identity=device_identity(target),
                 statistics=statistics)  # fmt: skip
    try:
        entry["status"] = printer.status().as_dict()
        entry["reachable"] = True
    except DeviceError as exc:
        entry["reachable"] = False
        entry["errors"] = [error_entry(exc)]
    return entry


def probe_reader(
    reader: CardReader, url: str | None = None, *, busy: bool = False
) -> dict[str, Any]:
    """Identity, state and statistics of an open card reader; ``busy``: a sale is reading a
    card, so the reader is not queried (its state is reported as ``busy``)."""
    target = url or reader.url
    statistics = reader.statistics.snapshot()
    entry = not_configured("reader")
    entry.update(configured=True, url=redact_url(target), identity=device_identity(target),
                 statistics=statistics)  # fmt: skip
    if busy:
        entry["status"] = {"online": True, "state": "busy", "protocol": reader.protocol}
        entry["reachable"] = True
        return entry
    try:
        status = reader.status()
    except DeviceError as exc:
        entry["reachable"] = False
        entry["errors"] = [error_entry(exc)]
        return entry
    entry["status"] = dict(status.as_dict())
    # magtek has no status query: "online" is the link; a closed link is unreachable.
    entry["reachable"] = bool(status.online)
    if not status.online:
        entry["errors"] = [
            {"at": now_iso(), "source": "query", "error": "Offline",
             "message": "the reader's link is down (unplugged or not answering)"}
        ]  # fmt: skip
    return entry


# ---- recent errors from the journal ---------------------------------------------------
def journal_device_errors(
    journal: Journal, *, scan: int = JOURNAL_SCAN_EVENTS, limit: int = MAX_ERRORS
) -> dict[str, list[dict[str, Any]]]:
    """The last ``limit`` non-ok device states per device among the journal's last ``scan``
    events (``device.status``, journaled by the daemon on every change)."""
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in DEVICE_KINDS}
    head = journal.head().seq
    for event in journal.iter_events(since=max(0, head - scan)):
        if event.type != "device.status" or not isinstance(event.payload, dict):
            continue
        for kind in DEVICE_KINDS:
            state = event.payload.get(kind)
            if not isinstance(state, dict) or state.get("state") in _OK_STATES:
                continue
            what = ", ".join(str(f) for f in state.get("faults") or []) or str(
                state.get("error") or state.get("state")
            )
            found[kind].append(
                {"at": event.ts, "source": "journal", "error": str(state.get("state")),
                 "message": scrub_text(f"{kind} {state.get('state')}: {what}")[:300]}
            )  # fmt: skip
    return {kind: items[-limit:] for kind, items in found.items()}


# ---- the document ---------------------------------------------------------------------
def build_dump(
    devices: Mapping[str, dict[str, Any]],
    *,
    reason: str,
    source: str,
    version: str,
    uptime_s: float | None = None,
    journal_errors: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The dump document; ``devices`` maps each of :data:`DEVICE_KINDS` to its entry
    (missing ones are reported not configured)."""
    out_devices: dict[str, Any] = {}
    for kind in DEVICE_KINDS:
        entry = dict(devices.get(kind) or not_configured(kind))
        earlier = list((journal_errors or {}).get(kind, []))
        entry["errors"] = (earlier + list(entry.get("errors", [])))[-MAX_ERRORS:]
        out_devices[kind] = entry
    doc = {
        "format": DUMP_FORMAT,
        "version": DUMP_VERSION,
        "created_at": now_iso(),
        "reason": reason,
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "agent": {
            "version": version,
            "pid": os.getpid(),
            "source": source,
            "uptime_s": None if uptime_s is None else round(uptime_s, 3),
        },
        "devices": out_devices,
    }
    check_no_card_data(doc)
    return doc


def check_no_card_data(doc: Any) -> None:
    """Refuse (DumpError, paths only, never the values) a document holding card data."""
    findings = find_card_data(doc)
    if findings:
        where = ", ".join(f.path for f in findings[:5])
        raise DumpError(f"refusing to write a device dump that holds card data at {where}")


def unreachable_devices(doc: Mapping[str, Any]) -> list[str]:
    """The configured devices the dump could not reach (``posedge devices dump`` exits 3)."""
    return [
        kind
        for kind, entry in doc.get("devices", {}).items()
        if entry.get("configured") and entry.get("reachable") is False
    ]


# ---- reading a dump back ------------------------------------------------------------
@dataclass(frozen=True)
class DumpedDevice:
    kind: str
    configured: bool
    url: str | None
    reachable: bool | None
    identity: dict[str, str | None]
    status: dict[str, Any] | None
    statistics: dict[str, int | float]
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def printer_status(self) -> PrinterStatus | None:
        return PrinterStatus.from_dict(self.status) if self.status is not None else None


@dataclass(frozen=True)
class DeviceDump:
    created_at: str
    reason: str
    host: dict[str, Any]
    agent: dict[str, Any]
    devices: dict[str, DumpedDevice]


def parse_dump(doc: Any, source: str = "dump") -> DeviceDump:
    """Validate a dump document strictly; DumpFormatError names the place (``$.devices…``)."""
    where = f"{source}: $"
    obj = _object(doc, where, _TOP_KEYS, required=_TOP_KEYS)
    if obj["format"] != DUMP_FORMAT:
        raise DumpFormatError(f"{where}.format: expected {DUMP_FORMAT!r}, got {obj['format']!r}")
    version = obj["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise DumpFormatError(f"{where}.version: must be an integer, got {version!r}")
    if version != DUMP_VERSION:
        newer = " (written by a newer posedge: upgrade this one)" if version > DUMP_VERSION else ""
        raise DumpFormatError(
            f"{where}.version: {version} is not supported; this posedge reads version "
            f"{DUMP_VERSION}{newer}"
        )
    _string(obj["created_at"], f"{where}.created_at")
    if obj["reason"] not in REASONS:
        raise DumpFormatError(f"{where}.reason: must be one of {', '.join(REASONS)}, "
                              f"got {obj['reason']!r}")  # fmt: skip
    host = _object(obj["host"], f"{where}.host", None)
    agent = _object(obj["agent"], f"{where}.agent", None)
    devices = _object(obj["devices"], f"{where}.devices", DEVICE_KINDS)
    parsed = {
        kind: _parse_device(kind, entry, f"{where}.devices.{kind}")
        for kind, entry in devices.items()
    }
    return DeviceDump(obj["created_at"], obj["reason"], dict(host), dict(agent), parsed)


def _parse_device(kind: str, raw: Any, where: str) -> DumpedDevice:
    entry = _object(raw, where, _DEVICE_KEYS, required=("kind", "configured", "status"))
    if entry["kind"] != kind:
        raise DumpFormatError(f"{where}.kind: must be {kind!r} (its key), got {entry['kind']!r}")
    configured = _bool(entry["configured"], f"{where}.configured")
    url = entry.get("url")
    if url is not None:
        _string(url, f"{where}.url")
    reachable = entry.get("reachable")
    if reachable is not None:
        _bool(reachable, f"{where}.reachable")
    identity_raw = _object(
        entry.get("identity", {}), f"{where}.identity", (*IDENTITY_KEYS, "source")
    )
    identity: dict[str, str | None] = {}
    for key in IDENTITY_KEYS:
        value = identity_raw.get(key)
        identity[key] = None if value is None else _string(value, f"{where}.identity.{key}")
    status = entry["status"]
    if status is not None:
        status = _printer_status(status, f"{where}.status") if kind == "printer" else (
            _reader_status(status, f"{where}.status"))  # fmt: skip
    statistics = _statistics(entry.get("statistics", {}), f"{where}.statistics")
    errors_raw = entry.get("errors", [])
    if not isinstance(errors_raw, list):
        raise DumpFormatError(f"{where}.errors: must be a list, got {type(errors_raw).__name__}")
    errors = [
        dict(_object(item, f"{where}.errors[{i}]", _ERROR_KEYS))
        for i, item in enumerate(errors_raw)
    ]
    return DumpedDevice(kind, configured, url, reachable, identity, status, statistics, errors)


def _printer_status(raw: Any, where: str) -> dict[str, Any]:
    names = {f.name for f in fields(PrinterStatus)}
    obj = _object(raw, where, (*names, "ready", "faults", "warnings"))
    for key in names & set(obj):
        _bool(obj[key], f"{where}.{key}")
    return PrinterStatus.from_dict(dict(obj)).as_dict()


def _reader_status(raw: Any, where: str) -> dict[str, Any]:
    obj = _object(raw, where, ("online", "state", "protocol"), required=("state", "protocol"))
    online = _bool(obj.get("online", True), f"{where}.online")
    if obj["state"] not in READER_STATES:
        raise DumpFormatError(f"{where}.state: must be one of {', '.join(READER_STATES)}, "
                              f"got {obj['state']!r}")  # fmt: skip
    if obj["protocol"] not in READER_PROTOCOLS:
        allowed = ", ".join(READER_PROTOCOLS)
        raise DumpFormatError(
            f"{where}.protocol: must be one of {allowed}, got {obj['protocol']!r}"
        )
    return {"online": online, "state": obj["state"], "protocol": obj["protocol"]}


def _statistics(raw: Any, where: str) -> dict[str, int | float]:
    obj = _object(raw, where, None)
    out: dict[str, int | float] = {}
    for name, value in obj.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or value < 0 or not math.isfinite(value):
            raise DumpFormatError(f"{where}.{name}: a counter must be a number >= 0, got {value!r}")
        if name != "HoursOnlineCount" and not isinstance(value, int):
            raise DumpFormatError(f"{where}.{name}: a counter must be an integer, got {value!r}")
        out[str(name)] = value
    return out


def _object(
    raw: Any,
    where: str,
    allowed: Iterable[str] | None,
    *,
    required: Iterable[str] = (),
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise DumpFormatError(f"{where}: must be an object, got {type(raw).__name__}")
    if allowed is not None:
        allowed = tuple(allowed)
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise DumpFormatError(
                f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}"
            )
    for key in required:
        if key not in raw:
            raise DumpFormatError(f"{where}: missing key {key!r}")
    return raw


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise DumpFormatError(f"{where}: must be true or false, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DumpFormatError(f"{where}: must be a string, got {value!r}")
    return value
