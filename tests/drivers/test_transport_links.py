"""The same transport tests over every link: pty (real pyserial), TCP (socket://),
pyusb backend (real pyusb) and in-process (sim://), against an echo device."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posedge.drivers.errors import DeviceUnplugged
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.reconnect import ReconnectingTransport

from .transport_fixtures import LINK_KINDS, EchoDevice, FakeClock, Opener, link_opener


@dataclass
class Link:
    kind: str
    device: EchoDevice
    open: Opener
    transport: Transport


@pytest.fixture(params=LINK_KINDS)
def link(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Link]:
    device = EchoDevice()
    with link_opener(request.param, device, tmp_path) as opener:
        transport = opener()
        try:
            yield Link(request.param, device, opener, transport)
        finally:
            transport.close()


def test_round_trip(link: Link) -> None:
    link.transport.write(b"\x10\x04\x01hello")
    assert link.transport.read_exactly(8, 2.0) == b"\x10\x04\x01hello"
    assert link.device.received == b"\x10\x04\x01hello"


def test_large_round_trip(link: Link) -> None:
    payload = bytes(range(256)) * 8
    received = bytearray()

    def reader() -> None:
        received.extend(link.transport.read_exactly(len(payload), 5.0))

    thread = threading.Thread(target=reader)
    thread.start()
    link.transport.write(payload)
    thread.join(6.0)
    assert bytes(received) == payload


def test_read_timeout_returns_empty(link: Link) -> None:
    started = time.monotonic()
    assert link.transport.read(16, 0.1) == b""
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 1.0


def test_read_returns_at_most_size(link: Link) -> None:
    link.transport.write(b"abcdef")
    first = link.transport.read(2, 2.0)
    assert len(first) in (1, 2)
    rest = link.transport.read_exactly(6 - len(first), 2.0)
    assert first + rest == b"abcdef"


def test_flush_input_discards_stale_bytes(link: Link) -> None:
    link.device.send(b"stale")
    assert link.transport.read(1, 2.0) == b"s"  # the stale reply has reached the host
    link.transport.flush_input()
    link.transport.write(b"fresh")
    assert link.transport.read_exactly(5, 2.0) == b"fresh"


def test_split_fault_delivers_in_pieces(link: Link) -> None:
    link.device.apply_fault("split", chunk=1, gap_s=0.03)
    link.transport.write(b"abc")
    pieces: list[bytes] = []
    deadline = time.monotonic() + 3.0
    while len(b"".join(pieces)) < 3 and time.monotonic() < deadline:
        pieces.append(link.transport.read(10, 1.0))
    assert b"".join(pieces) == b"abc"
    assert len([p for p in pieces if p]) >= 2


def test_slow_fault_delays_reply(link: Link) -> None:
    link.device.apply_fault("slow_response", delay_s=0.4)
    link.transport.write(b"ok")
    assert link.transport.read(2, 0.1) == b""
    assert link.transport.read_exactly(2, 2.0) == b"ok"


def test_garbage_fault_precedes_reply(link: Link) -> None:
    link.device.apply_fault("garbage", hex="ff00")
    link.transport.write(b"ok")
    assert link.transport.read_exactly(4, 2.0) == b"\xff\x00ok"


def test_no_response_fault(link: Link) -> None:
    link.device.apply_fault("no_response")
    link.transport.write(b"anyone?")
    assert link.transport.read(16, 0.2) == b""
    assert link.device.received == b"anyone?"


def test_unplug_raises_device_unplugged(link: Link) -> None:
    link.device.unplug()
    with pytest.raises(DeviceUnplugged) as info:
        link.transport.write(b"x")
        link.transport.read(1, 1.0)
    assert info.value.url == link.transport.url


@pytest.mark.parametrize("kind", LINK_KINDS)
def test_unplug_mid_write(kind: str, tmp_path: Path) -> None:
    device = EchoDevice(unplug_after=1000)
    with link_opener(kind, device, tmp_path) as opener:
        transport = opener()
        try:
            with pytest.raises(DeviceUnplugged):
                for _ in range(64):
                    transport.write(b"\x55" * 4096)
                    transport.read(1, 0.01)
        finally:
            transport.close()
    assert 1000 <= len(device.received) < 64 * 4096


def test_replug_and_reconnect(link: Link) -> None:
    clock = FakeClock()
    states: list[bool] = []
    link.transport.close()
    transport = ReconnectingTransport(
        link.open,
        link.transport.url,
        initial_backoff_s=0.5,
        clock=clock,
        sleep=clock.sleep,
        on_state_change=lambda connected, _err: states.append(connected),
    )
    try:
        transport.write(b"1")
        assert transport.read_exactly(1, 2.0) == b"1"
        link.device.unplug()
        with pytest.raises(DeviceUnplugged):
            transport.write(b"2")
            transport.read(1, 1.0)
        assert not transport.connected
        assert isinstance(transport.last_error, DeviceUnplugged)
        with pytest.raises(DeviceUnplugged, match="next reconnect attempt"):
            transport.write(b"3")  # fails fast: backoff not elapsed
        link.device.replug()
        clock.advance(1.0)
        transport.write(b"4")
        assert transport.read_exactly(1, 2.0) == b"4"
        assert transport.connected and transport.reconnects == 1
        assert states == [True, False, True]
    finally:
        transport.close()
