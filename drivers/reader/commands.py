"""The message set of the ``framed`` reader protocol, as data.

Every message is printable ASCII: one command letter, then fields. The same
table drives the driver (:mod:`posedge.drivers.cardreader`) and the virtual
reader, and ``docs/reader-protocol.md`` documents it (a test keeps the two in
step). Pure: no I/O. A ``D`` message carries track data: never log it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ProtocolError

ARM_MIN_MS = 1
ARM_MAX_MS = 999_999


class ReaderState(enum.StrEnum):
    IDLE = "I"
    ARMED = "A"
    FAULT = "F"


class ErrorCode(enum.StrEnum):
    UNKNOWN_COMMAND = "U"
    BAD_PARAMETER = "P"
    FAULT = "F"


@dataclass(frozen=True)
class MessageSpec:
    letter: str
    direction: str
    """``host->reader`` or ``reader->host``."""
    fields: str
    meaning: str


# The protocol as a table (also rendered in docs/reader-protocol.md).
MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec("S", "host->reader", "none", "status query; reader replies S<state>"),
    MessageSpec("A", "host->reader", "timeout: 1-6 decimal digits, ms", "arm; reply AK"),
    MessageSpec("C", "host->reader", "none", "cancel an arm; reply CK (also when idle)"),
    MessageSpec("S", "reader->host", "state: I idle, A armed, F fault", "status reply"),
    MessageSpec("AK", "reader->host", "none", "armed"),
    MessageSpec("CK", "reader->host", "none", "cancelled, now idle"),
    MessageSpec("D", "reader->host", "track text %..?;..?+..? (E = unreadable)", "swipe data"),
    MessageSpec("T", "reader->host", "none", "arm timeout expired without a swipe"),
    MessageSpec("X", "reader->host", "code: U unknown, P bad parameter, F fault", "error"),
)

STATUS_QUERY = b"S"
CANCEL = b"C"
ARMED_REPLY = b"AK"
CANCELLED_REPLY = b"CK"
SWIPE_TIMEOUT = b"T"


def arm(timeout_ms: int) -> bytes:
    """``A<ms>``: arm for one swipe, the reader gives up after ``timeout_ms``."""
    if not ARM_MIN_MS <= timeout_ms <= ARM_MAX_MS:
        raise ValueError(f"arm timeout must be {ARM_MIN_MS}..{ARM_MAX_MS} ms, not {timeout_ms}")
    return b"A%d" % timeout_ms


def parse_arm(message: bytes | bytearray) -> int:
    """The timeout of an ``A`` message; ProtocolError when malformed."""
    digits = bytes(message[1:])
    if not 1 <= len(digits) <= 6 or not digits.isdigit():
        raise ProtocolError("arm message needs 1-6 decimal digits of milliseconds")
    value = int(digits)
    if value < ARM_MIN_MS:
        raise ProtocolError("arm timeout must be at least 1 ms")
    return value


def status_reply(state: ReaderState) -> bytes:
    return b"S" + state.value.encode("ascii")


def parse_status_reply(message: bytes | bytearray) -> ReaderState:
    if len(message) != 2 or message[:1] != b"S":
        raise ProtocolError("status reply must be 'S' plus one state letter")
    try:
        return ReaderState(chr(message[1]))
    except ValueError:
        raise ProtocolError("status reply has an unknown state letter") from None


def error_reply(code: ErrorCode) -> bytes:
    return b"X" + code.value.encode("ascii")


def parse_error_reply(message: bytes | bytearray) -> ErrorCode | None:
    """The code of an ``X`` reply, or None when ``message`` is not one."""
    if message[:1] != b"X":
        return None
    if len(message) != 2:
        raise ProtocolError("error reply must be 'X' plus one code letter")
    try:
        return ErrorCode(chr(message[1]))
    except ValueError:
        raise ProtocolError("error reply has an unknown code letter") from None


def swipe_data(tracks_text: bytes | bytearray) -> bytes:
    """``D`` + the track text (the caller wipes its own copy)."""
    return b"D" + bytes(tracks_text)


def is_swipe_data(message: bytes | bytearray) -> bool:
    return message[:1] == b"D"
