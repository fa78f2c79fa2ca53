"""The card reader driver test matrix: every fault × both protocols × every serial transport.

The same :class:`CardReader` tests run against a :class:`VirtualReader` over a
pseudo-terminal (real pyserial), TCP (pyserial ``socket://``) and in process
(``sim://``). There is no USB case: a native-USB card reader is a HID
keyboard-wedge or HID-POS device, which is out of scope for issue 3 (the
pyusb transport is exercised by the printer matrix).

A magtek reader has no command channel and the driver flushes stale input
when it starts waiting, so a card is presented only once the driver is
reading (:class:`ReadSignal` says when); a framed reader swipes on arm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from posedge.drivers.cardreader import CardReader, SwipeCancelled, SwipeTimeout
from posedge.drivers.errors import DeviceTimeout, DeviceUnplugged, ProtocolError
from posedge.drivers.reader.tracks import CardRead, CardUnreadable, TrackQuality
from posedge.drivers.statistics import DeviceStatistics
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.reconnect import ReconnectingTransport
from posedge.simulator.reader import MASTERCARD_TEST_PAN, VirtualReader
from tests.drivers.transport_fixtures import link_opener

KEY = b"matrix-token-key-0123456789abcdef"
READER_LINKS = ("pty", "tcp", "inprocess")  # no "usb": USB card readers are HID (out of scope)
PROTOCOLS = ("magtek", "framed")
CASES = [(link, protocol) for link in READER_LINKS for protocol in PROTOCOLS]
FRAMED = [case for case in CASES if case[1] == "framed"]
MAGTEK = [case for case in CASES if case[1] == "magtek"]
WAIT_S = 3.0


class ReadSignal(Transport):
    """Passes everything through; :attr:`reading` is set once the driver reads."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.url = inner.url
        self.reading = threading.Event()

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def read(self, size: int, timeout_s: float) -> bytes:
        self.reading.set()
        return self.inner.read(size, timeout_s)

    def flush_input(self) -> None:
        self.inner.flush_input()

    def close(self) -> None:
        self.inner.close()

    @property
    def is_open(self) -> bool:
        return self.inner.is_open


@dataclass
class Rig:
    sim: VirtualReader
    signal: ReadSignal
    inner: Transport
    reader: CardReader
    stats: DeviceStatistics

    def read(self, timeout_s: float = 2.0, card: dict[str, Any] | None = None) -> object:
        """Read in a thread, present ``card`` once the driver waits; the summary or the error."""
        box: list[object] = []

        def run() -> None:
            try:
                with self.reader.read_card(timeout_s) as read:
                    box.append(_Summary(read))
            except Exception as exc:
                box.append(exc)

        self.signal.reading.clear()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert self.signal.reading.wait(WAIT_S), "the driver never started reading"
        if card is not None:
            self.sim.present_card(**card)
        thread.join(timeout_s + WAIT_S)
        assert not thread.is_alive(), "read_card did not return"
        return box[0]


class _Summary:
    """What a test may keep of a CardRead after it is wiped."""

    def __init__(self, read: CardRead) -> None:
        self.masked_pan = read.masked_pan
        self.brand = read.brand
        self.track_quality = dict(read.track_quality)


@pytest.fixture(params=CASES, ids=["-".join(case) for case in CASES])
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    link, protocol = request.param
    with ExitStack() as stack:

        def make(*, reconnect: bool = False, **reader_kw: Any) -> Rig:
            sim = VirtualReader(protocol)
            opener = stack.enter_context(link_opener(link, sim, tmp_path))
            inner: Transport = (
                ReconnectingTransport(opener, f"{link}://reader", initial_backoff_s=0.01)
                if reconnect
                else opener()
            )
            signal = ReadSignal(inner)
            stack.callback(signal.close)
            stack.callback(sim.close)  # runs first: no timers while the links shut down
            stats = DeviceStatistics(tmp_path, "reader-matrix")
            options: dict[str, Any] = {
                "inter_byte_timeout_s": 0.2,
                "ack_timeout_s": 0.1,
                "response_timeout_s": 0.3,
                "today": lambda: date(2026, 1, 15),
            }
            reader = CardReader(
                signal,
                token_key=KEY,
                protocol=protocol,
                statistics=stats,
                **(options | reader_kw),
            )
            return Rig(sim, signal, inner, reader, stats)

        yield make


