"""A virtual magnetic-stripe reader speaking ``magtek`` or ``framed``, with faults.

Built on the driver's own protocol code from the other side of the wire:
tracks come from :mod:`posedge.drivers.reader.tracks` encoders, swipes from
:func:`~posedge.drivers.reader.magtek.encode_swipe`, frames from
:mod:`posedge.drivers.reader.framing` and messages from
:mod:`posedge.drivers.reader.commands`.

Cards wait in a queue (:meth:`VirtualReader.present_card`):
- ``magtek``: the reader has no commands; a queued card is swiped as soon as
  the host reads from the link (so a swipe made before the host started
  waiting is not lost to its input flush). ``auto_present`` swipes the
  default test card ``auto_present_delay_s`` after a read finds the queue empty.
- ``framed``: a queued card is swiped when the host arms the reader;
  ``auto_present`` swipes the default card ``auto_present_delay_s`` after an
  arm. The reader ACKs/NAKs host frames, answers ``S``/``A``/``C``, sends ``T``
  when its arm timer runs out, and repeats its own frames on NAK (up to 3
  times). It does not repeat on ACK timeout; a new host command abandons an
  unacknowledged reply.

Faults (:meth:`VirtualReader.apply_fault`), besides the byte-level ones of
:class:`VirtualDevice`: ``unreadable`` (count, tracks), ``bad_lrc`` (count;
framed: frame LRC, magtek: track LRC of ``tracks``), ``nak_storm`` (count),
``card`` (pan, expiry, service_code, name, tracks), ``no_card`` (on).

Only test PANs belong here. Never used by production code except via ``sim://``.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from posedge.drivers.reader import commands
from posedge.drivers.reader.framing import (
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
from posedge.drivers.reader.magtek import encode_swipe
from posedge.drivers.reader.tracks import encode_track1, encode_track2

from .core import ByteFaults, VirtualDevice

VISA_TEST_PAN = "4111111111111111"
MASTERCARD_TEST_PAN = "5555555555554444"
MAX_RETRANSMISSIONS = 3
AUTO_PRESENT_DELAY_S = 0.2
SimProtocol = Literal["magtek", "framed"]


def _track_numbers(value: Any) -> tuple[int, ...]:
    """``(1, 2)``, ``[1]``, ``2``, ``"1,2"``, ``"1+2"`` or ``"1 2"`` → track numbers."""
    if isinstance(value, int):
        value = [value]
    elif isinstance(value, str):
        value = re.split(r"[,+/\s]+", value.strip())
    try:
        numbers = tuple(int(v) for v in value if v != "")
    except (TypeError, ValueError):
        numbers = ()
    if not numbers or any(n not in (1, 2, 3) for n in numbers):
        raise ValueError(f"tracks must be a list of 1, 2, 3, not {value!r}")
    return numbers


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


@dataclass
class TestCard:
    """A card to swipe. Builds valid ISO 7813 tracks from its fields."""

    __test__ = False  # not a pytest test class

    pan: str = VISA_TEST_PAN
    expiry: str = "2912"
    name: str = "TEST/CARD"
    service_code: str = "101"
    tracks: tuple[int, ...] = (1, 2)
    with_lrc: bool = False
    discretionary: str = "00000"

    def track_text(
        self, *, unreadable: Iterable[int] = (), corrupt_lrc: Iterable[int] = ()
    ) -> bytes:
        """``%..?;..?`` for the tracks on the card; E for unreadable ones."""
        broken, corrupt = set(unreadable), set(corrupt_lrc)
        out = b""
        for number in self.tracks:
            out += self._one(number, number in broken, number in corrupt)
        return out

    def _one(self, number: int, unreadable: bool, corrupt: bool) -> bytes:
        sentinel = {1: b"%", 2: b";", 3: b"+"}[number]
        if unreadable:
            return sentinel + b"E?"
        lrc = self.with_lrc or corrupt
        if number == 1:
            text = encode_track1(
                self.pan, self.name, self.expiry, self.service_code, self.discretionary, lrc=lrc
            )
        elif number == 2:
            text = encode_track2(
                self.pan, self.expiry, self.service_code, self.discretionary, lrc=lrc
            )
        else:
            text = b"+" + self.discretionary.encode("ascii") + b"?"
        if corrupt and number in (1, 2):
            low, high = (0x20, 0x5F) if number == 1 else (0x30, 0x3F)
            wrong = text[-1] + 1 if text[-1] < high else low
            text = text[:-1] + bytes([wrong])
        return text

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tracks"] = list(self.tracks)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestCard:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "tracks" in known:
            known["tracks"] = _track_numbers(known["tracks"])
        return cls(**known)


@dataclass
class ReaderFaults:
    unreadable_swipes: int = 0
    unreadable_tracks: tuple[int, ...] = (1, 2)
    bad_lrc: int = 0
    """framed: corrupt the LRC of the next N frames; magtek: of the next N swipes' tracks."""
    bad_lrc_tracks: tuple[int, ...] = (1,)
    nak_storm: int = 0
    no_card: bool = False


