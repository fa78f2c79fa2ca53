"""STX message ETX LRC framing, the message table, and the examples in docs/reader-protocol.md."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.drivers.errors import ProtocolError
from posedge.drivers.reader import commands
from posedge.drivers.reader.framing import (
    ACK,
    ETX,
    MAX_MESSAGE_BYTES,
    NAK,
    STX,
    Ack,
    BadFrame,
    Frame,
    FrameDecoder,
    LrcRule,
    Nak,
    decode_frames,
    encode_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "reader-protocol.md"
RULES = {"default": LrcRule(), "stx": LrcRule(include_stx=True), "7f": LrcRule(seed=0x7F)}
printable = st.binary(min_size=1, max_size=80).map(lambda b: bytes(0x20 + (c % 0x5F) for c in b))


def doc_examples() -> list[tuple[str, bytes, str, bytes]]:
    rows = []
    pattern = re.compile(r"^\| (ex-[\w-]+) \| `([^`]*)` \| (\w+) \| `([0-9a-f ]+)` \|$")
    for line in DOC.read_text("utf-8").splitlines():
        match = pattern.match(line)
        if match:
            name, message, rule, frame = match.groups()
            rows.append((name, message.encode("ascii"), rule, bytes.fromhex(frame)))
    return rows


def test_doc_has_examples() -> None:
    assert len(doc_examples()) >= 10


@pytest.mark.parametrize(("name", "message", "rule", "frame"), doc_examples())
def test_doc_example_matches_encoder_and_decoder(
    name: str, message: bytes, rule: str, frame: bytes
) -> None:
    assert encode_frame(message, RULES[rule]) == frame, name
    assert decode_frames(frame, RULES[rule]) == [message]


def test_doc_timeout_defaults_match_code() -> None:
    from posedge.drivers.reader import framed_link

    text = DOC.read_text("utf-8")
    assert f"| inter-byte | {framed_link.INTER_BYTE_TIMEOUT_S} s |" in text
    assert f"| ACK | {framed_link.ACK_TIMEOUT_S} s |" in text
    assert f"| response | {framed_link.RESPONSE_TIMEOUT_S} s |" in text
    assert f"At most **{framed_link.MAX_RETRANSMISSIONS} repetitions**" in text


def test_doc_lists_every_message_letter() -> None:
    text = DOC.read_text("utf-8")
    for spec in commands.MESSAGES:
        assert f"| `{spec.letter}" in text, spec


def test_lrc_rules() -> None:
    assert LrcRule().compute(b"S") == 0x53 ^ ETX
    assert LrcRule(include_etx=False).compute(b"S") == 0x53
    assert LrcRule(include_stx=True, include_etx=False).compute(b"S") == 0x53 ^ STX
    assert LrcRule(seed=0x7F).compute(b"S") == 0x7F ^ 0x53 ^ ETX
    with pytest.raises(ValueError):
        LrcRule(seed=0x100)


@pytest.mark.parametrize("message", [b"", b"A\x03", b"\x02", b"x" * (MAX_MESSAGE_BYTES + 1)])
def test_encoder_refuses_unframeable_messages(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        encode_frame(message)


def test_ack_nak_and_noise_between_frames() -> None:
    decoder = FrameDecoder()
    events = decoder.feed(b"\xff\x00" + bytes([ACK]) + b"junk" + encode_frame(b"SI") + bytes([NAK]))
    assert [type(e) for e in events] == [Ack, Frame, Nak]
    assert isinstance(events[1], Frame) and bytes(events[1].message) == b"SI"
    assert decoder.noise_bytes == 6


def test_frame_split_across_feeds_byte_by_byte() -> None:
    decoder = FrameDecoder()
    frame = encode_frame(b"A30000")
    out = []
    for i, byte in enumerate(frame):
        out += decoder.feed(bytes([byte]))
        assert decoder.in_frame == (i < len(frame) - 1)
    assert len(out) == 1 and isinstance(out[0], Frame)


def test_bad_lrc_gives_bad_frame_then_decoder_recovers() -> None:
    frame = encode_frame(b"SI")
    corrupt = frame[:-1] + bytes([frame[-1] ^ 1])
    events = FrameDecoder().feed(corrupt + frame)
    assert isinstance(events[0], BadFrame) and events[0].reason == "LRC mismatch"
    assert isinstance(events[1], Frame)
    with pytest.raises(ProtocolError, match="LRC"):
        decode_frames(corrupt)


def test_lrc_byte_equal_to_stx_or_etx_is_fine() -> None:
    for rule in (LrcRule(seed=s) for s in range(256)):
        frame = encode_frame(b"SA", rule)
        if frame[-1] in (STX, ETX):
            assert decode_frames(frame + frame, rule) == [b"SA", b"SA"]


def test_stx_inside_frame_restarts_it() -> None:
    events = FrameDecoder().feed(b"\x02SOMETHING" + encode_frame(b"T"))
    assert len(events) == 1 and isinstance(events[0], Frame) and events[0].message == b"T"


def test_control_byte_inside_message_is_bad_frame() -> None:
    message = b"S\x06I"
    frame = bytes([STX]) + message + bytes([ETX, LrcRule().compute(message)])
    events = FrameDecoder().feed(frame)
    assert len(events) == 1 and isinstance(events[0], BadFrame)


def test_overlong_message_is_bad_frame() -> None:
    message = b"D" + b"1" * MAX_MESSAGE_BYTES
    frame = bytes([STX]) + message + bytes([ETX, LrcRule().compute(message)])
    events = FrameDecoder().feed(frame)
    assert len(events) == 1 and isinstance(events[0], BadFrame)


def test_reset_drops_partial_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"SI")[:2])
    decoder.reset()
    assert not decoder.in_frame
    assert decoder.feed(encode_frame(b"SA"))[0] == Frame(bytearray(b"SA"))


def test_frame_repr_hides_message() -> None:
    frame = Frame(bytearray(b"D;4111111111111111=2912101?"))
    assert "4111" not in repr(frame)
    frame.wipe()
    assert not any(frame.message)


def test_commands_roundtrip() -> None:
    assert commands.arm(30000) == b"A30000"
    assert commands.parse_arm(b"A30000") == 30000
    for bad in (b"A", b"A0", b"A1234567", b"Axx"):
        with pytest.raises(ProtocolError):
            commands.parse_arm(bad)
    with pytest.raises(ValueError):
        commands.arm(0)
    assert commands.parse_status_reply(b"SA") is commands.ReaderState.ARMED
    for bad in (b"S", b"SZ", b"XA"):
        with pytest.raises(ProtocolError):
            commands.parse_status_reply(bad)
    assert commands.parse_error_reply(b"XF") is commands.ErrorCode.FAULT
    assert commands.parse_error_reply(b"SI") is None
    with pytest.raises(ProtocolError):
        commands.parse_error_reply(b"XQ")


# ---- fuzzing ------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(RULES.values())), st.integers(1, 7))
def test_fuzz_decoder_any_bytes_typed_events_only(data: bytes, rule: LrcRule, chunk: int) -> None:
    decoder = FrameDecoder(rule)
    for offset in range(0, len(data), chunk):
        for event in decoder.feed(data[offset : offset + chunk]):
            assert isinstance(event, Ack | Nak | Frame | BadFrame)
            if isinstance(event, Frame):
                assert rule.compute(event.message) == encode_frame(event.message, rule)[-1]
    with contextlib.suppress(ProtocolError):
        decode_frames(data, rule)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(printable, min_size=1, max_size=5),
    st.lists(st.binary(max_size=6).filter(lambda b: 2 not in b), min_size=6, max_size=6),
    st.integers(1, 9),
)
def test_fuzz_frames_with_noise_between_and_any_split(
    messages: list[bytes], noise: list[bytes], chunk: int
) -> None:
    wire = b"".join(n + encode_frame(m) for n, m in zip(noise, messages, strict=False))
    decoder = FrameDecoder()
    got = []
    for offset in range(0, len(wire), chunk):
        got += [
            bytes(e.message)
            for e in decoder.feed(wire[offset : offset + chunk])
            if isinstance(e, Frame)
        ]
    assert got == messages
