"""Guards that keep card data (PAN, track data, CVV, PIN) out of storage and logs.

:func:`find_card_data` inspects a JSON-like value and reports where sensitive
card data sits; :func:`ensure_no_card_data` raises :class:`CardDataRejected`.
The journal applies it to every payload; the till API applies the same check
to request bodies up front. :func:`redact` masks PAN-like digit runs in free
text (log lines). Nothing here ever echoes the data it found.

What counts as a card number in text (docs/card-data.md has the reasons):

- 13-19 digits that pass Luhn and start with a card network's prefix
  (:func:`~posedge.drivers.reader.pan.looks_like_pan`), written in any Unicode
  decimal digits, mixed freely (``４１１１…``, ``٤١١١…``);
- either in one piece, possibly glued to letters (``order4111111111111111``)
  or leading a longer digit run (PAN followed by expiry), or in groups as
  cards are written (4-4-4-4, 4-6-5, …) with any one character that is not a
  letter or digit, or two spaces, between groups (``4111.1111/1111 1111``);
- except inside a hex word of 32 or more characters with a letter among them
  (digests, tokens, 128-bit ids, optionally ``0x``) or a UUID, standing alone.

An integer (a JSON number) of 15-19 digits that looks like a PAN is refused
anywhere; one of 13 or 14 digits only under a field name that speaks of a card
(``card``, ``pan``, ``acct``, ``account``), because epoch-millisecond times
and byte counts have 13 digits.

The hot path (:func:`_suspect`) answers most values without a regex: ASCII
text with fewer than 13 digits, small numbers and known field names.
"""

from __future__ import annotations

import re
import unicodedata
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
# Parts of a field name that make a 13 or 14 digit integer under it a card number.
CARD_NAME_PARTS = ("pan", "card", "acct", "account")

# A candidate card number in text: 13 or more decimal digits (any script; ``\d`` is
# Unicode), between each two at most one separator: one character that is neither a
# letter nor a digit (``[\W_]``), or two whitespace characters.
_DIGIT_RUN = re.compile(r"\d(?:(?:\s\s|[\W_])?\d){12,}")
_DIGIT_GROUP = re.compile(r"\d+")
# Cheap pre-filter (no look-around, one factored prefix): a card number in a run is 13
# digits in one piece or opens with a group of four followed by a separator and another
# four (every card grouping does). Timestamps and hex digests rarely get past it.
_PAN_HINT = re.compile(r"\d{4}(?:\d{9}|[\W_]\d{4}|\s\s\d{4})")
_PAN_HINT_ASCII = re.compile(r"[0-9]{4}(?:[0-9]{9}|[^0-9A-Za-z][0-9]{4}|\s\s[0-9]{4})")
# Identifiers whose digits are never card numbers: a UUID, or a hex word of 32+ characters
# with at least one letter (SHA-1/SHA-256 digests, PAN tokens, 128-bit ids, optional 0x);
# either standing alone: not glued to another letter or digit.
_ID_WORD = (
    r"(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|(?:0[xX])?(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{32,})"
)
_HEX_ID = re.compile(rf"(?<![^\W_]){_ID_WORD}(?![^\W_])")
_WHOLE_ID = re.compile(_ID_WORD)  # fullmatch: the value is one id (a token, a digest)
_MASKED_PAN = re.compile(rf"^(\d{{0,{MASK_KEEP_FIRST}}})[*Xx#•]+(\d{{0,{MASK_KEEP_LAST}}})$")
# The smallest integer with PAN_MIN_DIGITS digits, and with 15 (card numbers anywhere).
_INT_PAN_MIN: int = 10 ** (PAN_MIN_DIGITS - 1)
_INT_ANYWHERE_DIGITS = 15


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
_SCALARS = frozenset({float, bool, type(None)})
_DELETE_DIGITS = str.maketrans("", "", "0123456789")


def _suspect(value: Any) -> bool:
    """Cheap pre-check: could ``value`` hold card data at all? (The hot path.)"""
    if isinstance(value, str):
        return _may_hold_pan(value)
    kind = type(value)
    if kind is int:  # a card number as a JSON number has at least 13 digits
        number: int = value
        return number >= _INT_PAN_MIN or number <= -_INT_PAN_MIN
    if kind in _SCALARS:  # floats, booleans and null: answered in one lookup
        return False
    if isinstance(value, dict):
        for key, item in value.items():
            if (key not in _PLAIN_KEYS and _suspect_key(key)) or _suspect(item):
                return True
        return False
    if isinstance(value, _SEQUENCES):
        return any(_suspect(item) for item in value)
    return isinstance(value, _BYTES)


def _may_hold_pan(text: str) -> bool:
    if len(text) < PAN_MIN_DIGITS:
        return False
    if text.isascii():  # O(1) in CPython
        # A card number needs PAN_MIN_DIGITS digits: counting them (one C pass)
        # spares the regex for long texts with few digits.
        return (
            len(text) - len(text.translate(_DELETE_DIGITS)) >= PAN_MIN_DIGITS
            and _WHOLE_ID.fullmatch(text) is None  # a PAN token, digest or UUID: one pass
            and _PAN_HINT_ASCII.search(text) is not None
        )
    # Other scripts' digits escape the ASCII count: one Unicode regex scan instead.
    return _PAN_HINT.search(text) is not None


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


