"""The MagTek-style raw swipe stream: ``[STX][ESC]%t1?;t2?+t3?[CR][ETX]``.

Pure protocol code, no I/O. :class:`MagtekStreamParser` is incremental (feed
bytes as they arrive, get one :class:`SensitiveTracks` per swipe), skips line
noise between swipes, and also accepts readers that send no STX/ETX and end a
swipe with CR. A track the reader could not decode arrives as ``%E?``/``;E?``.
Validation of the tracks is :mod:`posedge.drivers.reader.tracks`' job.

Buffers hold track data: they are zero-filled when a swipe is handed out or
dropped. Never log what passes through here.
"""

from __future__ import annotations

from .sensitive import SensitiveTracks
from .tracks import split_tracks

STX = 0x02
ETX = 0x03
ESC = 0x1B
CR = 0x0D
LF = 0x0A
MAX_SWIPE_BYTES = 512
_BARE_STARTS = frozenset(b"%;+")


def encode_swipe(track_text: bytes, *, stx_etx: bool = True, esc: bool = False) -> bytes:
    """What a reader sends for one swipe (simulator and tests)."""
    if not stx_etx:
        return track_text + b"\r"
    return bytes([STX]) + (b"\x1b" if esc else b"") + track_text + b"\r" + bytes([ETX])


class MagtekStreamParser:
    """Incremental, noise-tolerant parser of swipes."""

    def __init__(self, *, track_lrc: bool = False) -> None:
        self.track_lrc = track_lrc
        self._buf = bytearray()
        self._mode = "idle"  # idle | framed (after STX) | bare (after a start sentinel)
        self.noise_bytes = 0
        """Bytes skipped outside swipes, including dropped oversize swipes."""

    @property
    def in_swipe(self) -> bool:
        """True in the middle of a swipe: an inter-byte timeout applies."""
        return self._mode != "idle"

    def reset(self) -> None:
        """Drop a partial swipe and wipe its bytes."""
        self.noise_bytes += len(self._buf)
        self._buf[:] = bytes(len(self._buf))
        self._buf = bytearray()
        self._mode = "idle"

    def feed(self, data: bytes | bytearray) -> list[SensitiveTracks]:
        swipes: list[SensitiveTracks] = []
        for byte in data:
            swipe = self._step(byte)
            if swipe is not None:
                swipes.append(swipe)
        return swipes

    def _step(self, byte: int) -> SensitiveTracks | None:
        if self._mode == "idle":
            if byte == STX:
                self._mode = "framed"
            elif byte in _BARE_STARTS:
                self._mode = "bare"
                self._buf.append(byte)
            else:
                self.noise_bytes += 1
            return None
        if byte == STX:  # restart: the partial swipe was noise
            self.reset()
            self._mode = "framed"
            return None
        if (self._mode == "framed" and byte == ETX) or (self._mode == "bare" and byte == CR):
            return self._complete()
        if len(self._buf) >= MAX_SWIPE_BYTES:
            self.reset()
            return None
        self._buf.append(byte)
        return None

    def _complete(self) -> SensitiveTracks:
        start, end = 0, len(self._buf)
        if end and self._buf[0] == ESC:
            start = 1
        while end > start and self._buf[end - 1] in (CR, LF):
            end -= 1
        body = self._buf[start:end]
        swipe = split_tracks(body, lrc=self.track_lrc)
        body[:] = bytes(len(body))
        self._buf[:] = bytes(len(self._buf))
        self._buf = bytearray()
        self._mode = "idle"
        return swipe
