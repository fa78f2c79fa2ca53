"""``STX message ETX LRC`` frames with ACK/NAK: encoder and incremental decoder.

Pure protocol code, no I/O and no timing: the device layer
(:mod:`posedge.drivers.reader.framed_link`) and the simulator feed bytes in and
act on the events that come out. The byte layout and the LRC parameters are
documented for vendors in ``docs/reader-protocol.md``.

The message is printable ASCII (0x20..0x7E), so STX, ETX, ACK and NAK never
occur inside it; the LRC byte after ETX may take any value. Bytes between
frames that are not ACK or NAK are line noise and are skipped.

Messages may carry track data: the decoder keeps them in ``bytearray`` buffers
and zero-fills its own buffer when a frame is done. Never log a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProtocolError

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
MAX_MESSAGE_BYTES = 512
PRINTABLE_LOW, PRINTABLE_HIGH = 0x20, 0x7E


@dataclass(frozen=True)
class LrcRule:
    """How the LRC is computed: XOR over the message, plus these choices."""

    include_stx: bool = False
    include_etx: bool = True
    seed: int = 0x00
    """Start value of the XOR: 0x00 or 0x7F in the implementations seen."""

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= 0xFF:
            raise ValueError(f"LRC seed must be a byte value, not {self.seed}")

    def compute(self, message: bytes | bytearray) -> int:
        lrc = self.seed
        if self.include_stx:
            lrc ^= STX
        for byte in message:
            lrc ^= byte
        if self.include_etx:
            lrc ^= ETX
        return lrc


DEFAULT_LRC_RULE = LrcRule()


def check_message(message: bytes | bytearray) -> None:
    """Raise ProtocolError unless ``message`` may be framed."""
    if not message:
        raise ProtocolError("empty frame message; every message starts with a command letter")
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"frame message of {len(message)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if any(not PRINTABLE_LOW <= b <= PRINTABLE_HIGH for b in message):
        raise ProtocolError("frame message must be printable ASCII (0x20..0x7E)")


def encode_frame(message: bytes | bytearray, rule: LrcRule = DEFAULT_LRC_RULE) -> bytes:
    """``STX message ETX LRC``."""
    check_message(message)
    return bytes([STX]) + bytes(message) + bytes([ETX, rule.compute(message)])


# ---- decoder events ----------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    """The peer accepted our last frame."""


@dataclass(frozen=True)
class Nak:
    """The peer rejected our last frame; repeat it."""


@dataclass(frozen=True)
class Frame:
    """A frame with a good LRC; answer ACK. ``message`` may hold card data."""

    message: bytearray = field(repr=False)

    def wipe(self) -> None:
        self.message[:] = bytes(len(self.message))

    def __repr__(self) -> str:
        kind = chr(self.message[0]) if self.message else "?"
        return f"Frame(kind={kind!r}, {len(self.message)} bytes)"


@dataclass(frozen=True)
class BadFrame:
    """A frame that failed (LRC, bad byte, too long); answer NAK. No content is kept."""

    reason: str


FrameEvent = Ack | Nak | Frame | BadFrame


class FrameDecoder:
    """Feed bytes, get :data:`FrameEvent` values; frames may be split across feeds."""

    def __init__(self, rule: LrcRule = DEFAULT_LRC_RULE) -> None:
        self.rule = rule
        self._buf = bytearray()
        self._state = "idle"  # idle | message | lrc
        self._problem: str | None = None
        self.noise_bytes = 0
        """Bytes skipped between frames (diagnostics)."""

    @property
    def in_frame(self) -> bool:
        """True between STX and LRC: an inter-byte timeout applies."""
        return self._state != "idle"

    def reset(self) -> None:
        """Drop a partial frame (inter-byte timeout) and wipe its bytes."""
        self._buf[:] = bytes(len(self._buf))
        self._buf = bytearray()
        self._state = "idle"
        self._problem = None

    def feed(self, data: bytes | bytearray) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        for byte in data:
            event = self._step(byte)
            if event is not None:
                events.append(event)
        return events

    def _step(self, byte: int) -> FrameEvent | None:
        if self._state == "idle":
            return self._idle(byte)
        if self._state == "lrc":
            return self._finish(byte)
        if byte == STX:  # a new frame starts: the partial one was noise
            self.noise_bytes += len(self._buf) + 1
            self.reset()
            self._state = "message"
        elif byte == ETX:
            self._state = "lrc"
        elif not PRINTABLE_LOW <= byte <= PRINTABLE_HIGH:
            self._problem = self._problem or "control byte inside the message"
        elif len(self._buf) >= MAX_MESSAGE_BYTES:
            self._problem = self._problem or f"message longer than {MAX_MESSAGE_BYTES} bytes"
        else:
            self._buf.append(byte)
        return None

    def _idle(self, byte: int) -> FrameEvent | None:
        if byte == STX:
            self._state = "message"
        elif byte == ACK:
            return Ack()
        elif byte == NAK:
            return Nak()
        else:
            self.noise_bytes += 1
        return None

    def _finish(self, lrc: int) -> FrameEvent:
        problem = self._problem
        if problem is None and not self._buf:
            problem = "empty message"
        if problem is None and self.rule.compute(self._buf) != lrc:
            problem = "LRC mismatch"
        if problem is not None:
            self.reset()
            return BadFrame(problem)
        frame = Frame(bytearray(self._buf))
        self.reset()
        return frame


def decode_frames(data: bytes, rule: LrcRule = DEFAULT_LRC_RULE) -> list[bytes]:
    """Decode complete, good frames from ``data``; raise ProtocolError on a bad one.

    For tests and tools. Devices use :class:`FrameDecoder` and answer NAK instead.
    """
    out: list[bytes] = []
    for event in FrameDecoder(rule).feed(data):
        if isinstance(event, BadFrame):
            raise ProtocolError(f"bad frame: {event.reason}")
        if isinstance(event, Frame):
            out.append(bytes(event.message))
    return out
