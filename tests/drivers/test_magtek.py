"""The MagTek-style raw swipe stream parser."""

from __future__ import annotations

import contextlib
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.drivers.reader.magtek import MAX_SWIPE_BYTES, MagtekStreamParser, encode_swipe
from posedge.drivers.reader.sensitive import SensitiveTracks
from posedge.drivers.reader.tracks import (
    CardUnreadable,
    TrackQuality,
    decode_card,
    encode_track1,
    encode_track2,
)

VISA = "4111111111111111"
KEY = b"k" * 32
T1 = encode_track1(VISA, "DOE/JOHN", "2912", "101", "0000")
T2 = encode_track2(VISA, "2912", "101", "0000")
T3 = b"+0123456789?"


def test_full_stream_with_esc_and_track3() -> None:
    swipes = MagtekStreamParser().feed(encode_swipe(T1 + T2 + T3, esc=True))
    assert len(swipes) == 1
    swipe = swipes[0]
    assert (swipe.track(1), swipe.track(2), swipe.track(3)) == (T1, T2, T3)
    card = decode_card(swipe, token_key=KEY, today=date(2026, 1, 1))
    assert card.masked_pan == "411111******1111"


def test_split_byte_by_byte_with_garbage_between_swipes() -> None:
    wire = b"\xff\x00\xa5" + encode_swipe(T1 + T2) + b"\x00noise\x03" + encode_swipe(b"%E?;E?")
    parser = MagtekStreamParser()
    swipes: list[SensitiveTracks] = []
    for byte in wire:
        swipes += parser.feed(bytes([byte]))
    assert len(swipes) == 2
    assert swipes[0].track(2) == T2
    assert swipes[1].track(1) == b"%E?"


def test_unreadable_tracks_reported() -> None:
    (swipe,) = MagtekStreamParser().feed(encode_swipe(b"%E?;E?"))
    try:
        decode_card(swipe, token_key=KEY)
    except CardUnreadable as exc:
        assert exc.track_quality == {1: TrackQuality.UNREADABLE, 2: TrackQuality.UNREADABLE}
    else:
        raise AssertionError("unreadable swipe decoded")


def test_bare_stream_without_stx_etx_ends_at_cr() -> None:
    (swipe,) = MagtekStreamParser().feed(b"junk" + encode_swipe(T1 + T2, stx_etx=False))
    assert swipe.present() == (1, 2)


def test_stx_restarts_a_partial_swipe() -> None:
    parser = MagtekStreamParser()
    swipes = parser.feed(b"\x02%B4111" + encode_swipe(T2))
    assert len(swipes) == 1 and swipes[0].present() == (2,)


def test_oversize_swipe_dropped_and_buffer_wiped() -> None:
    parser = MagtekStreamParser()
    assert parser.feed(b"\x02" + b"1" * (MAX_SWIPE_BYTES + 10) + b"\x03") == []
    assert not parser.in_swipe
    assert parser.feed(encode_swipe(T2))[0].track(2) == T2


def test_reset_and_in_swipe() -> None:
    parser = MagtekStreamParser()
    parser.feed(b"\x02%B41")
    assert parser.in_swipe
    parser.reset()
    assert not parser.in_swipe


def test_track_lrc_mode() -> None:
    t1 = encode_track1(VISA, "DOE/JOHN", "2912", "101", lrc=True)
    t2 = encode_track2(VISA, "2912", "101", lrc=True)
    (swipe,) = MagtekStreamParser(track_lrc=True).feed(encode_swipe(t1 + t2))
    card = decode_card(swipe, token_key=KEY, lrc=True)
    assert card.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 16), st.booleans())
def test_fuzz_any_bytes_give_swipes_or_typed_errors(data: bytes, chunk: int, lrc: bool) -> None:
    parser = MagtekStreamParser(track_lrc=lrc)
    for offset in range(0, len(data), chunk):
        for swipe in parser.feed(data[offset : offset + chunk]):
            assert isinstance(swipe, SensitiveTracks)
            with contextlib.suppress(CardUnreadable):
                decode_card(swipe, token_key=KEY, lrc=lrc).wipe()


ALPHABET = st.sampled_from([*list(b"\x02\x03\x1b\r%;+?^=EB0123456789/ DOE"), 255])


@settings(max_examples=500, deadline=None)
@given(st.lists(ALPHABET, max_size=200).map(bytes), st.booleans())
def test_fuzz_stream_like_bytes(data: bytes, lrc: bool) -> None:
    for swipe in MagtekStreamParser(track_lrc=lrc).feed(data):
        with contextlib.suppress(CardUnreadable):
            decode_card(swipe, token_key=KEY, lrc=lrc)
