"""Status bytes: DLE EOT, GS r and ASB decoding/encoding, reply classification, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posedge.drivers.errors import ProtocolError
from posedge.drivers.escpos.status import (
    PrinterStatus,
    ReplyKind,
    classify_reply,
    decode_asb,
    decode_paper_sensor,
    decode_realtime,
    encode_asb,
    encode_paper_sensor,
    encode_realtime,
)

ALL_CLEAR = [0x12, 0x12, 0x12, 0x12]


def test_all_clear_is_ready() -> None:
    status = decode_realtime(ALL_CLEAR)
    assert status == PrinterStatus()
    assert status.ready and status.faults == [] and status.warnings == []


@pytest.mark.parametrize(
    ("replies", "field", "faults"),
    [
        ([0x1A, 0x12, 0x12, 0x12], "online", ["offline"]),
        ([0x16, 0x12, 0x12, 0x12], "drawer_open", []),
        ([0x32, 0x12, 0x12, 0x12], "waiting_online_recovery", []),
        ([0x52, 0x12, 0x12, 0x12], "feed_button", []),
        ([0x1A, 0x16, 0x12, 0x12], "cover_open", ["cover_open"]),
        ([0x1A, 0x32, 0x12, 0x12], "paper_stopped", ["paper_end"]),
        ([0x1A, 0x52, 0x12, 0x12], "error", ["error"]),
        ([0x12, 0x1A, 0x12, 0x12], "paper_feeding", []),
        ([0x1A, 0x52, 0x16, 0x12], "recoverable_error", ["recoverable_error"]),
        ([0x1A, 0x52, 0x1A, 0x12], "cutter_error", ["cutter_error"]),
        ([0x1A, 0x52, 0x32, 0x12], "unrecoverable_error", ["unrecoverable_error"]),
        ([0x1A, 0x52, 0x52, 0x12], "auto_recoverable_error", ["auto_recoverable_error"]),
        ([0x12, 0x12, 0x12, 0x1E], "paper_near_end", []),
        ([0x1A, 0x32, 0x12, 0x7E], "paper_end", ["paper_end"]),
    ],
)
def test_each_status_bit(replies: list[int], field: str, faults: list[str]) -> None:
    status = decode_realtime(replies)
    expected = field != "online"
    assert getattr(status, field) is expected
    assert status.faults == faults
    assert status.ready is (faults == [] and status.online)
    assert [encode_realtime(status, n) for n in (1, 2, 3, 4)] == replies


def test_near_end_is_a_warning_not_a_fault() -> None:
    status = decode_realtime([0x12, 0x12, 0x12, 0x1E])
    assert status.ready and status.warnings == ["paper_near_end"]


@pytest.mark.parametrize("bad", [0x00, 0x13, 0x92, 0x10, 0x02, 0xFF, 0x11])
def test_invalid_realtime_byte_is_protocol_error_never_online(bad: int) -> None:
    with pytest.raises(ProtocolError, match="does not match 0xx1xx10"):
        decode_realtime([bad, 0x12, 0x12, 0x12], url="sim://printer")


def test_wrong_reply_count() -> None:
    with pytest.raises(ProtocolError, match="need 4"):
        decode_realtime([0x12])


def test_as_dict_round_trip() -> None:
    status = PrinterStatus(online=False, cover_open=True, paper_near_end=True)
    raw = status.as_dict()
    assert raw["faults"] == ["cover_open"] and raw["ready"] is False
    assert PrinterStatus.from_dict(raw) == status
    with pytest.raises(ValueError, match="bogus"):
        PrinterStatus.from_dict({"bogus": True})


@pytest.mark.parametrize(
    ("byte", "kind"),
    [
        (0x12, ReplyKind.REALTIME),
        (0x7E, ReplyKind.REALTIME),
        (0x10, ReplyKind.ASB_FIRST),
        (0x00, ReplyKind.TRANSMIT),
        (0x0C, ReplyKind.TRANSMIT),
        (0x11, ReplyKind.XON),
        (0x13, ReplyKind.XOFF),
        (0x80, ReplyKind.INVALID),
        (0x15, ReplyKind.INVALID),
    ],
)
def test_classify_reply(byte: int, kind: ReplyKind) -> None:
    assert classify_reply(byte) is kind


def test_paper_sensor_gs_r() -> None:
    assert decode_paper_sensor(0x00) == decode_paper_sensor(0x60)
    sensor = decode_paper_sensor(0x0F)
    assert sensor.near_end and sensor.end
    assert encode_paper_sensor(PrinterStatus(paper_near_end=True)) == 0x03
    with pytest.raises(ProtocolError, match="0xx0xxxx"):
        decode_paper_sensor(0x12)


def test_asb_round_trip_and_pattern() -> None:
    status = PrinterStatus(online=False, cover_open=True, cutter_error=True, paper_near_end=True)
    data = encode_asb(status)
    assert data == bytes((0x38, 0x08, 0x03, 0x00))
    assert decode_asb(data) == status
    with pytest.raises(ProtocolError, match="4 bytes"):
        decode_asb(data[:3])
    with pytest.raises(ProtocolError, match="does not match"):
        decode_asb(b"\x12\x00\x00\x00")


# ---- property-based fuzzing -------------------------------------------------
@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_any_four_bytes_decode_or_raise_protocol_error(replies: list[int]) -> None:
    valid = all(b & 0x93 == 0x12 for b in replies)
    try:
        status = decode_realtime(replies)
    except ProtocolError:
        assert not valid
        return
    assert valid
    assert isinstance(status.ready, bool)


@given(st.binary(min_size=0, max_size=6))
def test_any_asb_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        decode_asb(data)
    except ProtocolError:
        return


VALID_RT = st.sets(st.sampled_from([2, 3, 5, 6])).map(lambda bits: 0x12 | sum(1 << b for b in bits))


@given(
    st.tuples(
        VALID_RT,
        VALID_RT,
        VALID_RT,
        st.sampled_from([0x12, 0x1E, 0x72, 0x7E]),
    )
)
def test_valid_bytes_survive_decode_then_encode(replies: tuple[int, int, int, int]) -> None:
    status = decode_realtime(list(replies))
    # n=2 bit 6 ("error occurred") is derived from the specific errors on encode.
    encoded = [encode_realtime(status, n) for n in (1, 2, 3, 4)]
    assert encoded[0] == replies[0] and encoded[2:] == list(replies[2:])
    assert encoded[1] & ~0x40 == replies[1] & ~0x40
    assert decode_realtime(encoded).faults == status.faults