# ---- text ------------------------------------------------------------------------------
def _blank(match: re.Match[str]) -> str:
    return "x" * len(match.group())


def _card_runs(text: str) -> Iterator[re.Match[str]]:
    """The digit runs of ``text`` that hold a card number (hex ids blanked out first)."""
    if not _may_hold_pan(text):
        return
    # Same length, so spans still point into ``text``; "x" breaks digit runs.
    scannable = _HEX_ID.sub(_blank, text)
    for match in _DIGIT_RUN.finditer(scannable):
        if _run_has_pan(match.group()):
            yield match


def _has_pan(text: str) -> bool:
    if not _may_hold_pan(text):
        return False
    scannable = _HEX_ID.sub(_blank, text)
    return any(_run_has_pan(match.group()) for match in _DIGIT_RUN.finditer(scannable))


def _ascii_digits(digits: str) -> str:
    if digits.isascii():
        return digits
    return "".join(chr(48 + unicodedata.decimal(char)) for char in digits)


def _run_has_pan(run: str) -> bool:
    """Does a PAN start at one of the run's groups, whole or in card grouping?"""
    groups = [_ascii_digits(group) for group in _DIGIT_GROUP.findall(run)]
    for start, first in enumerate(groups):
        if len(first) >= PAN_MIN_DIGITS:
            if _pan_leads(first):
                return True
            continue
        if len(first) != 4:  # grouped card numbers open with four digits
            continue
        digits, lengths = first, [4]
        for group in groups[start + 1 :]:
            digits += group
            lengths.append(len(group))
            if len(digits) > PAN_MAX_DIGITS:
                break
            if len(digits) >= PAN_MIN_DIGITS and _card_grouping(lengths) and looks_like_pan(digits):
                return True
    return False


def _card_grouping(lengths: list[int]) -> bool:
    """How card numbers are written: 4-4-4-4(-1..3), 4-4-4-1..4, 4-4-5, 4-6-5, 4-6-4."""
    if lengths in ([4, 6, 5], [4, 6, 4], [4, 4, 5]):
        return True
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _pan_leads(digits: str) -> bool:
    """A PAN is the whole run, or leads a longer one (PAN followed by expiry, ...)."""
    if len(digits) <= PAN_MAX_DIGITS:
        return looks_like_pan(digits)
    return any(
        looks_like_pan(digits[:length]) for length in range(PAN_MAX_DIGITS, PAN_MIN_DIGITS - 1, -1)
    )


# ---- numbers ---------------------------------------------------------------------------
def _int_is_pan(value: int, name: str) -> bool:
    digits = str(abs(value))
    if not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS or not looks_like_pan(digits):
        return False
    return len(digits) >= _INT_ANYWHERE_DIGITS or any(part in name for part in CARD_NAME_PARTS)


# ---- structure -------------------------------------------------------------------------
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
    return list(_walk(value, path, ""))


def _walk(value: Any, path: str, name: str) -> Iterator[Finding]:
    """``name``: the normalised name of the field ``value`` sits under (lists pass it on)."""
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            child = f"{path}.{key_text}"
            if _has_pan(key_text):
                yield Finding(f"{path}.<key>", "a field name contains a card number")
            key_name = _normalise(key_text)
            if key_name in FORBIDDEN_FIELDS:
                if item not in (None, "", b""):
                    yield Finding(child, "track data, CVV and PIN may never be stored")
                continue
            if key_name in PAN_FIELDS:
                yield from _check_pan_field(child, item)
                if isinstance(item, str):
                    continue
            yield from _walk(item, child, key_name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", name)
    elif isinstance(value, str):
        if _has_pan(value):
            yield Finding(path, "text contains a full card number")
    elif type(value) is int:
        if _int_is_pan(value, name):
            yield Finding(path, "a number that is a full card number")
    elif isinstance(value, bytes | bytearray):
        yield Finding(path, "raw bytes may not be stored; card data could hide in them")


def ensure_no_card_data(value: Any) -> None:
    """Raise :class:`CardDataRejected` if ``value`` carries card data."""
    findings = find_card_data(value)
    if findings:
        raise CardDataRejected(findings)


def redact(text: str) -> str:
    """Mask every digit run that holds a card number in free text (for log lines).

    The whole run (separators dropped) is masked to its first 6 and last 4 digits,
    so what shows of the card number is never more than that either.
    """
    if not _may_hold_pan(text):
        return text
    out: list[str] = []
    last = 0
    for match in _card_runs(text):
        digits = _ascii_digits("".join(_DIGIT_GROUP.findall(match.group())))
        out += (text[last : match.start()], mask_pan(digits))
        last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)
