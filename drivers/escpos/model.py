"""The receipt model: what to print, independent of any printer's bytes.

A :class:`Receipt` is an ordered list of elements — :class:`Text` lines,
:class:`Barcode`, :class:`QRCode`, :class:`Feed`, :class:`Cut`,
:class:`DrawerKick`. Elements validate themselves when built: bad data raises
a :class:`ReceiptModelError` (a ``ValueError``) naming the element and what
to change, so a bad receipt fails before anything is sent to a printer.

:meth:`Receipt.plain_text` renders what the paper shows; the round-trip test
compares it with what the virtual printer decoded. Pure: never does I/O and
never knows about ESC/POS bytes (that is :mod:`.encoder`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .codepages import CodePage, printable_text


class ReceiptModelError(ValueError):
    """A receipt element holds data that cannot be printed."""


class BarcodeDataError(ReceiptModelError):
    """Barcode data does not fit its symbology (characters, length, check digit)."""


class Align(enum.IntEnum):
    LEFT = 0
    CENTER = 1
    RIGHT = 2


class Symbology(enum.StrEnum):
    CODE128 = "CODE128"
    EAN13 = "EAN13"


class HRI(enum.IntEnum):
    """Where the human-readable digits of a barcode go."""

    NONE = 0
    ABOVE = 1
    BELOW = 2
    BOTH = 3


class QRErrorCorrection(enum.IntEnum):
    """QR error correction level; the value is the ``GS ( k`` fn69 argument."""

    L = 48
    M = 49
    Q = 50
    H = 51


@dataclass(frozen=True)
class Text:
    """One printed line. Characters the code page lacks print as ``?``."""

    text: str
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    align: Align = Align.LEFT

    def __post_init__(self) -> None:
        if "\n" in self.text or "\r" in self.text:
            raise ReceiptModelError(
                f"Text({self.text[:20]!r}…): contains a line break; use one Text per line"
            )
        for dim, value in (("width", self.width), ("height", self.height)):
            if not 1 <= value <= 8:
                raise ReceiptModelError(f"Text({self.text[:20]!r}): {dim}={value} outside 1..8")


def ean13_check_digit(first12: str) -> int:
    """The EAN-13 check digit for 12 digits (weights 1,3,1,3,... from the left)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return (10 - total % 10) % 10


@dataclass(frozen=True)
class Barcode:
    """A 1D barcode. EAN-13 data is 12 digits (check digit added) or 13 (checked)."""

    symbology: Symbology
    data: str
    height_dots: int = 80
    module_width: int = 3
    hri: HRI = HRI.BELOW

    def __post_init__(self) -> None:
        if not 1 <= self.height_dots <= 255:
            raise BarcodeDataError(f"{self._label()}: height_dots={self.height_dots} not 1..255")
        if not 2 <= self.module_width <= 6:
            raise BarcodeDataError(f"{self._label()}: module_width={self.module_width} not 2..6")
        if self.symbology is Symbology.EAN13:
            object.__setattr__(self, "data", self._checked_ean13())
        else:
            self._check_code128()

    def _label(self) -> str:
        return f"Barcode({self.symbology.value}, {self.data[:32]!r})"

    def _checked_ean13(self) -> str:
        data = self.data
        if not (data.isascii() and data.isdigit() and len(data) in (12, 13)):
            raise BarcodeDataError(f"{self._label()}: EAN-13 needs 12 or 13 digits 0-9")
        expected = ean13_check_digit(data[:12])
        if len(data) == 13 and int(data[12]) != expected:
            raise BarcodeDataError(
                f"{self._label()}: check digit is {data[12]}, expected {expected}; "
                "fix the number or pass the first 12 digits only"
            )
        return data[:12] + str(expected)

    def _check_code128(self) -> None:
        bad = [c for c in self.data if not 0x20 <= ord(c) <= 0x7E]
        if not self.data or bad:
            raise BarcodeDataError(
                f"{self._label()}: CODE128 (set B) needs 1+ printable ASCII characters"
                + (f"; cannot encode {bad[0]!r}" if bad else "")
            )
        wire_length = len(self.data) + self.data.count("{") + 2
        if wire_length > 255:
            raise BarcodeDataError(f"{self._label()}: too long ({wire_length} > 255 bytes)")


@dataclass(frozen=True)
class QRCode:
    """A QR code (model 2). ``data`` is sent as UTF-8."""

    data: str
    module_size: int = 6
    ecc: QRErrorCorrection = QRErrorCorrection.M

    MAX_BYTES = 7089

    def __post_init__(self) -> None:
        size = len(self.data.encode("utf-8"))
        if not 1 <= size <= self.MAX_BYTES:
            raise ReceiptModelError(
                f"QRCode({self.data[:20]!r}): data is {size} bytes, must be 1..{self.MAX_BYTES}"
            )
        if not 1 <= self.module_size <= 16:
            raise ReceiptModelError(
                f"QRCode({self.data[:20]!r}): module_size={self.module_size} outside 1..16"
            )


@dataclass(frozen=True)
class Feed:
    """Feed ``lines`` blank lines."""

    lines: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.lines <= 255:
            raise ReceiptModelError(f"Feed({self.lines}): lines outside 0..255")


@dataclass(frozen=True)
class Cut:
    """Feed to the cutter (plus ``feed_units`` motion units) and cut."""

    partial: bool = False
    feed_units: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.feed_units <= 255:
            raise ReceiptModelError(f"Cut(feed_units={self.feed_units}): outside 0..255")


@dataclass(frozen=True)
class DrawerKick:
    """Pulse the cash drawer connector pin 2 or 5 for ``pulse_ms`` (2 ms steps)."""

    pin: int = 2
    pulse_ms: int = 100

    def __post_init__(self) -> None:
        if self.pin not in (2, 5):
            raise ReceiptModelError(f"DrawerKick(pin={self.pin}): pin must be 2 or 5")
        if not (2 <= self.pulse_ms <= 510 and self.pulse_ms % 2 == 0):
            raise ReceiptModelError(
                f"DrawerKick(pulse_ms={self.pulse_ms}): must be even, 2..510 (2 ms units)"
            )


Element = Text | Barcode | QRCode | Feed | Cut | DrawerKick
ELEMENT_TYPES = (Text, Barcode, QRCode, Feed, Cut, DrawerKick)


@dataclass
class Receipt:
    """An ordered list of elements, with chainable helpers to build one."""

    elements: list[Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index, element in enumerate(self.elements):
            if not isinstance(element, ELEMENT_TYPES):
                raise ReceiptModelError(
                    f"element {index} is a {type(element).__name__}, not a receipt element"
                )

    def add(self, element: Element) -> Receipt:
        if not isinstance(element, ELEMENT_TYPES):
            raise ReceiptModelError(f"{type(element).__name__} is not a receipt element")
        self.elements.append(element)
        return self

    def text(self, text: str, **style: object) -> Receipt:
        return self.add(Text(text, **style))  # type: ignore[arg-type]

    @property
    def text_lines(self) -> int:
        return sum(1 for e in self.elements if isinstance(e, Text))

    @property
    def barcodes(self) -> int:
        return sum(1 for e in self.elements if isinstance(e, Barcode | QRCode))

    @property
    def cuts(self) -> int:
        return sum(1 for e in self.elements if isinstance(e, Cut))

    def plain_text(self, code_page: CodePage | None = None) -> str:
        """What the paper shows, one line per row; with ``code_page``, as printed there."""
        lines: list[str] = []
        for element in self.elements:
            lines.extend(_plain_lines(element, code_page))
        return "\n".join(lines)


def _plain_lines(element: Element, code_page: CodePage | None) -> list[str]:
    if isinstance(element, Text):
        if code_page is None:
            return [element.text]
        return [printable_text(element.text, code_page)]
    if isinstance(element, Barcode):
        return [f"[{element.symbology.value} {element.data}]"]
    if isinstance(element, QRCode):
        return [f"[QR {element.data}]"]
    if isinstance(element, Feed):
        return [""] * element.lines
    if isinstance(element, Cut):
        return ["--- partial cut ---" if element.partial else "--- cut ---"]
    return []  # a drawer kick leaves nothing on paper
