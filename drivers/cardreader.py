"""The magnetic-stripe card reader device: read a card, cancel, status, health, statistics.

Two wire protocols, chosen by config (``reader.protocol``):

- ``magtek``: the reader pushes ``[STX]%t1?;t2?[CR][ETX]`` whenever a card is
  swiped; there is no command channel, so :meth:`CardReader.status` can only
  report whether the link is up.
- ``framed``: ``STX message ETX LRC`` with ACK/NAK and commands to query
  status, arm for a swipe and cancel (``docs/reader-protocol.md``).

Errors (all :mod:`posedge.drivers.errors`)::

    DeviceTimeout ── SwipeTimeout       armed, but no card was swiped in time
    DeviceError ──── SwipeCancelled     cancel() ended the wait
    TrackDataError ─ CardUnreadable     a swipe came, no track was usable
    ProtocolError                       NAK storm, bad frames, unexpected replies
    DeviceUnplugged                     the transport lost the device

Card data never leaves the :class:`SensitiveTracks` inside the returned
:class:`CardRead`: this module must never log it, count it, or put it in an
error. Statistics use UnifiedPOS MSR counter names and are saved after every read.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from .errors import DeviceError, DeviceNotReady, DeviceTimeout, DeviceUnplugged, ProtocolError
from .health import HealthLevel, HealthResult
from .reader import commands
from .reader.framed_link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    POLL_SLICE_S,
    RESPONSE_TIMEOUT_S,
    Cancelled,
    FramedLink,
)
from .reader.framing import DEFAULT_LRC_RULE, Frame, LrcRule
from .reader.magtek import MagtekStreamParser
from .reader.sensitive import SensitiveTracks
from .reader.tracks import CardRead, CardUnreadable, TrackQuality, decode_card, split_tracks
from .statistics import DeviceStatistics
from .transport.base import Transport

ReaderProtocol = Literal["magtek", "framed"]
DEFAULT_SWIPE_TIMEOUT_S = 30.0
HEALTH_SWIPE_TIMEOUT_S = 20.0

GOOD_READS = "GoodCardReadCount"
FAILED_READS = "FailedReadCount"
UNREADABLE_CARDS = "UnreadableCardCount"
FAILED_PARSES = "FailedDataParseCount"
COMM_ERRORS = "CommunicationErrorCount"
_TRACK_COUNTERS = {
    TrackQuality.NO_START_SENTINEL: "MissingStartSentinelTrack{}Count",
    TrackQuality.BAD_LRC: "ParityLRCErrorTrack{}Count",
}


class SwipeTimeout(DeviceTimeout):
    """The reader was armed but no card was swiped in time; nothing was read."""


class SwipeCancelled(DeviceError):
    """:meth:`CardReader.cancel` ended the wait for a swipe; nothing was read."""


@dataclass(frozen=True)
class ReaderStatus:
    online: bool
    state: str
    """``idle``, ``armed``, ``fault`` (framed) or ``unknown`` (magtek: no status query)."""
    protocol: str

    def as_dict(self) -> dict[str, object]:
        return {"online": self.online, "state": self.state, "protocol": self.protocol}


_STATE_NAMES = {
    commands.ReaderState.IDLE: "idle",
    commands.ReaderState.ARMED: "armed",
    commands.ReaderState.FAULT: "fault",
}


class CardReader:
    """One magnetic-stripe reader over a transport. Thread-safe; one read at a time.

    ``token_key`` keys the PAN token of each read: fixed bytes, or a callable
    asked at every read for the current key (one that is rotated in memory).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        token_key: bytes | Callable[[], bytes],
        protocol: ReaderProtocol = "magtek",
        device_id: str = "reader",
        statistics: DeviceStatistics | None = None,
        lrc_rule: LrcRule = DEFAULT_LRC_RULE,
        track_lrc: bool = False,
        inter_byte_timeout_s: float = INTER_BYTE_TIMEOUT_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        response_timeout_s: float = RESPONSE_TIMEOUT_S,
        today: Callable[[], date] | None = None,
    ) -> None:
        if protocol not in ("magtek", "framed"):
            raise ValueError(f"reader protocol must be 'magtek' or 'framed', not {protocol!r}")
        if isinstance(token_key, bytes) and len(token_key) < 16:
            raise ValueError("token_key must be at least 16 bytes")
        self.transport = transport
        self.protocol: ReaderProtocol = protocol
        self.device_id = device_id
        self.statistics = statistics or DeviceStatistics(None, device_id)
        self.track_lrc = track_lrc
        self.inter_byte_timeout_s = inter_byte_timeout_s
        self.response_timeout_s = response_timeout_s
        self._token_key = token_key
        self._today = today
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._magtek = MagtekStreamParser(track_lrc=track_lrc)
        self._link = FramedLink(
            transport,
            rule=lrc_rule,
            inter_byte_timeout_s=inter_byte_timeout_s,
            ack_timeout_s=ack_timeout_s,
            on_comm_error=self._comm_error,
        )
        self.statistics.mark_online(transport.is_open)

    @property
    def url(self) -> str:
        return self.transport.url

    # ---- public API ------------------------------------------------------------
    def read_card(self, timeout_s: float = DEFAULT_SWIPE_TIMEOUT_S) -> CardRead:
        """Arm, wait up to ``timeout_s`` for a swipe, validate it.

        The caller must wipe the result (``with reader.read_card() as card:``).
        Raises SwipeTimeout, SwipeCancelled, CardUnreadable, ProtocolError,
        DeviceTimeout or DeviceUnplugged.
        """
        if timeout_s <= 0:
            raise ValueError("swipe timeout must be positive")
        with self._lock, self._guard():
            self._cancel.clear()
            if self.protocol == "framed":
                raw = self._framed_swipe(timeout_s)
            else:
                raw = self._magtek_swipe(timeout_s)
            return self._decode(raw)

    def cancel(self) -> None:
        """End a pending :meth:`read_card` (it raises SwipeCancelled); disarm the reader."""
        self._cancel.set()
        if self.protocol == "framed" and self._lock.acquire(blocking=False):
            try:
                with self._guard():
                    self._request(commands.CANCEL, commands.CANCELLED_REPLY)
            finally:
                self._lock.release()

    def status(self) -> ReaderStatus:
        """Query the reader (framed) or report the link state (magtek)."""
        if self.protocol == "magtek":
            return ReaderStatus(self.transport.is_open, "unknown", self.protocol)
        with self._lock, self._guard():
            reply = self._request(commands.STATUS_QUERY, b"S")
            state = commands.parse_status_reply(reply)
        return ReaderStatus(True, _STATE_NAMES[state], self.protocol)

    def check_health(
        self,
        level: HealthLevel | str = HealthLevel.INTERNAL,
        *,
        timeout_s: float = HEALTH_SWIPE_TIMEOUT_S,
        confirm: Callable[[str], bool] | None = None,
    ) -> HealthResult:
        """UnifiedPOS CheckHealth: internal (status), external (swipe), interactive (+confirm)."""
        from .reader.health import check_reader_health

        return check_reader_health(self, HealthLevel(level), timeout_s=timeout_s, confirm=confirm)

    def close(self) -> None:
        self.statistics.mark_online(False)
        self.statistics.save(force=True)
        self.transport.close()

    # ---- framed ------------------------------------------------------------------
    def _request(self, message: bytes, expect: bytes) -> bytearray:
        """Send a command, return the reply that starts with ``expect``."""
        self._link.send(message)
        deadline = time.monotonic() + self.response_timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            frame = self._link.receive(remaining)
            if frame is None:
                break
            reply = frame.message
            code = commands.parse_error_reply(reply)
            if code is not None:
                raise self._error_reply(message, code)
            if reply[:1] == expect[:1] and (len(expect) == 1 or reply == expect):
                return reply
            frame.wipe()  # a late swipe or timeout notice: not what we asked for
        raise DeviceTimeout(
            f"reader sent no reply to '{chr(message[0])}' within "
            f"{self.response_timeout_s:.3g}s; check reader.protocol and the cable",
            url=self.url,
        )

    def _error_reply(self, message: bytes, code: commands.ErrorCode) -> DeviceError:
        what = f"'{chr(message[0])}' command"
        if code is commands.ErrorCode.FAULT:
            return DeviceNotReady(f"reader reports a hardware fault on the {what}", url=self.url)
        return ProtocolError(
            f"reader refused the {what} ({code.name.lower().replace('_', ' ')}); "
            "the reader may speak another protocol version",
            url=self.url,
        )

    def _framed_swipe(self, timeout_s: float) -> SensitiveTracks:
        self._link.discard_input()
        try:
            self._request(commands.arm(math.ceil(timeout_s * 1000)), commands.ARMED_REPLY)
            # Grace of one ACK timeout so the reader's own 'T' notice can arrive.
            deadline = time.monotonic() + timeout_s + self._link.ack_timeout_s
            frame = self._await_swipe_frame(deadline)
        except Cancelled:
            self._disarm()
            raise SwipeCancelled("swipe wait cancelled; nothing was read", url=self.url) from None
        if frame is None:
            self._disarm()
            raise self._swipe_timeout(timeout_s)
        body = frame.message[1:]
        frame.wipe()
        try:
            return split_tracks(body, lrc=self.track_lrc)
        finally:
            body[:] = bytes(len(body))

    def _await_swipe_frame(self, deadline: float) -> Frame | None:
        while (remaining := deadline - time.monotonic()) > 0:
            frame = self._link.receive(remaining, self._cancel)
            if frame is None:
                return None
            if commands.is_swipe_data(frame.message):
                return frame
            if frame.message == commands.SWIPE_TIMEOUT:
                return None
            frame.wipe()  # stray reply: ignore
        return None

    def _disarm(self) -> None:
        """Best effort cancel on the reader after a timeout or cancel; unplug still raises."""
        with contextlib.suppress(DeviceTimeout, ProtocolError):
            self._request(commands.CANCEL, commands.CANCELLED_REPLY)

    # ---- magtek ------------------------------------------------------------------
    def _magtek_swipe(self, timeout_s: float) -> SensitiveTracks:
        self.transport.flush_input()
        self._magtek.reset()
        deadline = time.monotonic() + timeout_s
        last_byte_at = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            if self._cancel.is_set():
                self._magtek.reset()
                raise SwipeCancelled("swipe wait cancelled; nothing was read", url=self.url)
            data = self.transport.read(256, min(remaining, POLL_SLICE_S))
            now = time.monotonic()
            if not data:
                if self._magtek.in_swipe and now - last_byte_at >= self.inter_byte_timeout_s:
                    self._magtek.reset()
                    self._comm_error("inter-byte timeout inside a swipe")
                continue
            last_byte_at = now
            swipes = self._magtek.feed(data)
            for extra in swipes[1:]:
                extra.wipe()
            if swipes:
                return swipes[0]
        self._magtek.reset()
        raise self._swipe_timeout(timeout_s)

    # ---- shared ------------------------------------------------------------------
    def _swipe_timeout(self, timeout_s: float) -> SwipeTimeout:
        return SwipeTimeout(
            f"no card was swiped within {timeout_s:.3g}s; nothing was read", url=self.url
        )

    def _decode(self, raw: SensitiveTracks) -> CardRead:
        today = self._today() if self._today else None
        key = self._token_key if isinstance(self._token_key, bytes) else self._token_key()
        try:
            card = decode_card(raw, token_key=key, today=today, lrc=self.track_lrc)
        except CardUnreadable as exc:
            raw.wipe()
            self._count_tracks(exc.track_quality)
            self.statistics.increment(FAILED_READS)
            self.statistics.increment(UNREADABLE_CARDS if exc.unreadable else FAILED_PARSES)
            self.statistics.save()
            exc.url = self.url
            raise
        self._count_tracks(card.track_quality)
        self.statistics.increment(GOOD_READS)
        self.statistics.save()
        return card

    def _count_tracks(self, quality: dict[int, TrackQuality]) -> None:
        for number, value in quality.items():
            template = _TRACK_COUNTERS.get(value)
            if template is not None and number in (1, 2):
                self.statistics.increment(template.format(number))

    def _comm_error(self, _reason: str) -> None:
        self.statistics.increment(COMM_ERRORS)

    def _guard(self) -> _UnplugGuard:
        return _UnplugGuard(self)


class _UnplugGuard:
    """Marks the reader offline and saves statistics when the device disappears."""

    def __init__(self, reader: CardReader) -> None:
        self.reader = reader

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        stats = self.reader.statistics
        if exc_type is not None and issubclass(exc_type, DeviceUnplugged):
            stats.mark_online(False)
            stats.save()
        elif exc_type is None or issubclass(exc_type, DeviceError):
            stats.mark_online(True)
        if exc_type is not None and issubclass(exc_type, DeviceError | Cancelled):
            stats.save()
