"""ReconnectingTransport: backoff, fail-fast while disconnected, recovery, counters."""

from __future__ import annotations

import pytest

from posedge.drivers.errors import DeviceBusy, DeviceUnplugged, UnsupportedURL
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.reconnect import ReconnectingTransport

from .transport_fixtures import FakeClock


class ScriptedTransport(Transport):
    """Answers reads with b"ok" until told the device is gone."""

    def __init__(self, world: World) -> None:
        self.url = "test://dev"
        self.world = world
        self.closed = False

    def write(self, data: bytes) -> None:
        self._check()

    def read(self, size: int, timeout_s: float) -> bytes:
        self._check()
        return b"ok"[:size]

    def flush_input(self) -> None:
        self._check()

    def _check(self) -> None:
        if not self.world.present:
            raise DeviceUnplugged("gone", url=self.url)

    def close(self) -> None:
        self.closed = True

    @property
    def is_open(self) -> bool:
        return not self.closed


class World:
    def __init__(self) -> None:
        self.present = True
        self.opens = 0
        self.open_error: Exception | None = None

    def open(self) -> Transport:
        self.opens += 1
        if self.open_error is not None:
            raise self.open_error
        if not self.present:
            raise DeviceUnplugged("not there", url="test://dev")
        return ScriptedTransport(self)


def make(
    world: World, clock: FakeClock, initial_backoff_s: float = 0.1, max_backoff_s: float = 30.0
) -> ReconnectingTransport:
    return ReconnectingTransport(
        world.open,
        "test://dev",
        initial_backoff_s=initial_backoff_s,
        max_backoff_s=max_backoff_s,
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: 0.0,
    )


def test_backoff_doubles_and_is_capped() -> None:
    world, clock = World(), FakeClock()
    transport = make(world, clock, initial_backoff_s=0.5, max_backoff_s=3.0)
    assert [transport.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_shortens_within_bounds() -> None:
    clock = FakeClock()
    transport = ReconnectingTransport(
        World().open, "test://dev", initial_backoff_s=1.0, jitter=0.25, clock=clock, rng=lambda: 1.0
    )
    assert transport.backoff_s(1) == pytest.approx(0.75)


def test_fail_fast_while_disconnected_then_recover() -> None:
    world, clock = World(), FakeClock()
    transport = make(world, clock, initial_backoff_s=1.0)
    world.present = False
    with pytest.raises(DeviceUnplugged):
        transport.read(2, 0.1)
    opens = world.opens
    with pytest.raises(DeviceUnplugged, match="next reconnect attempt"):
        transport.read(2, 0.1)
    assert world.opens == opens  # no attempt before the backoff elapsed
    clock.advance(1.0)
    with pytest.raises(DeviceUnplugged, match="not available"):
        transport.read(2, 0.1)  # one attempt, device still absent
    assert world.opens == opens + 1
    assert transport.next_attempt_in_s == pytest.approx(1.0)  # failures=1 → initial
    world.present = True
    clock.advance(1.0)
    assert transport.read(2, 0.1) == b"ok"
    assert transport.reconnects == 1 and transport.connected


def test_absent_at_start_is_not_fatal() -> None:
    world, clock = World(), FakeClock()
    world.present = False
    transport = make(world, clock)
    assert not transport.connected
    assert isinstance(transport.last_error, DeviceUnplugged)
    world.present = True
    assert transport.wait_connected(5.0)
    assert transport.reconnects == 1
    assert clock.slept  # waited on the backoff schedule, with the injected sleep


def test_wait_connected_gives_up() -> None:
    world, clock = World(), FakeClock()
    world.present = False
    transport = make(world, clock, initial_backoff_s=0.1, max_backoff_s=1.0)
    assert not transport.wait_connected(5.0)
    assert world.opens >= 5


def test_busy_device_keeps_retrying_but_bad_url_raises() -> None:
    world, clock = World(), FakeClock()
    world.open_error = DeviceBusy("held by pid 42 (cat)", url="test://dev")
    transport = make(world, clock)
    assert isinstance(transport.last_error, DeviceBusy)
    world.open_error = UnsupportedURL("bad", url="test://dev")
    with pytest.raises(UnsupportedURL):
        transport.reconnect_now()


def test_close_stops_everything() -> None:
    world, clock = World(), FakeClock()
    transport = make(world, clock)
    transport.close()
    with pytest.raises(DeviceUnplugged, match="closed"):
        transport.write(b"x")
    assert not transport.reconnect_now()
