"""Receipt model validation, code pages and the encoder's bytes."""

from __future__ import annotations

import pytest

from posedge.drivers.escpos.codepages import CodePage, decode_text, encode_text
from posedge.drivers.escpos.encoder import encode
from posedge.drivers.escpos.model import (
    HRI,
    Align,
    Barcode,
    BarcodeDataError,
    Cut,
    DrawerKick,
    Feed,
    QRCode,
    QRErrorCorrection,
    Receipt,
    ReceiptModelError,
    Symbology,
    Text,
    ean13_check_digit,
)

HEADER = {page: bytes([0x1B, 0x40, 0x1B, 0x74, page.number]) for page in CodePage}


# ---- code pages -------------------------------------------------------------
@pytest.mark.parametrize(
    ("page", "number", "text", "data"),
    [
        (CodePage.PC437, 0, "é ü ñ", b"\x82 \x81 \xa4"),
        (CodePage.PC850, 2, "é Ø ã", b"\x82 \x9d \xc6"),
        (CodePage.WPC1252, 16, "é € Ø", b"\xe9 \x80 \xd8"),
        (CodePage.PC858, 19, "é € Ø", b"\x82 \xd5 \x9d"),
    ],
)
def test_code_page_encoding(page: CodePage, number: int, text: str, data: bytes) -> None:
    assert page.number == number
    encoded = encode_text(text, page)
    assert encoded.data == data and encoded.replaced == ()
    assert decode_text(data, page) == text
    assert encode(Receipt([Text(text)]), page).data == HEADER[page] + data + b"\n"


@pytest.mark.parametrize(
    ("page", "missing"),
    [(CodePage.PC437, "€"), (CodePage.PC850, "€"), (CodePage.WPC1252, "☃"), (CodePage.PC858, "ı")],
)
def test_unprintable_character_is_replaced_visibly_and_counted(
    page: CodePage, missing: str
) -> None:
    encoded = encode(Receipt([Text(f"a{missing}b")]), page)
    assert encoded.data == HEADER[page] + b"a?b\n"
    assert encoded.replaced == (missing,) and encoded.replaced_count == 1


def test_control_characters_cannot_inject_commands() -> None:
    encoded = encode(Receipt([Text("x\x10\x04\x01\x1b@y\x7f")]), CodePage.PC437)
    assert encoded.data == HEADER[CodePage.PC437] + b"x???\x3f@y?\n"
    assert encoded.replaced_count == 5


def test_code_page_from_name() -> None:
    assert CodePage.from_name(" wpc1252 ") is CodePage.WPC1252
    assert CodePage.from_number(19) is CodePage.PC858
    assert CodePage.from_number(99) is None
    with pytest.raises(ValueError, match="PC437, PC850"):
        CodePage.from_name("latin9")


# ---- model validation ---------------------------------------------------------
def test_ean13_check_digit() -> None:
    assert ean13_check_digit("400638133393") == 1
    assert Barcode(Symbology.EAN13, "400638133393").data == "4006381333931"
    assert Barcode(Symbology.EAN13, "4006381333931").data == "4006381333931"


@pytest.mark.parametrize(
    ("symbology", "data", "message"),
    [
        (Symbology.EAN13, "4006381333932", "check digit is 2, expected 1"),
        (Symbology.EAN13, "40063813339", "12 or 13 digits"),
        (Symbology.EAN13, "40063813339x", "12 or 13 digits"),
        (Symbology.CODE128, "", "printable ASCII"),
        (Symbology.CODE128, "café", "cannot encode 'é'"),
        (Symbology.CODE128, "x" * 254, "too long"),
    ],
)
def test_bad_barcode_data_names_the_element(symbology: Symbology, data: str, message: str) -> None:
    with pytest.raises(BarcodeDataError, match=message) as info:
        Barcode(symbology, data)
    assert f"Barcode({symbology.value}" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Text("a\nb"),
        lambda: Text("a", width=9),
        lambda: Text("a", height=0),
        lambda: QRCode(""),
        lambda: QRCode("x", module_size=17),
        lambda: Feed(256),
        lambda: Cut(feed_units=-1),
        lambda: DrawerKick(pin=3),
        lambda: DrawerKick(pulse_ms=101),
        lambda: Barcode(Symbology.CODE128, "x", module_width=7),
        lambda: Receipt(["not an element"]),  # type: ignore[list-item]
    ],
)
def test_invalid_elements_raise_model_errors(build: object) -> None:
    with pytest.raises(ReceiptModelError):
        build()  # type: ignore[operator]


# ---- encoder bytes ------------------------------------------------------------
def body(receipt: Receipt, page: CodePage = CodePage.PC437) -> str:
    return encode(receipt, page).data[len(HEADER[page]) :].hex(" ")


def test_job_starts_with_init_and_code_page() -> None:
    assert encode(Receipt(), CodePage.WPC1252).data == bytes.fromhex("1b40 1b74 10")


def test_text_styles_sent_only_on_change() -> None:
    receipt = Receipt(
        [
            Text("A", bold=True, underline=True, width=2, height=3, align=Align.RIGHT),
            Text("B", bold=True, underline=True, width=2, height=3, align=Align.RIGHT),
            Text("C"),
        ]
    )
    assert body(receipt) == (
        "1b 61 02 1b 45 01 1b 2d 01 1d 21 12 41 0a 42 0a 1b 61 00 1b 45 00 1b 2d 00 1d 21 00 43 0a"
    )


def test_barcodes() -> None:
    code128 = Barcode(Symbology.CODE128, "A{1", height_dots=50, module_width=2, hri=HRI.ABOVE)
    assert body(Receipt([code128])) == "1d 68 32 1d 77 02 1d 48 01 1d 6b 49 06 7b 42 41 7b 7b 31"
    ean = Barcode(Symbology.EAN13, "400638133393")
    assert body(Receipt([ean])).endswith("1d 6b 43 0d " + b"4006381333931".hex(" "))


def test_qr_code() -> None:
    qr = QRCode("hé", module_size=4, ecc=QRErrorCorrection.H)
    assert body(Receipt([qr])) == (
        "1d 28 6b 04 00 31 41 32 00 1d 28 6b 03 00 31 43 04 1d 28 6b 03 00 31 45 33 "
        "1d 28 6b 06 00 31 50 30 68 c3 a9 1d 28 6b 03 00 31 51 30"
    )


def test_feed_cut_drawer() -> None:
    receipt = Receipt([Feed(4), Cut(), Cut(partial=True, feed_units=3), DrawerKick(5, 100)])
    assert body(receipt) == "1b 64 04 1d 56 41 00 1d 56 42 03 1b 70 01 32 64"


def test_counts_in_encoded_receipt() -> None:
    receipt = Receipt().text("a").text("b").add(QRCode("q")).add(Cut())
    encoded = encode(receipt)
    assert (encoded.lines, encoded.barcodes, encoded.cuts) == (2, 1, 1)
    assert encoded.code_page is CodePage.PC858


def test_plain_text_shows_what_prints() -> None:
    receipt = Receipt([Text("Prix: 5 €"), Feed(1), Barcode(Symbology.CODE128, "X1"), Cut()])
    assert receipt.plain_text(CodePage.PC437) == "Prix: 5 ?\n\n[CODE128 X1]\n--- cut ---"
    assert receipt.plain_text() == "Prix: 5 €\n\n[CODE128 X1]\n--- cut ---"
