"""Printer status bytes: decode (driver side) and encode (simulator side).

* Real-time status ``DLE EOT n`` (n=1..4): one byte each, fixed bits
  ``0xx1xx10``. A byte that breaks the pattern raises
  :class:`~posedge.drivers.errors.ProtocolError` — it is never read as
  "online".
* ``GS r 1`` (paper sensor, in buffer order): pattern ``0xx0xxxx``.
* Automatic Status Back (``GS a``): 4 bytes, first ``0xx1xx00``, rest
  ``0xx0xxxx``.
* :func:`classify_reply` tells the kinds apart (plus XON/XOFF).

The simulator encodes its state with the ``encode_*`` functions here, so both
sides of the wire share one definition of every bit. Pure: never does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ProtocolError

XON = 0x11
XOFF = 0x13

_RT_MASK, _RT_FIXED = 0x93, 0x12  # 0xx1xx10
_ASB1_MASK, _ASB1_FIXED = 0x93, 0x10  # 0xx1xx00
_TX_MASK, _TX_FIXED = 0x90, 0x00  # 0xx0xxxx


class ReplyKind(enum.Enum):
    REALTIME = "DLE EOT reply (0xx1xx10)"
    ASB_FIRST = "first byte of an Automatic Status Back message (0xx1xx00)"
    TRANSMIT = "GS r reply or ASB byte 2..4 (0xx0xxxx)"
    XON = "XON flow control (0x11)"
    XOFF = "XOFF flow control (0x13)"
    INVALID = "no ESC/POS reply looks like this"


def classify_reply(byte: int) -> ReplyKind:
    """What kind of printer→host byte ``byte`` can be."""
    if byte == XON:
        return ReplyKind.XON
    if byte == XOFF:
        return ReplyKind.XOFF
    if byte & _RT_MASK == _RT_FIXED:
        return ReplyKind.REALTIME
    if byte & _ASB1_MASK == _ASB1_FIXED:
        return ReplyKind.ASB_FIRST
    if byte & _TX_MASK == _TX_FIXED:
        return ReplyKind.TRANSMIT
    return ReplyKind.INVALID


# Fault names in the order a technician should fix them (most specific first).
_FAULT_FIELDS = (
    "cover_open",
    "paper_end",
    "cutter_error",
    "unrecoverable_error",
    "auto_recoverable_error",
    "recoverable_error",
)


@dataclass(frozen=True)
class PrinterStatus:
    """A printer's state from the four real-time status bytes (or an ASB message)."""

    online: bool = True
    cover_open: bool = False
    paper_near_end: bool = False
    paper_end: bool = False
    cutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False
    recoverable_error: bool = False
    drawer_open: bool = False
    """Drawer kick connector pin 3 is high (open on most drawers; depends on the drawer)."""
    waiting_online_recovery: bool = False
    feed_button: bool = False
    """The feed button is pushed (n=1 bit 6)."""
    paper_feeding: bool = False
    """Paper is being fed by the feed button (n=2 bit 3)."""
    paper_stopped: bool = False
    """Printing stopped because of paper end (n=2 bit 5)."""
    error: bool = False
    """The printer reports an error occurred (n=2 bit 6); the cause is in the n=3 fields."""

    @property
    def faults(self) -> list[str]:
        """Names of what stops printing, most specific first; ``[]`` when ready."""
        found = [name for name in _FAULT_FIELDS if getattr(self, name)]
        if self.paper_stopped and "paper_end" not in found:
            found.insert(1 if self.cover_open else 0, "paper_end")
        if self.error and not any(n.endswith("error") for n in found):
            found.append("error")
        if not self.online and not found:
            found.append("offline")
        return found

    @property
    def warnings(self) -> list[str]:
        """Conditions that do not stop printing yet (UnifiedPOS: status events)."""
        return ["paper_near_end"] if self.paper_near_end and not self.paper_end else []

    @property
    def ready(self) -> bool:
        return self.online and not self.faults

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["ready"] = self.ready
        out["faults"] = self.faults
        out["warnings"] = self.warnings
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PrinterStatus:
        """Inverse of :meth:`as_dict` (derived keys ignored; unknown keys rejected)."""
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names - {"ready", "faults", "warnings"}
        if unknown:
            raise ValueError(f"unknown printer status field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: bool(v) for k, v in raw.items() if k in names})


def _bit(byte: int, n: int) -> bool:
    return bool(byte >> n & 1)


def check_realtime_byte(n: int, byte: int, url: str | None = None) -> int:
    """``byte`` if it is a valid ``DLE EOT n`` reply, else raise ProtocolError."""
    if not 0 <= byte <= 0xFF or byte & _RT_MASK != _RT_FIXED:
        raise ProtocolError(
            f"DLE EOT {n} reply 0x{byte & 0xFF:02x} does not match 0xx1xx10; "
            "the line is noisy or this is not an ESC/POS printer (check baud rate)",
            url=url,
        )
    return byte


def decode_realtime(replies: Sequence[int], url: str | None = None) -> PrinterStatus:
    """Combine the replies to ``DLE EOT 1``..``4`` (in that order) into a status."""
    if len(replies) != 4:
        raise ProtocolError(f"need 4 DLE EOT replies, got {len(replies)}", url=url)
    b1, b2, b3, b4 = (check_realtime_byte(i + 1, b, url) for i, b in enumerate(replies))
    return PrinterStatus(
        online=not _bit(b1, 3),
        drawer_open=_bit(b1, 2),
        waiting_online_recovery=_bit(b1, 5),
        feed_button=_bit(b1, 6),
        paper_feeding=_bit(b2, 3),
        cover_open=_bit(b2, 2),
        paper_stopped=_bit(b2, 5),
        error=_bit(b2, 6),
        recoverable_error=_bit(b3, 2),
        cutter_error=_bit(b3, 3),
        unrecoverable_error=_bit(b3, 5),
        auto_recoverable_error=_bit(b3, 6),
        paper_near_end=bool(b4 & 0x0C),
        paper_end=bool(b4 & 0x60),
    )


def _bits(*pairs: tuple[bool, int]) -> int:
    return sum(1 << bit for flag, bit in pairs if flag)


def _any_error(s: PrinterStatus) -> bool:
    return (
        s.error
        or s.cutter_error
        or s.unrecoverable_error
        or s.auto_recoverable_error
        or (s.recoverable_error)
    )


def encode_realtime(status: PrinterStatus, n: int) -> int:
    """The byte a printer in ``status`` answers to ``DLE EOT n``."""
    if n == 1:
        return _RT_FIXED | _bits(
            (status.drawer_open, 2),
            (not status.online, 3),
            (status.waiting_online_recovery, 5),
            (status.feed_button, 6),
        )
    if n == 2:
        return _RT_FIXED | _bits(
            (status.cover_open, 2),
            (status.paper_feeding, 3),
            (status.paper_stopped, 5),
            (_any_error(status), 6),
        )
    if n == 3:
        return _RT_FIXED | _bits(
            (status.recoverable_error, 2),
            (status.cutter_error, 3),
            (status.unrecoverable_error, 5),
            (status.auto_recoverable_error, 6),
        )
    if n == 4:
        return (
            _RT_FIXED | (0x0C if status.paper_near_end else 0) | (0x60 if status.paper_end else 0)
        )
    raise ValueError(f"DLE EOT n must be 1..4, got {n}")


@dataclass(frozen=True)
class PaperSensor:
    """The ``GS r 1`` reply."""

    near_end: bool
    end: bool


def decode_paper_sensor(byte: int, url: str | None = None) -> PaperSensor:
    if not 0 <= byte <= 0xFF or byte & _TX_MASK != _TX_FIXED:
        raise ProtocolError(f"GS r 1 reply 0x{byte & 0xFF:02x} does not match 0xx0xxxx", url=url)
    return PaperSensor(near_end=bool(byte & 0x03), end=bool(byte & 0x0C))


def encode_paper_sensor(status: PrinterStatus) -> int:
    return (0x03 if status.paper_near_end else 0) | (0x0C if status.paper_end else 0)


def encode_drawer_sensor(status: PrinterStatus) -> int:
    """The ``GS r 2`` reply: bit 0 is drawer connector pin 3."""
    return 0x01 if status.drawer_open else 0x00


ASB_LENGTH = 4


def decode_asb(data: bytes, url: str | None = None) -> PrinterStatus:
    """Decode a 4-byte Automatic Status Back message, fixed bits checked."""
    if len(data) != ASB_LENGTH:
        raise ProtocolError(f"ASB message must be 4 bytes, got {len(data)}", url=url)
    b1, b2, b3, b4 = data
    if b1 & _ASB1_MASK != _ASB1_FIXED or any(b & _TX_MASK != _TX_FIXED for b in (b2, b3, b4)):
        raise ProtocolError(
            f"ASB message {data.hex(' ')} does not match 0xx1xx00 0xx0xxxx x3", url=url
        )
    return PrinterStatus(
        online=not _bit(b1, 3),
        drawer_open=_bit(b1, 2),
        cover_open=_bit(b1, 5),
        feed_button=_bit(b1, 6),
        waiting_online_recovery=_bit(b2, 0),
        recoverable_error=_bit(b2, 2),
        cutter_error=_bit(b2, 3),
        unrecoverable_error=_bit(b2, 5),
        auto_recoverable_error=_bit(b2, 6),
        paper_near_end=bool(b3 & 0x03),
        paper_end=bool(b3 & 0x0C),
    )


def encode_asb(status: PrinterStatus) -> bytes:
    """The ASB message a printer in ``status`` sends."""
    b1 = _ASB1_FIXED | _bits(
        (status.drawer_open, 2),
        (not status.online, 3),
        (status.cover_open, 5),
        (status.feed_button, 6),
    )
    b2 = _bits(
        (status.waiting_online_recovery, 0),
        (status.recoverable_error, 2),
        (status.cutter_error, 3),
        (status.unrecoverable_error, 5),
        (status.auto_recoverable_error, 6),
    )
    return bytes((b1, b2, encode_paper_sensor(status), 0x00))
