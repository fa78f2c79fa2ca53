"""The host end of the ``framed`` reader protocol over a transport: ACK/NAK and timeouts.

:class:`FramedLink` sends a message and waits for ACK, repeating the frame up
to ``max_retransmissions`` times on NAK or ACK timeout; it ACKs every good
frame it receives and NAKs a bad one (LRC, stray control byte, or a frame cut
off by the inter-byte timeout). It knows nothing of what messages mean: that
is :mod:`posedge.drivers.cardreader`. Timing rules are in
``docs/reader-protocol.md``.

Frames may carry track data: they are handed over as :class:`Frame` objects
whose buffers the caller wipes. Never log a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import DeviceTimeout, ProtocolError
from ..transport.base import Transport
from .framing import (
    ACK,
    DEFAULT_LRC_RULE,
    NAK,
    Ack,
    BadFrame,
    Frame,
    FrameDecoder,
    LrcRule,
    Nak,
    encode_frame,
)

INTER_BYTE_TIMEOUT_S = 0.5
ACK_TIMEOUT_S = 1.0
RESPONSE_TIMEOUT_S = 5.0
MAX_RETRANSMISSIONS = 3
POLL_SLICE_S = 0.05
"""Longest single blocking read, so a cancel request is noticed quickly."""
READ_CHUNK_BYTES = 256


class Cancelled(Exception):
    """Internal: the caller's cancel event was set while waiting."""


class FramedLink:
    """ACK/NAK framing over one transport. Not thread-safe: the device serialises calls."""

    def __init__(
        self,
        transport: Transport,
        *,
        rule: LrcRule = DEFAULT_LRC_RULE,
        inter_byte_timeout_s: float = INTER_BYTE_TIMEOUT_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        max_retransmissions: int = MAX_RETRANSMISSIONS,
        on_comm_error: Callable[[str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.decoder = FrameDecoder(rule)
        self.rule = rule
        self.inter_byte_timeout_s = inter_byte_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.max_retransmissions = max_retransmissions
        self._on_comm_error = on_comm_error or (lambda _reason: None)
        self._inbox: list[Frame] = []
        self._last_byte_at = time.monotonic()
        self._bad_in_a_row = 0

    # ---- housekeeping --------------------------------------------------------
    def discard_input(self) -> None:
        """Forget stale input: transport buffer, partial frame, unread frames (wiped)."""
        self.transport.flush_input()
        self.decoder.reset()
        for frame in self._inbox:
            frame.wipe()
        self._inbox.clear()

    # ---- sending ---------------------------------------------------------------
    def send(self, message: bytes, cancel: threading.Event | None = None) -> None:
        """Send ``message`` until ACKed; raise after ``1 + max_retransmissions`` tries.

        All NAKs → ProtocolError; no answer at all → DeviceTimeout.
        """
        frame = encode_frame(message, self.rule)
        naks = 0
        tries = 1 + self.max_retransmissions
        for _attempt in range(tries):
            self.transport.write(frame)
            answer = self._await_ack(time.monotonic() + self.ack_timeout_s, cancel)
            if answer == "ack":
                return
            naks += answer == "nak"
            self._on_comm_error("NAK from reader" if answer == "nak" else "ACK timeout")
        what = f"'{chr(message[0])}' frame"
        if naks:
            raise ProtocolError(
                f"reader rejected the {what} {naks} of {tries} times (NAK); check the "
                "LRC settings (seed, STX/ETX inclusion) on both sides and the cable",
                url=self.transport.url,
            )
        raise DeviceTimeout(
            f"reader did not acknowledge the {what} within {self.ack_timeout_s:.3g}s, "
            f"{tries} tries; check power, cable and reader.protocol",
            url=self.transport.url,
        )

    def _await_ack(self, deadline: float, cancel: threading.Event | None) -> str:
        while True:
            for event in self._poll(deadline, cancel):
                if isinstance(event, Ack):
                    return "ack"
                if isinstance(event, Nak):
                    return "nak"
            if time.monotonic() >= deadline:
                return "timeout"

    # ---- receiving -------------------------------------------------------------
    def receive(self, timeout_s: float, cancel: threading.Event | None = None) -> Frame | None:
        """The next good frame (already ACKed), or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._inbox:
            self._poll(deadline, cancel)
            if not self._inbox and time.monotonic() >= deadline:
                return None
        return self._inbox.pop(0)

    def _poll(self, deadline: float, cancel: threading.Event | None) -> list[Ack | Nak]:
        """Read once (bounded wait); handle frames; return ACK/NAK events seen."""
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        now = time.monotonic()
        wait = max(0.0, min(deadline - now, POLL_SLICE_S))
        if self.decoder.in_frame:
            wait = min(wait, max(0.0, self._last_byte_at + self.inter_byte_timeout_s - now))
        data = self.transport.read(READ_CHUNK_BYTES, wait)
        now = time.monotonic()
        if not data:
            if self.decoder.in_frame and now - self._last_byte_at >= self.inter_byte_timeout_s:
                self.decoder.reset()
                self._reject("inter-byte timeout inside a frame")
            return []
        self._last_byte_at = now
        answers: list[Ack | Nak] = []
        for event in self.decoder.feed(data):
            if isinstance(event, Frame):
                self._bad_in_a_row = 0
                self.transport.write(bytes([ACK]))
                self._inbox.append(event)
            elif isinstance(event, BadFrame):
                self._reject(event.reason)
            else:
                answers.append(event)
        return answers

    def _reject(self, reason: str) -> None:
        self.transport.write(bytes([NAK]))
        self._on_comm_error(reason)
        self._bad_in_a_row += 1
        if self._bad_in_a_row > self.max_retransmissions:
            self._bad_in_a_row = 0
            raise ProtocolError(
                f"{self.max_retransmissions + 1} bad frames in a row from the reader "
                f"(last: {reason}); check the LRC settings (seed, STX/ETX inclusion) and the cable",
                url=self.transport.url,
            )
