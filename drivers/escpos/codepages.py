"""ESC/POS character code pages: the ``ESC t n`` number and the Python codec for each.

Pure: maps text to the bytes a printer prints in one code page and back.
Characters a code page cannot print are replaced *visibly* by
:data:`REPLACEMENT` and counted — never silently dropped. Control characters
(below 0x20, and 0x7F) are replaced too, so receipt text can never inject an
ESC/POS command (a stray ``DLE EOT`` in a customer name would be executed).

Never does I/O and never guesses a code page: callers choose one explicitly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

REPLACEMENT = "?"
"""What a character that cannot be printed becomes (visible on paper)."""


class CodePage(enum.Enum):
    """Code pages posedge can select, with their ``ESC t n`` number and codec."""

    PC437 = (0, "cp437")
    PC850 = (2, "cp850")
    WPC1252 = (16, "cp1252")
    PC858 = (19, "cp858")

    def __init__(self, number: int, codec: str) -> None:
        self.number = number
        self.codec = codec

    @classmethod
    def from_number(cls, number: int) -> CodePage | None:
        """The code page selected by ``ESC t number``, or None if posedge does not know it."""
        for page in cls:
            if page.number == number:
                return page
        return None

    @classmethod
    def from_name(cls, name: str) -> CodePage:
        """Parse a config value such as ``"PC858"`` or ``"wpc1252"``."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(p.name for p in cls)
            raise ValueError(f"unknown code page {name!r}; use one of {allowed}") from None


@dataclass(frozen=True)
class EncodedText:
    """Text encoded for one code page, with what had to be replaced."""

    data: bytes
    printed: str
    """The text as it will appear on paper (replacements included)."""
    replaced: tuple[str, ...]
    """Each character that could not be printed, in order of appearance."""


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or code == 0x7F


def encode_text(text: str, page: CodePage) -> EncodedText:
    """Encode ``text`` for ``page``; unprintable and control characters become ``?``."""
    try:
        if not any(_is_control(c) for c in text):
            return EncodedText(text.encode(page.codec), text, ())
    except UnicodeEncodeError:
        pass
    out = bytearray()
    printed: list[str] = []
    replaced: list[str] = []
    for char in text:
        encoded = None if _is_control(char) else _encode_char(char, page)
        if encoded is None:
            replaced.append(char)
            out += REPLACEMENT.encode("ascii")
            printed.append(REPLACEMENT)
        else:
            out += encoded
            printed.append(char)
    return EncodedText(bytes(out), "".join(printed), tuple(replaced))


def _encode_char(char: str, page: CodePage) -> bytes | None:
    try:
        return char.encode(page.codec)
    except UnicodeEncodeError:
        return None


def printable_text(text: str, page: CodePage) -> str:
    """``text`` as the printer will print it in ``page`` (replacements included)."""
    return encode_text(text, page).printed


def decode_text(data: bytes, page: CodePage) -> str:
    """Bytes printed in ``page`` back to text; bytes the page leaves undefined become ``?``."""
    text = data.decode(page.codec, errors="replace")
    return text.replace("\ufffd", REPLACEMENT)
