"""The virtual reader seen from the wire, using the driver's protocol code as the host."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from posedge.drivers.reader.framing import ACK, NAK, Frame, FrameDecoder, FrameEvent, encode_frame
from posedge.drivers.reader.magtek import MagtekStreamParser
from posedge.drivers.reader.tracks import TrackQuality, decode_card
from posedge.simulator.reader import MASTERCARD_TEST_PAN, VISA_TEST_PAN, TestCard, VirtualReader

KEY = b"k" * 32


@pytest.fixture
def framed() -> Iterator[VirtualReader]:
    sim = VirtualReader("framed")
    yield sim
    sim.close()


def drain(sim: VirtualReader, timeout_s: float = 0.05) -> list[FrameEvent]:
    decoder = FrameDecoder(sim.lrc_rule)
    events: list[FrameEvent] = []
    while chunk := sim.take(1024, timeout_s):
        events += decoder.feed(chunk)
    return events


def messages(events: list[FrameEvent]) -> list[bytes]:
    return [bytes(e.message) for e in events if isinstance(e, Frame)]


def test_status_query_acked_and_answered(framed: VirtualReader) -> None:
    framed.receive(encode_frame(b"S"))
    events = drain(framed)
    assert type(events[0]).__name__ == "Ack"
    assert messages(events) == [b"SI"]
    assert framed.host_messages == [b"S"]


def test_arm_with_queued_card_sends_swipe_after_ack(framed: VirtualReader) -> None:
    framed.present_card(pan=MASTERCARD_TEST_PAN)
    framed.receive(encode_frame(b"A5000"))
    assert messages(drain(framed)) == [b"AK"]  # one frame outstanding at a time
    framed.receive(bytes([ACK]))
    (swipe,) = messages(drain(framed))
    assert swipe.startswith(b"D%B5555555555554444^")
    assert not framed.armed and framed.swipes_sent == 1


def test_nak_makes_reader_repeat_up_to_three_times(framed: VirtualReader) -> None:
    framed.receive(encode_frame(b"S"))
    drain(framed)
    for _ in range(3):
        framed.receive(bytes([NAK]))
        assert messages(drain(framed)) == [b"SI"]
    framed.receive(bytes([NAK]))
    assert drain(framed) == []
    assert framed.frames_sent == 4


def test_bad_host_frame_is_naked(framed: VirtualReader) -> None:
    frame = encode_frame(b"S")
    framed.receive(frame[:-1] + bytes([frame[-1] ^ 0xFF]))
    assert framed.take(10, 0.05) == bytes([NAK])
    assert framed.host_messages == []


def test_nak_storm_fault(framed: VirtualReader) -> None:
    framed.apply_fault("nak_storm", count=2)
    for expected in (bytes([NAK]), bytes([NAK])):
        framed.receive(encode_frame(b"S"))
        assert framed.take(10, 0.05) == expected
    framed.receive(encode_frame(b"S"))
    assert messages(drain(framed)) == [b"SI"]


def test_bad_lrc_fault_corrupts_next_frames(framed: VirtualReader) -> None:
    framed.apply_fault("bad_lrc", count=1)
    framed.receive(encode_frame(b"S"))
    events = drain(framed)
    assert [type(e).__name__ for e in events] == ["Ack", "BadFrame"]
    framed.receive(bytes([NAK]))
    assert messages(drain(framed)) == [b"SI"]


def test_arm_expiry_sends_t(framed: VirtualReader) -> None:
    framed.receive(encode_frame(b"A20"))
    assert messages(drain(framed)) == [b"AK"]
    framed.receive(bytes([ACK]))
    assert framed.wait_until(lambda: not framed.armed, 2.0)
    assert messages(drain(framed)) == [b"T"]


def test_cancel_and_errors(framed: VirtualReader) -> None:
    framed.receive(encode_frame(b"A5000"))
    drain(framed)
    framed.receive(bytes([ACK]))
    framed.receive(encode_frame(b"C"))
    assert messages(drain(framed)) == [b"CK"] and not framed.armed
    framed.receive(bytes([ACK]))
    framed.receive(encode_frame(b"Q"))
    assert messages(drain(framed)) == [b"XU"]
    framed.receive(bytes([ACK]))
    framed.receive(encode_frame(b"Axyz"))
    assert messages(drain(framed)) == [b"XP"]


def test_auto_present_after_arm() -> None:
    sim = VirtualReader("framed", auto_present=True, auto_present_delay_s=0.01)
    sim.receive(encode_frame(b"A5000"))
    drain(sim)
    sim.receive(bytes([ACK]))
    assert sim.wait_until(lambda: sim.swipes_sent == 1, 2.0)
    assert messages(drain(sim))[0].startswith(b"D%B4111111111111111^")
    sim.close()


def test_unplug_disarms_and_stops_timers(framed: VirtualReader) -> None:
    framed.receive(encode_frame(b"A20"))
    framed.apply_fault("unplug")
    assert not framed.armed and not framed.plugged
    assert framed.take(10, 0.05) == b""
    framed.apply_fault("replug")
    framed.receive(encode_frame(b"S"))
    assert messages(drain(framed)) == [b"SI"]


def test_magtek_swipe_when_host_reads() -> None:
    sim = VirtualReader("magtek", esc=True)
    assert sim.take(100, 0.01) == b""
    sim.present_card(pan=MASTERCARD_TEST_PAN, tracks=(2,))
    data = sim.take(1000, 0.05)
    assert data.startswith(b"\x02\x1b;5555555555554444=") and data.endswith(b"\r\x03")
    (swipe,) = MagtekStreamParser().feed(data)
    card = decode_card(swipe, token_key=KEY)
    assert card.track_quality == {1: TrackQuality.MISSING, 2: TrackQuality.OK}
    sim.receive(b"ignored")  # no command channel


def test_magtek_unreadable_fault() -> None:
    sim = VirtualReader("magtek")
    sim.apply_fault("unreadable", tracks=[1, 2], count=1)
    sim.present_card()
    assert sim.take(100, 0.05) == b"\x02%E?;E?\r\x03"


@pytest.mark.parametrize("pan", [VISA_TEST_PAN, MASTERCARD_TEST_PAN])
def test_test_card_tracks_are_valid(pan: str) -> None:
    for lrc in (False, True):
        text = TestCard(pan=pan, with_lrc=lrc, tracks=(1, 2, 3)).track_text()
        (swipe,) = MagtekStreamParser(track_lrc=lrc).feed(b"\x02" + text + b"\x03")
        card = decode_card(swipe, token_key=KEY, lrc=lrc)
        assert card.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}
        assert swipe.track(3) is not None


def test_faults_validate_names_and_params(framed: VirtualReader) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        framed.apply_fault("paper_out")
    with pytest.raises(ValueError, match="tracks"):
        framed.apply_fault("unreadable", tracks="4")
    with pytest.raises(ValueError, match="protocol"):
        VirtualReader("serial")  # type: ignore[arg-type]


def test_clear_resets_reader_and_byte_faults(framed: VirtualReader) -> None:
    framed.apply_fault("nak_storm", count=5)
    framed.apply_fault("garbage", hex="ff")
    framed.apply_fault("clear")
    assert framed.reader_faults.nak_storm == 0 and framed.faults.garbage == b""


def test_state_dump_roundtrip() -> None:
    sim = VirtualReader("framed", esc=True, auto_present=True)
    sim.present_card(pan=MASTERCARD_TEST_PAN, expiry="2801", tracks=(2,))
    sim.apply_fault("unreadable", tracks="1", count=2)
    sim.apply_fault("nak_storm", count=3)
    sim.apply_fault("garbage", hex="a5a5", repeat=True)
    sim.apply_fault("no_card", on=False)
    dump = json.loads(json.dumps(sim.state_dump()))
    assert dump["kind"] == "reader" and dump["protocol"] == "framed"
    copy = VirtualReader.from_state(dump)
    assert copy.state_dump() == dump
    assert copy.cards[0].pan == MASTERCARD_TEST_PAN and copy.cards[0].tracks == (2,)
    assert copy.faults.garbage == b"\xa5\xa5" and copy.reader_faults.nak_storm == 3
    dump["plugged"] = False
    assert not VirtualReader.from_state(dump).plugged


@pytest.mark.parametrize(
    ("given", "expected"), [(1, (1,)), ("1+2", (1, 2)), ("2", (2,)), ([1, 3], (1, 3))]
)
def test_fault_params_from_text(
    framed: VirtualReader, given: object, expected: tuple[int, ...]
) -> None:
    framed.apply_fault("unreadable", tracks=given, count="2")
    assert framed.reader_faults.unreadable_tracks == expected
    assert framed.reader_faults.unreadable_swipes == 2
    framed.apply_fault("no_card", on="false")
    assert not framed.reader_faults.no_card
