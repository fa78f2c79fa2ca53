"""Card data guards: what is refused, what passes, and log redaction."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from posedge.agent.carddata import CardDataRejected, ensure_no_card_data, find_card_data, redact
from posedge.drivers.reader.pan import looks_like_pan


@pytest.mark.parametrize(
    "value",
    [
        {"masked_pan": "411111******1111"},
        {"pan": "************4444"},
        {"pan": "4111 11** **** 1111"},
        {"ts_ms": 1715000000000},  # epoch milliseconds: 13 digits, no network prefix
        {"bytes_free": 4222222222222},  # 13 Luhn-valid digits, but not under a card name
        {"amount": 10**15},  # 16 digits, no network prefix
        {"reference": "order 1234567890123"},  # 13 digits, fails Luhn / no network
        {"reference": "4111111111111112"},  # network prefix but Luhn fails
        {"track2": None, "cvv": ""},  # empty sensitive fields carry nothing
        {"text": "replaced print head"},
        {"digest": "9f86d081884c7d659a2feaa0c55ad015a4111111111111111b0b822cd15d6c15b"},
        {"key": "12345678-4111-1111-1111-111111111111"},  # UUID grouping, not a card's
        {"sha1": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"},
        {"upper": "9F86D081884C7D659A2FEAA0C55AD015A4111111111111111B0B822CD15D6C15B"},
        {"hex": "0x9f86d081884c7d659a2feaa0c55ad015a4111111111111111b0b822cd15d6c15b"},
        {"when": "2026-03-01T12:30:45.123456+00:00"},
        {"order": "order 4111111111111112 x"},  # glued or not, Luhn fails
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
        ({"x": "order4111111111111111"}, "$.x"),  # glued to letters
        ({"x": "REF4111111111111111X"}, "$.x"),
        ({"x": "４１１１１１１１１１１１１１１１"}, "$.x"),  # full-width digits
        ({"x": "٤١١١ ١١١١ ١١١١ ١١١١"}, "$.x"),  # Arabic-Indic digits
        ({"x": "4111 1111-1111 1111"}, "$.x"),  # mixed separators
        ({"x": "4111.1111/1111_1111"}, "$.x"),
        ({"x": "4111  1111  1111  1111"}, "$.x"),  # doubled spaces
        ({"x": "4111\u00a01111\u20091111\u30001111"}, "$.x"),  # no-break, thin, ideographic
        ({"x": "card\n5555\n5555\n5555\n4444"}, "$.x"),
        ({"x": "ab12 4111 1111 1111 1111 12/29"}, "$.x"),  # grouped card amid other digits
        ({"x": "cafe4111111111111111"}, "$.x"),  # hex letters, but a short word
        ({"reference": 4111111111111111}, "$.reference"),  # a JSON number, 16 digits
        ({"card_id": 4222222222222}, "$.card_id"),  # 13 digits under a card name
        ({"cards": [1, 378282246310005]}, "$.cards[1]"),
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


# ---- properties: every way of writing a card number is caught ---------------------------
# The zero of every Unicode decimal digit system (Nd digits come in runs of 0-9).
ZEROS = tuple(
    chr(c)
    for c in range(0x1FC00)
    if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0
)
# (network prefix, length) pairs of real card numbers, Visa 13 to Maestro 19.
PREFIXES = [
    ("4", 13), ("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("36", 14), ("300", 14), ("6011", 16), ("6011", 19), ("65", 16),
    ("62", 17), ("3528", 16), ("50", 18),
]  # fmt: skip
LETTERS = st.characters(categories=("Lu", "Ll", "Lo"))
# One character that is neither a letter nor a digit, or two spaces of any kind.
SEPARATORS = st.one_of(
    st.characters(exclude_categories=("L", "N", "Cs")),
    st.sampled_from(["  ", "\t ", "\u00a0\u00a0", "\u3000 "]),
)


def check_digit(body: str) -> str:
    """The Luhn check digit that completes ``body``."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str(-total % 10)