def only(cases: list[tuple[str, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "make_rig", cases, indirect=True, ids=["-".join(case) for case in cases]
    )


MASTERCARD = {"pan": MASTERCARD_TEST_PAN}


def test_good_read(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    got = rig.read(card=MASTERCARD)
    assert isinstance(got, _Summary), repr(got)
    assert got.masked_pan == "555555******4444" and got.brand == "mastercard"
    assert got.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}
    assert rig.stats.get("GoodCardReadCount") == 1


def test_unreadable_card_then_a_good_swipe(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.sim.apply_fault("unreadable", count=1)
    got = rig.read(card={})
    assert isinstance(got, CardUnreadable), repr(got)
    assert got.unreadable
    assert got.track_quality == {1: TrackQuality.UNREADABLE, 2: TrackQuality.UNREADABLE}
    assert rig.stats.get("UnreadableCardCount") == 1
    assert isinstance(rig.read(card={}), _Summary)


@only(FRAMED)
def test_framed_bad_lrc_is_naked_and_retransmitted(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.sim.apply_fault("bad_lrc", count=2)
    got = rig.read(card=MASTERCARD)
    assert isinstance(got, _Summary), repr(got)
    assert rig.sim.naks_received == 2
    assert rig.stats.get("CommunicationErrorCount") == 2


@only(FRAMED)
def test_framed_bad_lrc_forever_is_a_protocol_error(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.sim.apply_fault("bad_lrc", count=100)
    with pytest.raises(ProtocolError):
        rig.reader.status()


@only(MAGTEK)
def test_magtek_bad_track_lrc_then_a_good_swipe(make_rig: Callable[..., Rig]) -> None:
    # A raw-stream reader cannot be asked to retransmit: the bad track is reported
    # and counted, the good track still reads, and the next swipe is clean.
    rig = make_rig(track_lrc=True)
    rig.sim.apply_fault("bad_lrc", count=1, tracks="1")
    got = rig.read(card={"with_lrc": True})
    assert isinstance(got, _Summary), repr(got)
    assert got.track_quality == {1: TrackQuality.BAD_LRC, 2: TrackQuality.OK}
    assert rig.stats.get("ParityLRCErrorTrack1Count") == 1
    again = rig.read(card={"with_lrc": True})
    assert isinstance(again, _Summary)
    assert again.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}


@only(FRAMED)
def test_framed_nak_storm(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.sim.apply_fault("nak_storm", count=3)  # within the 3 retransmissions
    assert rig.reader.status().state == "idle"
    rig.sim.apply_fault("nak_storm", count=4)  # one too many
    with pytest.raises(ProtocolError, match="NAK"):
        rig.reader.read_card(1.0)
    assert rig.reader.status().state == "idle"


def test_no_response_is_a_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.sim.apply_fault("no_response")
    got = rig.read(timeout_s=0.2, card={})
    assert isinstance(got, DeviceTimeout), repr(got)


@pytest.mark.parametrize(
    "fault",
    [
        {"name": "garbage", "hex": "ff00a5", "repeat": True},
        {"name": "split", "chunk": 3, "gap_s": 0.002},
        {"name": "slow_response", "delay_s": 0.05},
    ],
    ids=["garbage", "split", "slow"],
)
def test_byte_faults_are_tolerated(make_rig: Callable[..., Rig], fault: dict[str, Any]) -> None:
    rig = make_rig()
    params = dict(fault)
    rig.sim.apply_fault(str(params.pop("name")), **params)
    got = rig.read(card=MASTERCARD)
    assert isinstance(got, _Summary), repr(got)
    assert got.masked_pan == "555555******4444"


def test_swipe_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    got = rig.read(timeout_s=0.2)
    assert isinstance(got, SwipeTimeout), repr(got)
    assert not rig.sim.armed
    assert rig.stats.get("FailedReadCount") == 0


def test_cancel(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    box: list[BaseException] = []

    def run() -> None:
        try:
            rig.reader.read_card(5.0)
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert rig.signal.reading.wait(WAIT_S)
    if rig.reader.protocol == "framed":
        assert rig.sim.wait_until(lambda: rig.sim.armed, WAIT_S)
    rig.reader.cancel()
    thread.join(WAIT_S)
    assert len(box) == 1 and isinstance(box[0], SwipeCancelled), box
    if rig.reader.protocol == "framed":
        assert rig.sim.wait_until(lambda: not rig.sim.armed, WAIT_S)
        assert rig.sim.host_messages[-1] == b"C"


def test_unplug_mid_read_then_replug_recovers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(reconnect=True)
    assert isinstance(rig.inner, ReconnectingTransport)
    box: list[BaseException] = []

    def run() -> None:
        try:
            rig.reader.read_card(5.0)
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert rig.signal.reading.wait(WAIT_S)
    if rig.reader.protocol == "framed":
        assert rig.sim.wait_until(lambda: rig.sim.armed, WAIT_S)
    rig.sim.unplug()
    thread.join(WAIT_S)
    assert len(box) == 1 and isinstance(box[0], DeviceUnplugged), box
    assert not rig.inner.connected

    rig.sim.replug()
    assert rig.inner.wait_connected(WAIT_S)
    got = rig.read(card=MASTERCARD)
    assert isinstance(got, _Summary), repr(got)
    assert got.brand == "mastercard"
