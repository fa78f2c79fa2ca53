"""ISO 7813 track parsing: validation, CardRead contents, sensitive data hygiene."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import pickle
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.drivers.errors import TrackDataError
from posedge.drivers.reader.sensitive import SensitiveDataWiped, SensitiveTracks
from posedge.drivers.reader.service_code import parse_service_code
from posedge.drivers.reader.tracks import (
    CardUnreadable,
    TrackError,
    TrackQuality,
    decode_card,
    encode_track1,
    encode_track2,
    lrc_ascii,
    parity_char,
    parse_track1,
    parse_track2,
    split_tracks,
    track_lrc,
)

VISA = "4111111111111111"
MC = "5555555555554444"
KEY = b"k" * 32
TODAY = date(2026, 11, 26)


def card_tracks(
    pan: str = VISA, expiry: str = "2912", svc: str = "101", lrc: bool = False
) -> SensitiveTracks:
    return SensitiveTracks(
        encode_track1(pan, "DOE/JOHN", expiry, svc, "0000", lrc=lrc),
        encode_track2(pan, expiry, svc, "0000", lrc=lrc),
    )


def decode(tracks: SensitiveTracks, **kw: object) -> object:
    return decode_card(tracks, token_key=KEY, today=TODAY, **kw)  # type: ignore[arg-type]


# ---- LRC ---------------------------------------------------------------------
def test_lrc_worked_example_from_reference() -> None:
    # % A T 3 ? → 05 21 34 13 1F → XOR 0x1C; three ones: odd already, parity bit 0.
    assert track_lrc(1, b"%AT3?") == 0x1C
    assert parity_char(0x1C, 6) == 0x1C
    assert lrc_ascii(1, b"%AT3?") == ord("<")


def test_parity_bit_set_when_ones_even() -> None:
    assert parity_char(0b000011, 6) == 0b1000011
    assert parity_char(0b0000, 4) == 0b10000


def test_track_lrc_roundtrip_and_corruption_detected() -> None:
    good = encode_track2(VISA, "2912", "101", lrc=True)
    parse_track2(good, lrc=True)
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    with pytest.raises(TrackError) as err:
        parse_track2(bad, lrc=True)
    assert err.value.quality is TrackQuality.BAD_LRC and err.value.track == 2


# ---- CardRead ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pan", "masked", "brand"),
    [(VISA, "411111******1111", "visa"), (MC, "555555******4444", "mastercard")],
)
def test_good_card_fields(pan: str, masked: str, brand: str) -> None:
    with decode(card_tracks(pan)) as card:  # type: ignore[attr-defined]
        assert card.masked_pan == masked
        assert card.brand == brand
        assert (card.expiry, card.expiry_year, card.expiry_month) == ("2912", 2029, 12)
        assert not card.expired
        assert card.service_code.code == "101" and not card.chip_card
        assert card.has_cardholder_name
        assert card.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}
        expected = hmac.new(KEY, pan.encode(), hashlib.sha256).hexdigest()
        assert card.pan_token == expected
        assert card.sensitive.pan == pan
        assert card.sensitive.cardholder_name == "DOE/JOHN"


def test_repr_and_str_never_show_pan_track_or_name() -> None:
    tracks = card_tracks()
    card = decode(tracks)
    for text in (repr(card), str(card), repr(tracks), str(tracks), str(card.summary())):  # type: ignore[attr-defined]
        assert VISA not in text
        assert "DOE" not in text
        assert "2912101" not in text
        assert "%B" not in text and ";4111" not in text


def test_wipe_zeroes_every_buffer_and_access_raises() -> None:
    tracks = card_tracks()
    card = decode(tracks)
    buffers = tracks.raw_buffers()
    assert any(any(buf) for buf in buffers)
    with card:  # type: ignore[attr-defined]
        pass
    assert tracks.wiped
    assert all(not any(buf) for buf in buffers)
    for access in (lambda: tracks.pan, lambda: tracks.track(1), lambda: tracks.cardholder_name):
        with pytest.raises(SensitiveDataWiped):
            access()
    assert "4111" not in str(SensitiveDataWiped())


def test_sensitive_tracks_refuse_pickle_and_copy() -> None:
    tracks = card_tracks()
    with pytest.raises(TypeError):
        pickle.dumps(tracks)
    with pytest.raises(TypeError):
        copy.copy(tracks)


def test_context_manager_wipes_on_error() -> None:
    tracks = card_tracks()
    with pytest.raises(RuntimeError), tracks:
        raise RuntimeError("boom")
    assert tracks.wiped


def test_track2_only_card_reads_and_has_no_name() -> None:
    card = decode(SensitiveTracks(None, encode_track2(VISA, "2912", "101")))
    assert card.track_quality == {1: TrackQuality.MISSING, 2: TrackQuality.OK}  # type: ignore[attr-defined]
    assert not card.has_cardholder_name  # type: ignore[attr-defined]


def test_track1_only_card_reads() -> None:
    card = decode(SensitiveTracks(encode_track1(MC, "A/B", "2801", "201"), None))
    assert card.masked_pan == "555555******4444"  # type: ignore[attr-defined]
    assert card.chip_card  # type: ignore[attr-defined]


def test_blank_name_counts_as_absent() -> None:
    card = decode(SensitiveTracks(encode_track1(VISA, " /", "2912", "101"), None))
    assert not card.has_cardholder_name  # type: ignore[attr-defined]


# ---- expiry ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expiry", "today", "expired"),
    [
        ("2611", date(2026, 11, 30), False),  # valid through the end of the month
        ("2610", date(2026, 11, 1), True),
        ("2701", date(2026, 12, 31), False),
        ("2512", date(2026, 1, 1), True),
    ],
)
def test_expiry_relative_to_today(expiry: str, today: date, expired: bool) -> None:
    card = decode_card(card_tracks(expiry=expiry), token_key=KEY, today=today)
    assert card.expired is expired


@pytest.mark.parametrize("expiry", ["2900", "2913", "29AB"])
def test_bad_expiry_month_is_bad_format(expiry: str) -> None:
    raw = f"%B{VISA}^DOE/J^{expiry}101?".encode()
    with pytest.raises(TrackError) as err:
        parse_track1(raw)
    assert err.value.quality is TrackQuality.BAD_FORMAT


# ---- service code -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "chip", "interchange"),
    [
        ("101", False, "international"),
        ("201", True, "international"),
        ("601", True, "national"),
        ("501", False, "national"),
        ("999", False, "test"),
        ("301", False, "reserved"),
    ],
)
def test_service_code_meaning(code: str, chip: bool, interchange: str) -> None:
    svc = parse_service_code(code)
    assert (svc.chip, svc.interchange) == (chip, interchange)


def test_service_code_digits_detail() -> None:
    svc = parse_service_code("226")
    assert (svc.authorization, svc.services, svc.pin) == (
        "by_issuer",
        "no_restrictions",
        "if_ped_present",
    )
    with pytest.raises(TrackDataError):
        parse_service_code("1A1")


def test_service_code_not_digits_is_bad_format() -> None:
    with pytest.raises(TrackError) as err:
        parse_track1(f"%B{VISA}^DOE/J^29121X1?".encode())
    assert err.value.quality is TrackQuality.BAD_FORMAT


# ---- validation failures, each with track and reason -------------------------------
BAD_TRACKS = [
    (1, f"B{VISA}^DOE/J^2912101?", TrackQuality.NO_START_SENTINEL),
    (1, f"%B{VISA}^DOE/J^2912101", TrackQuality.NO_END_SENTINEL),
    (1, f"%A{VISA}^DOE/J^2912101?", TrackQuality.BAD_FORMAT),
    (1, f"%B{VISA}^DOE/J2912101?", TrackQuality.BAD_FORMAT),
    (1, f"%B{VISA}^D^2912101?", TrackQuality.BAD_FORMAT),
    (1, f"%B{VISA}^{'X' * 27}^2912101?", TrackQuality.BAD_FORMAT),
    (1, f"%B{VISA}^doe/j^2912101?", TrackQuality.BAD_CHARACTER),
    (1, "%B4111111111111112^DOE/J^2912101?", TrackQuality.BAD_PAN),
    (1, "%B411111111111^DOE/J^2912101?", TrackQuality.BAD_PAN),
    (1, "%E?", TrackQuality.UNREADABLE),
    (1, f"%B{VISA}^DOE/J^2912101" + "0" * 60 + "?", TrackQuality.BAD_FORMAT),
    (2, f"{VISA}=2912101?", TrackQuality.NO_START_SENTINEL),
    (2, f";{VISA}=2912101", TrackQuality.NO_END_SENTINEL),
    (2, f";{VISA}2912101?", TrackQuality.BAD_FORMAT),
    (2, f";{VISA}=29=12101?", TrackQuality.BAD_FORMAT),
    (2, f";{VISA}=2912101:?", TrackQuality.BAD_CHARACTER),
    (2, f";{VISA}=2912A01?", TrackQuality.BAD_CHARACTER),
    (2, ";4111111111111112=2912101?", TrackQuality.BAD_PAN),
    (2, f";{VISA}=2912101{'0' * 20}?", TrackQuality.BAD_FORMAT),
    (2, ";E?", TrackQuality.UNREADABLE),
    (2, f";{VISA}=291210?", TrackQuality.BAD_FORMAT),
]


@pytest.mark.parametrize(("track", "raw", "quality"), BAD_TRACKS)
def test_bad_track_gives_typed_error_without_card_data(
    track: int, raw: str, quality: TrackQuality
) -> None:
    parse = parse_track1 if track == 1 else parse_track2
    with pytest.raises(TrackError) as err:
        parse(raw.encode())
    assert err.value.track == track
    assert err.value.quality is quality, err.value.reason
    assert isinstance(err.value, TrackDataError)
    message = str(err.value)
    assert f"track {track}" in message
    assert "4111" not in message and "DOE" not in message


def test_lrc_demanded_but_absent() -> None:
    with pytest.raises(TrackError):
        parse_track2(encode_track2(VISA, "2912", "101"), lrc=True)
    with pytest.raises(TrackError):
        parse_track2(encode_track2(VISA, "2912", "101", lrc=True), lrc=False)


def test_pan_mismatch_between_tracks_is_unreadable_card() -> None:
    tracks = SensitiveTracks(
        encode_track1(VISA, "DOE/J", "2912", "101"), encode_track2(MC, "2912", "101")
    )
    with pytest.raises(CardUnreadable) as err:
        decode(tracks)
    assert "PAN differs" in str(err.value)
    assert "4111" not in str(err.value) and "5555" not in str(err.value)


def test_expiry_mismatch_between_tracks() -> None:
    tracks = SensitiveTracks(
        encode_track1(VISA, "DOE/J", "2912", "101"), encode_track2(VISA, "2911", "101")
    )
    with pytest.raises(CardUnreadable, match="expiry"):
        decode(tracks)


def test_all_unreadable_is_card_unreadable_with_per_track_reasons() -> None:
    with pytest.raises(CardUnreadable) as err:
        decode(split_tracks(b"%E?;E?"))
    assert err.value.track_quality == {1: TrackQuality.UNREADABLE, 2: TrackQuality.UNREADABLE}
    assert err.value.unreadable
    assert "track 1" in str(err.value) and "track 2" in str(err.value)


def test_one_good_track_is_enough_and_bad_one_reported() -> None:
    tracks = split_tracks(b"%E?" + encode_track2(VISA, "2912", "101"))
    card = decode(tracks)
    assert card.track_quality[1] is TrackQuality.UNREADABLE  # type: ignore[attr-defined]


def test_token_key_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        decode_card(card_tracks(), token_key=b"short", today=TODAY)


# ---- splitting a reader's text into tracks ---------------------------------------
def test_split_with_lrc_characters_that_look_like_sentinels() -> None:
    # This track 1's LRC character is ';' (track 2's start sentinel) and track 2's is '?'.
    t1 = encode_track1(VISA, "AB/C", "2912", "101", "1", lrc=True)
    assert t1[-1:] == b";"
    t2 = encode_track2(VISA, "2912", "101", lrc=True)
    tracks = split_tracks(t1 + t2, lrc=True)
    assert tracks.track(1) == t1 and tracks.track(2) == t2
    assert decode(tracks, lrc=True).track_quality[1] is TrackQuality.OK  # type: ignore[attr-defined]


def test_split_attributes_sentinel_less_track2() -> None:
    tracks = split_tracks(f"{VISA}=2912101?".encode())
    assert tracks.present() == (2,)
    with pytest.raises(CardUnreadable) as err:
        decode(tracks)
    assert err.value.track_quality[2] is TrackQuality.NO_START_SENTINEL


# ---- fuzzing -------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([None, True, False]))
def test_fuzz_track_parsers_raise_only_track_errors(raw: bytes, lrc: bool | None) -> None:
    for parse in (parse_track1, parse_track2):
        with contextlib.suppress(TrackError):
            parse(raw, lrc=lrc)


TRACK_ALPHABET = st.sampled_from([*list(b"%;+?^=EB0123456789/ ADOE:<>"), 0, 127, 255])


@settings(max_examples=400, deadline=None)
@given(st.lists(TRACK_ALPHABET, max_size=100).map(bytes), st.booleans())
def test_fuzz_decode_card_gives_card_or_card_unreadable(raw: bytes, lrc: bool) -> None:
    tracks = split_tracks(raw, lrc=lrc)
    try:
        card = decode_card(tracks, token_key=KEY, today=TODAY, lrc=lrc)
    except CardUnreadable as exc:
        assert set(exc.track_quality) == {1, 2}
        return
    assert card.track_quality[1] is TrackQuality.OK or card.track_quality[2] is TrackQuality.OK


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([VISA, MC, "378282246310005", "6011111111111117"]),
    st.from_regex(r"[A-Z]{1,10}/[A-Z]{1,10}", fullmatch=True),
    st.integers(0, 99),
    st.integers(1, 12),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.from_regex(r"[0-9]{0,8}", fullmatch=True),
    st.booleans(),
)
def test_fuzz_encoded_cards_roundtrip(
    pan: str, name: str, yy: int, mm: int, svc: str, disc: str, lrc: bool
) -> None:
    expiry = f"{yy:02d}{mm:02d}"
    text = encode_track1(pan, name, expiry, svc, disc, lrc=lrc) + encode_track2(
        pan, expiry, svc, disc, lrc=lrc
    )
    card = decode_card(split_tracks(text, lrc=lrc), token_key=KEY, today=TODAY, lrc=lrc)
    assert card.expiry == expiry and card.service_code.code == svc
    assert card.sensitive.pan == pan and card.sensitive.cardholder_name == name
    assert pan not in repr(card)
