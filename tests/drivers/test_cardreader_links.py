"""The card reader driver over real pyserial code: pty and TCP links to the VirtualReader.

The in-process cases (every fault, statistics) are in ``test_cardreader.py``;
this module proves the same behaviour survives a real serial stack. A magtek
reader has no arm command, so the virtual reader swipes repeatedly
(``auto_present``) and the driver picks the first swipe after it starts
waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from posedge.drivers.cardreader import CardReader, SwipeTimeout
from posedge.drivers.errors import DeviceError, DeviceTimeout, DeviceUnplugged, ProtocolError
from posedge.drivers.reader.tracks import CardUnreadable, TrackQuality
from posedge.simulator.reader import VirtualReader
from tests.drivers.transport_fixtures import link_opener

KEY = b"device-token-key-0123456789abcdef"
CASES = [(kind, protocol) for kind in ("pty", "tcp") for protocol in ("magtek", "framed")]

Rig = tuple[VirtualReader, CardReader]


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    kind, protocol = request.param
    with ExitStack() as stack:

        def make(**sim_kw: object) -> Rig:
            if protocol == "magtek":
                sim_kw.setdefault("auto_present", True)
                sim_kw.setdefault("auto_present_delay_s", 0.05)
            sim = VirtualReader(protocol, **sim_kw)  # type: ignore[arg-type]
            opener = stack.enter_context(link_opener(kind, sim, tmp_path))
            transport = opener()
            stack.callback(transport.close)
            stack.callback(sim.close)  # runs first: no swipes while the links shut down
            reader = CardReader(
                transport,
                protocol=protocol,
                token_key=KEY,
                inter_byte_timeout_s=0.2,
                ack_timeout_s=0.1,
                response_timeout_s=0.3,
            )
            return sim, reader

        yield make


parametrized = pytest.mark.parametrize(
    "rig", CASES, indirect=True, ids=["-".join(c) for c in CASES]
)


@parametrized
def test_good_read(rig: Callable[..., Rig]) -> None:
    sim, reader = rig()
    sim.present_card()
    with reader.read_card(2.0) as card:
        assert card.masked_pan == "411111******1111"
    assert reader.check_health("internal").ok


@parametrized
def test_unreadable(rig: Callable[..., Rig]) -> None:
    sim, reader = rig()
    sim.apply_fault("unreadable", count=1000)
    sim.present_card()
    with pytest.raises(CardUnreadable) as err:
        reader.read_card(2.0)
    assert err.value.track_quality[2] is TrackQuality.UNREADABLE


@parametrized
@pytest.mark.parametrize(
    "fault",
    [
        {"name": "garbage", "hex": "ff00a5", "repeat": True},
        {"name": "split", "chunk": 3, "gap_s": 0.002},
        {"name": "slow_response", "delay_s": 0.05},
    ],
)
def test_byte_faults_tolerated(rig: Callable[..., Rig], fault: dict[str, object]) -> None:
    sim, reader = rig()
    params = dict(fault)
    sim.apply_fault(str(params.pop("name")), **params)
    sim.present_card()
    assert reader.read_card(2.0).brand == "visa"


@parametrized
def test_no_response(rig: Callable[..., Rig]) -> None:
    sim, reader = rig()
    sim.apply_fault("no_response")
    with pytest.raises(DeviceTimeout):
        reader.read_card(0.3)


@parametrized
def test_swipe_timeout(rig: Callable[..., Rig]) -> None:
    _sim, reader = rig(auto_present=False)
    with pytest.raises(SwipeTimeout):
        reader.read_card(0.2)


@parametrized
def test_unplug_mid_read(rig: Callable[..., Rig]) -> None:
    sim, reader = rig(auto_present=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reader.read_card(5.0)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if reader.protocol == "framed":
        assert sim.wait_until(lambda: sim.armed, 2.0)
    sim.unplug()
    thread.join(5)
    assert errors and isinstance(errors[0], DeviceError)
    assert isinstance(errors[0], DeviceUnplugged), repr(errors[0])


FRAMED = [c for c in CASES if c[1] == "framed"]


@pytest.mark.parametrize("rig", FRAMED, indirect=True, ids=["-".join(c) for c in FRAMED])
def test_framed_bad_lrc_and_nak_storm(rig: Callable[..., Rig]) -> None:
    sim, reader = rig()
    sim.apply_fault("bad_lrc", count=1)
    sim.present_card()
    assert reader.read_card(2.0).brand == "visa"
    assert sim.naks_received == 1
    sim.apply_fault("nak_storm", count=4)
    with pytest.raises(ProtocolError, match="NAK"):
        reader.status()
    assert reader.status().state == "idle"