@st.composite
def card_numbers(draw: st.DrawFn, *, valid: bool = True) -> str:
    prefix, length = draw(st.sampled_from(PREFIXES))
    body = prefix + draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                                 max_size=length - len(prefix) - 1))  # fmt: skip
    check = check_digit(body)
    if not valid:
        check = draw(st.sampled_from([d for d in "0123456789" if d != check]))
    return body + check


def groupings(length: int) -> list[list[int]]:
    """How a number of ``length`` digits is written: in one piece, in fours, Amex/Diners."""
    fours = [4] * (length // 4) + ([length % 4] if length % 4 else [])
    shapes = [[length], fours]
    shapes += {15: [[4, 6, 5]], 14: [[4, 6, 4]], 13: [[4, 4, 5]]}.get(length, [])
    return shapes


@st.composite
def written(draw: st.DrawFn, digits: str, *, grouped: bool = True) -> str:
    """``digits`` in mixed digit systems, grouped with any separators, glued to letters."""
    shape = draw(st.sampled_from(groupings(len(digits)) if grouped else [[len(digits)]]))
    chars = [chr(ord(draw(st.sampled_from(ZEROS))) + int(d)) for d in digits]
    parts, at = [], 0
    for size in shape:
        if at:
            parts.append(draw(SEPARATORS))
        parts.append("".join(chars[at : at + size]))
        at += size
    before = draw(st.text(LETTERS, max_size=6))
    after = draw(st.text(LETTERS, max_size=6))
    return before + "".join(parts) + after


@st.composite
def written_card_numbers(draw: st.DrawFn) -> str:
    return draw(written(draw(card_numbers())))


@given(written_card_numbers())
@example("order4111111111111111")
@example("４１１１\u3000１１１１\u3000１１１１\u3000１１１１")
@example("٥٥٥٥-٥٥٥٥-٥٥٥٥-٤٤٤٤")
@example("3782.822463.10005")
def test_every_writing_of_a_card_number_is_refused(text: str) -> None:
    findings = find_card_data({"reference": text, "note": f"paid with {text}, thanks"})
    assert [f.path for f in findings] == ["$.reference", "$.note"]
    for finding in findings:
        assert text not in finding.reason
    masked = redact(f"swiped {text} at the till")
    assert find_card_data({"log": masked}) == []


@st.composite
def luhn_failing_runs(draw: st.DrawFn) -> str:
    digits = draw(card_numbers(valid=False))
    # grouped only where no shorter grouping inside is itself a card number
    return draw(written(digits, grouped=len(digits) in (13, 16)))


@given(
    st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: u.hex),
        st.binary().map(lambda b: hashlib.sha256(b).hexdigest()),
        st.binary().map(lambda b: hashlib.sha1(b).hexdigest()),
        st.binary().map(lambda b: "0x" + hashlib.sha256(b).hexdigest().upper()),
        st.binary(min_size=16).map(
            lambda k: hmac.new(k, b"4111111111111111", hashlib.sha256).hexdigest()
        ),
        luhn_failing_runs(),
        st.sampled_from("1789").flatmap(  # long order numbers: no card network starts so
            lambda first: st.text("0123456789", min_size=19, max_size=40).map(
                lambda rest: f"order {first}{rest}"
            )
        ),
    )
)
@example("9f86d081884c7d659a2feaa0c55ad015a4111111111111111b0b822cd15d6c15b")
@example("12345678-4111-1111-1111-111111111111")
@example("order 4111111111111112")
def test_ids_digests_and_luhn_failing_numbers_pass(text: str) -> None:
    assert find_card_data({"reference": f"ref {text} ok", "id": text}) == []
    assert redact(text) == text


@given(st.integers(min_value=0, max_value=10**19 - 1))
@example(4111111111111111)
@example(4222222222222)  # 13 digits: a card number only under a card name
@example(1715000000000)  # epoch milliseconds
def test_numbers_are_card_numbers_only_when_they_look_like_one(number: int) -> None:
    digits = str(number)
    pan_like = 13 <= len(digits) <= 19 and looks_like_pan(digits)
    assert bool(find_card_data({"value": number})) == (pan_like and len(digits) >= 15)
    assert bool(find_card_data({"card": number})) == pan_like
    assert bool(find_card_data({"value": digits})) == pan_like  # as text, in one piece
