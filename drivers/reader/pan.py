"""Primary account number facts: Luhn, card network by prefix, masking.

Pure functions, no I/O. Never log or store a full PAN; :func:`mask_pan` keeps
at most the first 6 and last 4 digits (PCI DSS 3.4).
"""

from __future__ import annotations

# (brand, low prefix, high prefix) over the first len(low) digits; first match wins.
_NETWORK_RANGES: tuple[tuple[str, str, str], ...] = (
    ("amex", "34", "34"),
    ("amex", "37", "37"),
    ("diners", "300", "305"),
    ("diners", "36", "36"),
    ("diners", "38", "39"),
    ("jcb", "3528", "3589"),
    ("visa", "4", "4"),
    ("mastercard", "51", "55"),
    ("mastercard", "2221", "2720"),
    ("discover", "6011", "6011"),
    ("discover", "644", "649"),
    ("discover", "65", "65"),
    ("unionpay", "62", "62"),
    ("maestro", "50", "50"),
    ("maestro", "56", "58"),
    ("maestro", "6", "6"),
)

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
MASK_KEEP_FIRST = 6
MASK_KEEP_LAST = 4


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn check."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card network for a PAN's prefix, or None if it matches no network."""
    for brand, low, high in _NETWORK_RANGES:
        head = digits[: len(low)]
        if len(head) == len(low) and low <= head <= high:
            return brand
    return None


def looks_like_pan(digits: str) -> bool:
    """13–19 digits, Luhn-valid, with a card-network prefix."""
    return (
        PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS
        and luhn_ok(digits)
        and card_brand(digits) is not None
    )


def mask_pan(digits: str) -> str:
    """``4111111111111111`` → ``411111******1111``; shorter numbers keep less."""
    keep_first = min(MASK_KEEP_FIRST, max(0, len(digits) - MASK_KEEP_LAST - 1))
    keep_last = min(MASK_KEEP_LAST, max(0, len(digits) - keep_first - 1))
    hidden = len(digits) - keep_first - keep_last
    return digits[:keep_first] + "*" * hidden + digits[len(digits) - keep_last :]
