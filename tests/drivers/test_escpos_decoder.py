"""The ESC/POS decoder: inverse of the encoder, incremental, never crashes on junk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.escpos.decoder import Control, EscPosDecoder, Item, Unknown, decode
from posedge.drivers.escpos.encoder import encode
from posedge.drivers.escpos.model import (
    HRI,
    Align,
    Barcode,
    Cut,
    DrawerKick,
    Feed,
    QRCode,
    QRErrorCorrection,
    Receipt,
    Symbology,
    Text,
)

from .printer_fixtures import sample_receipt

FULL = Receipt(
    [
        Text("Café crème", bold=True, align=Align.CENTER),
        Text("BIG", width=3, height=2, underline=True),
        Text(""),
        Feed(2),
        Barcode(Symbology.CODE128, "A{B}1", height_dots=60, module_width=2, hri=HRI.BOTH),
        Barcode(Symbology.EAN13, "400638133393"),
        QRCode("https://x.test/é", module_size=8, ecc=QRErrorCorrection.Q),
        DrawerKick(5, 120),
        Text("right", align=Align.RIGHT),
        Cut(partial=True, feed_units=4),
    ]
)


@pytest.mark.parametrize("page", list(CodePage))
def test_decode_is_the_inverse_of_encode(page: CodePage) -> None:
    elements, unknown = decode(encode(FULL, page).data)
    assert unknown == []
    assert elements == FULL.elements


def test_decode_reports_replaced_character_as_printed() -> None:
    receipt = Receipt([Text("5 € ☃")])
    elements, _ = decode(encode(receipt, CodePage.WPC1252).data)
    assert elements == [Text("5 € ?")]


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Item]:
    decoder = EscPosDecoder()
    items: list[Item] = []
    start = 0
    for cut in sorted(set(cuts)):
        items += decoder.feed(data[start:cut])
        start = cut
    return items + decoder.feed(data[start:]) + decoder.finish()


def test_byte_by_byte_equals_one_shot() -> None:
    data = encode(FULL).data
    whole = feed_in_pieces(data, [])
    assert feed_in_pieces(data, list(range(len(data)))) == whole


def test_controls_are_reported() -> None:
    decoder = EscPosDecoder()
    items = decoder.feed(bytes.fromhex("1b40 1b7413 1d7201 1d610f"))
    assert items == [
        Control("init"),
        Control("code_page", (19,)),
        Control("transmit_status", (1,)),
        Control("auto_status_back", (15,)),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("1b99", "not supported"),
        ("09", "control byte 0x09"),
        ("1b7463", "code page 99"),
        ("1d21ff", "out of range"),
        ("1d210f", "outside 1..8"),
        ("1b2d05", "underline"),
        ("1d6b43024142", "EAN13 data not understood"),
        ("1d6b430d" + b"4006381333932".hex(), "check digit"),
        ("1d6b4903414243", "CODE128 data not understood"),
        ("1d286b0300315130", "without stored data"),
        ("1d286b0300304100", "only QR store"),
        ("1b700000ff", "zero pulse"),
        ("1b", "truncated"),
    ],
)
def test_unknown_bytes_are_reported_with_a_reason(data: str, reason: str) -> None:
    elements, unknown = decode(bytes.fromhex(data))
    assert elements == []
    assert len(unknown) == 1 and reason in unknown[0].reason
    assert unknown[0].data == bytes.fromhex(data)[: len(unknown[0].data)]


def test_unsupported_length_prefixed_commands_are_skipped_whole() -> None:
    # GS ( L with a 4-byte body, then GS k function A (UPC-A, NUL-terminated), then text.
    data = bytes.fromhex("1d284c0400 30313233") + b"\x1dk\x00012345678905\x00" + b"ok\n"
    elements, unknown = decode(data)
    assert elements == [Text("ok")]
    assert [len(u.data) for u in unknown] == [9, 16]


def test_text_without_line_feed_is_flushed_by_cut_and_finish() -> None:
    assert decode(b"abc\x1dVA\x00")[0] == [Text("abc"), Cut(feed_units=0)]
    assert decode(b"tail")[0] == [Text("tail")]


def test_init_resets_styles() -> None:
    elements, _ = decode(b"\x1bE\x01\x1b@x\n")
    assert elements == [Text("x")]


# ---- property-based fuzzing -------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    _, unknown = decode(data)
    assert all(isinstance(u, Unknown) and u.data for u in unknown)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120), st.lists(st.integers(0, 120), max_size=8))
def test_decoding_does_not_depend_on_how_bytes_were_split(data: bytes, cuts: list[int]) -> None:
    assert feed_in_pieces(data, cuts) == feed_in_pieces(data, [])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_unknown_command_inside_random_text_is_reported(noise: bytes) -> None:
    clean = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in noise)
    _, unknown = decode(clean + b"\x1b\x99" + clean)
    assert [u.data for u in unknown] == [b"\x1b\x99"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(codec="latin-1", min_codepoint=0x20), max_size=30),
        max_size=10,
    ),
    st.sampled_from(list(CodePage)),
)
def test_text_round_trip_matches_plain_text(lines: list[str], page: CodePage) -> None:
    receipt = Receipt([Text(line) for line in lines])
    elements, unknown = decode(encode(receipt, page).data)
    assert unknown == []
    assert Receipt(elements).plain_text() == receipt.plain_text(page)


def test_sample_receipt_decodes_cleanly() -> None:
    elements, unknown = decode(encode(sample_receipt(3)).data)
    assert unknown == [] and elements == sample_receipt(3).elements
