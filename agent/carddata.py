"""Guards that keep card data (PAN, track data, CVV, PIN) out of storage and logs.

:func:`find_card_data` inspects a JSON-like value and reports where sensitive
card data sits; :func:`ensure_no_card_data` raises :class:`CardDataRejected`.
The journal applies it to every payload; the till API applies the same check
to request bodies up front. :func:`redact` masks PAN-like digit runs in free
text (log lines). Nothing here ever echoes the data it found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from posedge.drivers.reader.pan import (
    MASK_KEEP_FIRST,
    MASK_KEEP_LAST,
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    looks_like_pan,
    mask_pan,
)

from .errors import PosedgeError

# Field names (normalised: lower case, no "_", "-" or spaces) that may never be stored.
FORBIDDEN_FIELDS = frozenset(
    {
        "track", "tracks", "trackdata", "track1", "track2", "track3", "rawtrack",
        "magstripe", "magneticstripe", "equivalenttrack2", "track2equivalent",
        "cvv", "cvv2", "cvc", "cvc2", "cvn", "cid", "csc", "securitycode",
        "cardverificationvalue", "cardsecuritycode",
        "pin", "pinblock", "encryptedpin", "pincode",
    }
)  # fmt: skip
# Field names that hold a PAN and must be masked to first 6 / last 4 at most.
PAN_FIELDS = frozenset(
    {"pan", "cardnumber", "accountnumber", "primaryaccountnumber", "maskedpan", "number"}
)

# A candidate card number: 13 or more digits, optionally separated by single spaces
# or dashes, standing on its own — not glued to letters or digits, so the digits
# inside hex digests, tokens and UUIDs are not mistaken for card numbers.
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,}(?![0-9A-Za-z])")
_SEPARATOR = re.compile(r"[ -]")
# Cheap pre-filter with no look-around: can a 13-digit run exist in the text at all?
_DIGIT_RUN_QUICK = re.compile(r"[0-9](?:[ -]?[0-9]){12}")
_MASKED_PAN = re.compile(rf"^(\d{{0,{MASK_KEEP_FIRST}}})[*Xx#•]+(\d{{0,{MASK_KEEP_LAST}}})$")


class CardDataRejected(PosedgeError):
    """A value carries card data that must never be stored or logged."""

    exit_code = 2

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        detail = "; ".join(f"{f.path}: {f.reason}" for f in findings)
        super().__init__(
            f"refused: sensitive card data ({detail}); send only masked PAN "
            f"(first {MASK_KEEP_FIRST} and last {MASK_KEEP_LAST} digits), brand and token"
        )


@dataclass(frozen=True)
class Finding:
    path: str
    """Where the data sits, as ``$.field[2].name``."""
    reason: str


_NAME_NOISE = str.maketrans("", "", " _-\t")


def _normalise(name: str) -> str:
    return name.translate(_NAME_NOISE).lower()


# Type tuples built once: ``isinstance(v, list | tuple)`` builds a union per call.
_SEQUENCES = (list, tuple)
_BYTES = (bytes, bytearray)
_SCALARS = frozenset({int, float, bool, type(None)})
_DELETE_DIGITS = str.maketrans("", "", "0123456789")


def _suspect(value: Any) -> bool:
    """Cheap pre-check: could ``value`` hold card data at all? (The hot path.)"""
    if isinstance(value, str):
        # A card number needs PAN_MIN_DIGITS digits: counting them (one C pass)
        # spares the regex for long texts with few digits.
        return (
            len(value) >= PAN_MIN_DIGITS
            and len(value) - len(value.translate(_DELETE_DIGITS)) >= PAN_MIN_DIGITS
            and _DIGIT_RUN_QUICK.search(value) is not None
        )
    if type(value) in _SCALARS:  # numbers and null: most values, answered in one lookup
        return False
    if isinstance(value, dict):
        for key, item in value.items():
            if (key not in _PLAIN_KEYS and _suspect_key(key)) or _suspect(item):
                return True
        return False
    if isinstance(value, _SEQUENCES):
        return any(_suspect(item) for item in value)
    return isinstance(value, _BYTES)


# Field names already seen to be neither card-data names nor card numbers: the
# journal checks the same few dozen names on every append.
_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS_MAX = 1024


def _suspect_key(key: Any) -> bool:
    name = _normalise(str(key))
    if name in FORBIDDEN_FIELDS or name in PAN_FIELDS or _suspect(key):
        return True
    if isinstance(key, str) and len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX:
        _PLAIN_KEYS.add(key)
    return False


def _has_pan(text: str) -> bool:
    if len(text) < PAN_MIN_DIGITS or _DIGIT_RUN.search(text) is None:
        return False
    return any(True for _ in _pan_runs(text))


def _pan_runs(text: str) -> Iterator[str]:
    for match in _DIGIT_RUN.finditer(text):
        run = match.group()
        groups = _SEPARATOR.split(run)
        if len(groups) == 1 or (len(set(_SEPARATOR.findall(run))) == 1 and _card_grouping(groups)):
            yield from _pans_in_digits("".join(groups))
        else:  # separators that do not group a card number split the run instead
            for group in groups:
                yield from _pans_in_digits(group)


def _card_grouping(groups: list[str]) -> bool:
    """How card numbers are written: 4-4-4-4(-3), 4-4-4-1..4, 4-6-5 (Amex), 4-6-4 (Diners)."""
    lengths = [len(group) for group in groups]
    if lengths in ([4, 6, 5], [4, 6, 4]):
        return True
    fours = all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4
    return fours or lengths == [4, 4, 4, 4, 3]


def _pans_in_digits(digits: str) -> Iterator[str]:
    """A PAN is the whole run, or leads a longer one (PAN followed by expiry, ...)."""
    if PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
        if looks_like_pan(digits):
            yield digits
    elif len(digits) > PAN_MAX_DIGITS:
        for length in range(PAN_MAX_DIGITS, PAN_MIN_DIGITS - 1, -1):
            if looks_like_pan(digits[:length]):
                yield digits[:length]
                return


def _check_pan_field(path: str, value: Any) -> Iterator[Finding]:
    if value is None:
        return
    if not isinstance(value, str):
        yield Finding(path, "a PAN field must be a masked string such as 411111******1111")
        return
    compact = re.sub(r"[ -]", "", value)
    if not compact:
        return
    if not _MASKED_PAN.match(compact):
        yield Finding(
            path,
            f"PAN field shows more than the first {MASK_KEEP_FIRST} and last "
            f"{MASK_KEEP_LAST} digits",
        )


def find_card_data(value: Any, path: str = "$") -> list[Finding]:
    """Every place in ``value`` that holds card data, in document order."""
    if not _suspect(value):
        return []
    return list(_walk(value, path))


def _walk(value: Any, path: str) -> Iterator[Finding]:
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            child = f"{path}.{key_text}"
            if _has_pan(key_text):
                yield Finding(f"{path}.<key>", "a field name contains a card number")
            name = _normalise(key_text)
            if name in FORBIDDEN_FIELDS:
                if item not in (None, "", b""):
                    yield Finding(child, "track data, CVV and PIN may never be stored")
                continue
            if name in PAN_FIELDS:
                yield from _check_pan_field(child, item)
                if isinstance(item, str):
                    continue
            yield from _walk(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    elif isinstance(value, str):
        if _has_pan(value):
            yield Finding(path, "text contains a full card number")
    elif isinstance(value, bytes | bytearray):
        yield Finding(path, "raw bytes may not be stored; card data could hide in them")


def ensure_no_card_data(value: Any) -> None:
    """Raise :class:`CardDataRejected` if ``value`` carries card data."""
    findings = find_card_data(value)
    if findings:
        raise CardDataRejected(findings)


def redact(text: str) -> str:
    """Mask every PAN-like digit run in free text (for log lines)."""

    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group())
        return mask_pan(digits) if _has_pan(digits) else match.group()

    return _DIGIT_RUN.sub(replace, text)
