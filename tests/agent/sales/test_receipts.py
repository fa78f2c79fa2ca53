"""Sale receipts: marks per state, copies, no full PAN, and a round trip through ESC/POS."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from posedge.agent.carddata import find_card_data
from posedge.agent.sales.model import SaleState, SaleView
from posedge.agent.sales.receipts import build_receipt
from posedge.drivers.escpos.decoder import decode_receipt
from posedge.drivers.escpos.encoder import encode
from posedge.drivers.escpos.model import Barcode, Cut, Receipt, Symbology, Text
from posedge.simulator.printer import VirtualPrinter

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
SALE = SaleView(
    id="01HZSALE0001",
    state=SaleState.APPROVED,
    amount=1234,
    currency="EUR",
    reference="till-7/0042",
    online="prefer",
    created_at="2024-05-01T12:00:00+00:00",
    updated_at="2024-05-01T12:00:02+00:00",
    masked_pan="411111******1111",
    brand="visa",
    entry_mode="swipe",
    auth_code="A1B2C3",
)


def text_of(sale: SaleView, copy: str = "customer", **kw: object) -> str:
    receipt = build_receipt(
        sale,
        copy,  # type: ignore[arg-type]
        merchant_name="posedge demo shop",
        columns=42,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )
    return receipt.plain_text()


def lines_of(receipt: Receipt) -> dict[str, Text]:
    return {e.text.strip(): e for e in receipt.elements if isinstance(e, Text)}


def test_approved_customer_copy_layout() -> None:
    receipt = build_receipt(SALE, "customer", merchant_name="posedge demo shop", columns=42)
    text = receipt.plain_text()
    lines = lines_of(receipt)
    title = lines["posedge demo shop"]
    assert title.bold and title.width == 2 and title.height == 2
    for expected in (
        "2024-05-01 12:00:00 UTC",
        "01HZSALE0001",
        "till-7/0042",
        "EUR 12.34",
        "APPROVED",
        "411111******1111",
        "VISA",
        "SWIPE",
        "A1B2C3",
        "CUSTOMER COPY",
    ):
        assert expected in text, expected
    assert "OFFLINE" not in text and "REPRINT" not in text and "signature" not in text
    assert all(len(e.text) * e.width <= 42 for e in receipt.elements if isinstance(e, Text))
    assert Barcode(Symbology.CODE128, SALE.id, height_dots=60) in receipt.elements
    assert isinstance(receipt.elements[-1], Cut)


@pytest.mark.parametrize(
    ("state", "label"),
    [
        (SaleState.APPROVED, "APPROVED"),
        (SaleState.APPROVED_OFFLINE, "APPROVED"),
        (SaleState.DECLINED, "DECLINED"),
        (SaleState.VOIDED, "VOIDED"),
        (SaleState.REVERSED, "REVERSED"),
        (SaleState.CANCELLED, "CANCELLED"),
        (SaleState.ABANDONED, "ABANDONED"),
        (SaleState.IN_DOUBT, "OUTCOME UNKNOWN"),
        (SaleState.AUTHORIZING, "NOT COMPLETED"),
    ],
)
def test_each_state_renders_its_outcome_and_offline_mark_only_when_offline(
    state: SaleState, label: str
) -> None:
    sale = replace(SALE, state=state, offline=state is SaleState.APPROVED_OFFLINE)
    receipt = build_receipt(sale, "merchant", merchant_name="shop", columns=42)
    lines = lines_of(receipt)
    assert lines[label].bold and lines[label].width == 2
    offline = "OFFLINE" in lines
    assert offline == (state is SaleState.APPROVED_OFFLINE)
    if offline:
        assert lines["OFFLINE"].bold and lines["OFFLINE"].height == 2
        assert "Approved offline - will be forwarded" in lines
        assert "Cardholder signature" in lines  # merchant copy of an offline sale
    else:
        assert "Cardholder signature" not in lines


def test_declined_shows_reason() -> None:
    sale = replace(
        SALE, state=SaleState.DECLINED, auth_code=None, decline_reason="insufficient funds"
    )
    text = text_of(sale)
    assert "DECLINED" in text and "Reason: insufficient funds" in text


def test_reprint_mark_and_time() -> None:
    text = text_of(SALE, reprint=True)
    assert "*** REPRINT ***" in text
    assert "Reprinted" in text and "2024-05-01 12:30:00 UTC" in text


def test_copy_labels_and_signature_rules() -> None:
    fallback = replace(SALE, entry_mode="fallback")
    assert "MERCHANT COPY" in text_of(fallback, "merchant")
    assert "Cardholder signature" in text_of(fallback, "merchant")
    assert "Cardholder signature" not in text_of(fallback, "customer")
    assert "SWIPE (CHIP FALLBACK)" in text_of(fallback)
    declined_fallback = replace(fallback, state=SaleState.DECLINED)
    assert "Cardholder signature" not in text_of(declined_fallback, "merchant")
    assert "Cardholder signature" not in text_of(SALE, "merchant")


def test_forward_outcome_is_shown() -> None:
    sale = replace(SALE, state=SaleState.APPROVED_OFFLINE, forward_state="declined")
    assert "Forwarded: DECLINED" in text_of(sale, "merchant")


def test_jpy_has_no_decimals() -> None:
    assert "JPY 500" in text_of(replace(SALE, amount=500, currency="JPY"))


def test_never_a_full_pan() -> None:
    # A till reference or a bad masked PAN that carries a full card number.
    sale = replace(
        SALE,
        reference="4111111111111111",
        masked_pan="5555555555554444",
        decline_reason="card 4111 1111 1111 1111 refused",
        state=SaleState.DECLINED,
    )
    for copy in ("customer", "merchant"):
        text = text_of(sale, copy)
        assert find_card_data(text) == []
        assert "4111111111111111" not in text and "5555555555554444" not in text
        assert "411111******1111" in text


def test_narrow_paper_and_long_fields_fit() -> None:
    sale = replace(SALE, reference="R" * 80, id="S" * 40)
    receipt = build_receipt(sale, "merchant", merchant_name="A very long merchant name", columns=32)
    assert all(len(e.text) * e.width <= 32 for e in receipt.elements if isinstance(e, Text))
    assert "R" * 32 in receipt.plain_text()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="copy"):
        build_receipt(SALE, "shop", merchant_name="m", columns=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns"):
        build_receipt(SALE, "customer", merchant_name="m", columns=10)


@pytest.mark.parametrize("state", [SaleState.APPROVED_OFFLINE, SaleState.DECLINED])
def test_round_trip_through_escpos(state: SaleState) -> None:
    sale = replace(SALE, state=state, decline_reason="Do not honour")
    receipt = build_receipt(sale, "merchant", merchant_name="Café Zürich", columns=42, now=NOW)
    data = encode(receipt).data
    assert decode_receipt(data).plain_text() == receipt.plain_text()
    printer = VirtualPrinter()
    printer.on_bytes(data)
    assert printer.unknown == []
    assert printer.receipts[-1].plain_text() == receipt.plain_text()
    assert printer.receipts[-1].elements == receipt.elements