@dataclass
class _Outgoing:
    queue: deque[bytes] = field(default_factory=deque)
    awaiting: bytes | None = None
    attempts: int = 0


class VirtualReader(VirtualDevice):
    kind = "reader"

    def __init__(
        self,
        protocol: SimProtocol = "magtek",
        *,
        lrc_rule: LrcRule = DEFAULT_LRC_RULE,
        esc: bool = False,
        auto_present: bool = False,
        auto_present_delay_s: float = AUTO_PRESENT_DELAY_S,
    ) -> None:
        super().__init__()
        if protocol not in ("magtek", "framed"):
            raise ValueError(f"reader protocol must be 'magtek' or 'framed', not {protocol!r}")
        self.protocol: SimProtocol = protocol
        self.lrc_rule = lrc_rule
        self.esc = esc
        self.auto_present = auto_present
        self.auto_present_delay_s = auto_present_delay_s
        self.reader_faults = ReaderFaults()
        self.cards: deque[TestCard] = deque()
        self.armed = False
        self.host_messages: list[bytes] = []
        """Commands received from the host (framed), for tests and dumps."""
        self.host_reads = 0
        """Reads the host made while no card was queued (magtek: "host is waiting")."""
        self.swipes_sent = 0
        self.frames_sent = 0
        self.naks_sent = 0
        self.naks_received = 0
        self._lock = threading.RLock()
        self._decoder = FrameDecoder(lrc_rule)
        self._out = _Outgoing()
        self._arm_generation = 0
        self._timers: list[threading.Timer] = []
        self._closed = False

    # ---- cards ---------------------------------------------------------------
    def present_card(
        self,
        pan: str = VISA_TEST_PAN,
        expiry: str = "2912",
        name: str = "TEST/CARD",
        service_code: str = "101",
        tracks: Iterable[int] = (1, 2),
        with_lrc: bool = False,
    ) -> None:
        """Queue a card; it is swiped when the host waits (see the module docstring)."""
        card = TestCard(pan, expiry, name, service_code, _track_numbers(tracks), with_lrc)
        with self._lock:
            self.cards.append(card)
            if self.protocol == "framed" and self.armed:
                self._present_next()
        self.notify_changed()

    def take(self, max_bytes: int, timeout_s: float) -> bytes:
        if self.protocol == "magtek" and self.plugged:
            with self._lock:
                self._magtek_host_waiting()
        return super().take(max_bytes, timeout_s)

    def _magtek_host_waiting(self) -> None:
        self.host_reads += 1
        if self.reader_faults.no_card:
            return
        if self.cards:
            self._present(self.cards.popleft())
        elif self.auto_present and not self._timers:
            self._schedule(self.auto_present_delay_s, self._auto_swipe, self._arm_generation)

    def _present_next(self) -> None:
        if self.reader_faults.no_card:
            return
        if self.cards:
            self._present(self.cards.popleft())
        elif self.auto_present:
            self._schedule(self.auto_present_delay_s, self._auto_swipe, self._arm_generation)

    def _auto_swipe(self) -> None:
        if self.reader_faults.no_card or (self.protocol == "framed" and not self.armed):
            return
        self._present(TestCard())

    def _present(self, card: TestCard) -> None:
        faults = self.reader_faults
        unreadable: tuple[int, ...] = ()
        corrupt: tuple[int, ...] = ()
        if faults.unreadable_swipes > 0:
            faults.unreadable_swipes -= 1
            unreadable = faults.unreadable_tracks
        if self.protocol == "magtek" and faults.bad_lrc > 0:
            faults.bad_lrc -= 1
            corrupt = faults.bad_lrc_tracks
        text = card.track_text(unreadable=unreadable, corrupt_lrc=corrupt)
        self.swipes_sent += 1
        if self.protocol == "magtek":
            self.send(encode_swipe(text, esc=self.esc))
        else:
            self._disarm()
            self._queue_frame(commands.swipe_data(text))
        self.notify_changed()

    # ---- timers (arm expiry, auto present) ------------------------------------
    def _schedule(self, delay_s: float, action: Any, generation: int) -> None:
        if self._closed:
            return

        def fire() -> None:
            with self._lock:
                self._timers = [t for t in self._timers if t is not timer]
                if generation == self._arm_generation and self.plugged:
                    action()

        timer = threading.Timer(delay_s, fire)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _cancel_timers(self) -> None:
        self._arm_generation += 1
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def close(self) -> None:
        """Stop pending timers and automatic swipes for good (tests and shutdown)."""
        with self._lock:
            self._closed = True
            self._cancel_timers()

    def _set_plugged(self, plugged: bool) -> None:
        if not plugged:
            with self._lock:
                self._cancel_timers()
                self.armed = False
                self._out = _Outgoing()
                self._decoder.reset()
        super()._set_plugged(plugged)

    # ---- framed: host → reader -------------------------------------------------
    def on_bytes(self, data: bytes) -> None:
        if self.protocol == "magtek":
            return  # a MagTek reader has no command channel
        with self._lock:
            for event in self._decoder.feed(data):
                self._on_event(event)

    def _on_event(self, event: Ack | Nak | Frame | BadFrame) -> None:
        if isinstance(event, Ack):
            self._out.awaiting = None
            self._pump()
        elif isinstance(event, Nak):
            self.naks_received += 1
            self._on_nak()
        elif isinstance(event, BadFrame):
            self._send_nak()
        elif self.reader_faults.nak_storm > 0:
            self.reader_faults.nak_storm -= 1
            self._send_nak()
        else:
            self.send(bytes([ACK]))
            self._on_command(bytes(event.message))

    def _send_nak(self) -> None:
        self.naks_sent += 1
        self.send(bytes([NAK]))
        self.notify_changed()

    def _on_command(self, message: bytes) -> None:
        self.host_messages.append(message)
        self._out = _Outgoing()  # the host moved on: unacknowledged replies are obsolete
        letter = message[:1]
        if message == commands.STATUS_QUERY:
            state = commands.ReaderState.ARMED if self.armed else commands.ReaderState.IDLE
            self._queue_frame(commands.status_reply(state))
        elif letter == b"A":
            self._arm(message)
        elif message == commands.CANCEL:
            self._disarm()
            self._queue_frame(commands.CANCELLED_REPLY)
        else:
            self._queue_frame(commands.error_reply(commands.ErrorCode.UNKNOWN_COMMAND))
        self.notify_changed()

    def _arm(self, message: bytes) -> None:
        try:
            timeout_ms = commands.parse_arm(message)
        except ValueError:
            self._queue_frame(commands.error_reply(commands.ErrorCode.BAD_PARAMETER))
            return
        self._cancel_timers()
        self.armed = True
        self._queue_frame(commands.ARMED_REPLY)
        self._schedule(timeout_ms / 1000.0, self._arm_expired, self._arm_generation)
        self._present_next()

    def _arm_expired(self) -> None:
        if self.armed:
            self._disarm()
            self._queue_frame(commands.SWIPE_TIMEOUT)

    def _disarm(self) -> None:
        self.armed = False
        self._cancel_timers()

    # ---- framed: reader → host -------------------------------------------------
    def _queue_frame(self, message: bytes) -> None:
        self._out.queue.append(message)
        self._pump()

    def _pump(self) -> None:
        if self._out.awaiting is None and self._out.queue:
            self._out.awaiting = self._out.queue.popleft()
            self._out.attempts = 0
            self._transmit()

    def _on_nak(self) -> None:
        if self._out.awaiting is None:
            return
        if self._out.attempts <= MAX_RETRANSMISSIONS:
            self._transmit()
        else:  # give up on this frame, as the protocol says
            self._out.awaiting = None
            self._pump()

    def _transmit(self) -> None:
        assert self._out.awaiting is not None
        frame = encode_frame(self._out.awaiting, self.lrc_rule)
        if self.reader_faults.bad_lrc > 0:
            self.reader_faults.bad_lrc -= 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        self._out.attempts += 1
        self.frames_sent += 1
        self.send(frame)

    # ---- faults ----------------------------------------------------------------
    def apply_fault(self, name: str, **params: Any) -> None:
        """Reader faults by name; byte-level ones go to :class:`VirtualDevice`."""
        with self._lock:
            if not self._apply_reader_fault(name, params):
                super().apply_fault(name, **params)
            if name == "clear":
                self.reader_faults = ReaderFaults()
        self.notify_changed()

    def _apply_reader_fault(self, name: str, params: dict[str, Any]) -> bool:
        faults = self.reader_faults
        count = int(params.get("count", 1))
        if name == "unreadable":
            faults.unreadable_swipes = count
            faults.unreadable_tracks = _track_numbers(params.get("tracks", (1, 2)))
        elif name == "bad_lrc":
            faults.bad_lrc = count
            faults.bad_lrc_tracks = _track_numbers(params.get("tracks", (1,)))
        elif name == "nak_storm":
            faults.nak_storm = count
        elif name == "no_card":
            faults.no_card = _flag(params.get("on", True))
            if faults.no_card:
                self.cards.clear()  # pending auto swipes check no_card when they fire
        elif name == "card":
            card = TestCard.from_dict(params)
            self.present_card(
                card.pan, card.expiry, card.name, card.service_code, card.tracks, card.with_lrc
            )
        else:
            return False
        return True

    # ---- dump / load -------------------------------------------------------------
    def state_dump(self) -> dict[str, Any]:
        """Everything needed to rebuild this reader (a technician dump / scenario)."""
        with self._lock:
            byte_faults = asdict(self.faults)
            byte_faults["garbage"] = self.faults.garbage.hex()
            faults = asdict(self.reader_faults)
            faults["unreadable_tracks"] = list(self.reader_faults.unreadable_tracks)
            faults["bad_lrc_tracks"] = list(self.reader_faults.bad_lrc_tracks)
            return {
                "kind": self.kind,
                "protocol": self.protocol,
                "plugged": self.plugged,
                "armed": self.armed,
                "esc": self.esc,
                "auto_present": self.auto_present,
                "auto_present_delay_s": self.auto_present_delay_s,
                "lrc_rule": asdict(self.lrc_rule),
                "cards": [card.as_dict() for card in self.cards],
                "faults": faults,
                "byte_faults": byte_faults,
                "counters": {
                    "swipes_sent": self.swipes_sent,
                    "frames_sent": self.frames_sent,
                    "naks_sent": self.naks_sent,
                    "naks_received": self.naks_received,
                },
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> VirtualReader:
        reader = cls(
            state.get("protocol", "magtek"),
            lrc_rule=LrcRule(**state.get("lrc_rule", {})),
            esc=bool(state.get("esc", False)),
            auto_present=bool(state.get("auto_present", False)),
            auto_present_delay_s=float(state.get("auto_present_delay_s", AUTO_PRESENT_DELAY_S)),
        )
        reader.load_state(state)
        return reader

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore cards and faults from :meth:`state_dump` (arming is not restored)."""
        with self._lock:
            self.auto_present = bool(state.get("auto_present", self.auto_present))
            self.cards = deque(TestCard.from_dict(c) for c in state.get("cards", []))
            raw = dict(state.get("faults", {}))
            for key in ("unreadable_tracks", "bad_lrc_tracks"):
                if key in raw:
                    raw[key] = _track_numbers(raw[key])
            self.reader_faults = ReaderFaults(**raw)
            raw_bytes = dict(state.get("byte_faults", {}))
            raw_bytes["garbage"] = bytes.fromhex(str(raw_bytes.get("garbage", "")))
            self.faults = ByteFaults(**raw_bytes)
        if state.get("plugged", True) is False:
            self.unplug()
