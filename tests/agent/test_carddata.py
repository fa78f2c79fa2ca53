"""Card data guards: what is refused, what passes, and log redaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posedge.agent.carddata import CardDataRejected, ensure_no_card_data, find_card_data, redact


@pytest.mark.parametrize(
    "value",
    [
        {"masked_pan": "411111******1111"},
        {"pan": "************4444"},
        {"pan": "4111 11** **** 1111"},
        {"amount": 4111111111111111},  # a number field is not text; amounts are ints
        {"reference": "order 1234567890123"},  # 13 digits, fails Luhn / no network
        {"reference": "4111111111111112"},  # network prefix but Luhn fails
        {"track2": None, "cvv": ""},  # empty sensitive fields carry nothing
        {"text": "replaced print head"},
        {"digest": "9f86d081884c7d659a2feaa0c55ad015a4111111111111111b0b822cd15d6c15b"},
        {"key": "12345678-4111-1111-1111-111111111111"},  # UUID grouping, not a card's
        {"mixed": "4111 1111-1111 1111"},  # inconsistent separators split the run
    ],
)
def test_allowed(value: dict[str, object]) -> None:
    assert find_card_data(value) == []


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"pan": "4111111111111111"}, "$.pan"),
        ({"card_number": "4111111*11111111"}, "$.card_number"),
        ({"Track1": "%B4111111111111111^DOE/J^2912101?"}, "$.Track1"),
        ({"CVV2": "123"}, "$.CVV2"),
        ({"pin": "1234"}, "$.pin"),
        ({"memo": "pan 5555-5555-5555-4444"}, "$.memo"),
        ({"memo": "378282246310005"}, "$.memo"),  # amex, 15 digits
        ({"lines": ["ok", {"x": "4111 1111 1111 1111"}]}, "$.lines[1].x"),
        ({"x": "pan=4111111111111111"}, "$.x"),
        ({"x": "4111111111111111291210100000"}, "$.x"),  # PAN leading a longer run
        ({"x": "3782 822463 10005"}, "$.x"),  # Amex 4-6-5 grouping
        ({"x": "id_4111111111111111"}, "$.x"),  # underscore is not a letter
    ],
)
def test_refused_with_the_place(value: dict[str, object], path: str) -> None:
    findings = find_card_data(value)
    assert [f.path for f in findings] == [path]
    with pytest.raises(CardDataRejected) as info:
        ensure_no_card_data(value)
    message = str(info.value)
    assert path in message
    assert "4111111111111111" not in message and "5555" not in message


def test_redact_masks_pans_in_free_text() -> None:
    line = "auth for 4111111111111111 and 5555 5555 5555 4444 order 123456"
    out = redact(line)
    assert "4111111111111111" not in out and "5555 5555 5555 4444" not in out
    assert "411111******1111" in out and "555555******4444" in out
    assert out.endswith("order 123456")


@given(st.text(max_size=200))
def test_redacted_text_never_holds_a_pan(text: str) -> None:
    assert find_card_data({"t": redact(text)}) == []
