"""ESC/POS bytes → receipt model elements: the inverse of :mod:`.encoder`.

Used by the virtual printer (the simulator sits on the other side of the same
protocol code) and by tests. :class:`EscPosDecoder` is incremental: it keeps
a partial command across :meth:`~EscPosDecoder.feed` calls, so a job split
over many writes decodes exactly like one write. Bytes it does not
understand become :class:`Unknown` items (with a reason) and decoding carries
on: random input never raises.

It tracks what a printer tracks (styles, code page, barcode and QR settings)
and emits :class:`Control` items for commands that ask the device to act
(init, status requests). Approximations: a style change in the middle of a
line applies to the whole line (the model styles whole lines); ``ESC d n``
and cuts first flush an unterminated line as a Text element.

Pure: never does I/O and never raises on bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import commands as cmd
from .codepages import CodePage, decode_text
from .model import (
    HRI,
    Align,
    Barcode,
    Cut,
    DrawerKick,
    Element,
    Feed,
    QRCode,
    QRErrorCorrection,
    Receipt,
    ReceiptModelError,
    Symbology,
    Text,
)


@dataclass(frozen=True)
class Control:
    """A command that asks the device to act rather than print."""

    name: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class Unknown:
    """Bytes the decoder did not understand, and why."""

    data: bytes
    reason: str


Item = Element | Control | Unknown

# Printer power-on defaults for barcodes (Epson): height 162 dots, width 3, no HRI.
_DEFAULT_BARCODE = (162, 3, HRI.NONE)
_LENGTH_PREFIXED = (cmd.GS, cmd.FS)  # GS ( x pL pH ... and FS ( x pL pH ...


@dataclass
class _State:
    page: CodePage = CodePage.PC437
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    align: Align = Align.LEFT
    barcode: tuple[int, int, HRI] = _DEFAULT_BARCODE
    qr_size: int = 3
    qr_ecc: QRErrorCorrection = QRErrorCorrection.L
    qr_data: bytes | None = None
    line: list[str] = field(default_factory=list)
    line_style: dict[str, object] | None = None


class EscPosDecoder:
    """Stateful ESC/POS decoder (one per simulated printer)."""

    def __init__(self) -> None:
        self.state = _State()
        self._buf = bytearray()

    # ---- streaming API ----------------------------------------------------
    def feed(self, data: bytes) -> list[Item]:
        """Decode what ``data`` completes; keep an unfinished command for the next call."""
        self._buf += data
        items: list[Item] = []
        while self._buf:
            step = self.step(self._buf)
            if step is None:
                break
            new, used = step
            items.extend(new)
            del self._buf[:used]
        return items

    def finish(self) -> list[Item]:
        """End of stream: report an unfinished command and flush an unterminated line."""
        items: list[Item] = []
        while self._buf:
            new, used = self.step(self._buf, final=True) or ([], len(self._buf))
            items.extend(new)
            del self._buf[:used]
        items.extend(self._flush_line())
        return items

    # ---- one command ------------------------------------------------------
    def step(self, buf: bytes | bytearray, final: bool = False) -> tuple[list[Item], int] | None:
        """Decode the command at the start of ``buf``: (items, bytes used), or None if
        more bytes are needed (with ``final``, a truncated command becomes Unknown)."""
        first = buf[0]
        if first >= 0x20 and first != 0x7F:
            return self._text_run(buf), _text_run_length(buf)
        found = cmd.match(buf, 0)
        if found is True or (isinstance(found, cmd.Command) and len(buf) < found.fixed_length):
            return self._truncated(buf, final)
        if found is None or found is False:
            return self._unknown_command(buf, final)
        return self._command(found, buf, final)

    def _truncated(self, buf: bytes | bytearray, final: bool) -> tuple[list[Item], int] | None:
        if not final:
            return None
        return [Unknown(bytes(buf), "truncated command at end of stream")], len(buf)

    def _command(
        self, found: cmd.Command, buf: bytes | bytearray, final: bool
    ) -> tuple[list[Item], int] | None:
        if found.payload is None:
            raw = bytes(buf[: found.fixed_length])
            args = tuple(raw[len(found.prefix) :])
            for arg, value in zip(found.args, args, strict=True):
                if not arg.lo <= value <= arg.hi:
                    return [Unknown(raw, f"{found.name}: {arg.name}={value} out of range")], len(
                        raw
                    )
            return self._apply(found.name, args, raw), len(raw)
        total = _payload_total(found, buf)
        if total is None or len(buf) < total:
            return self._truncated(buf, final)
        raw = bytes(buf[:total])
        return self._apply_payload(found.name, raw, raw[total - _data_len(found, raw) :]), total

    def _unknown_command(
        self, buf: bytes | bytearray, final: bool
    ) -> tuple[list[Item], int] | None:
        first = buf[0]
        if first not in (cmd.ESC, cmd.GS, cmd.FS, cmd.DLE):
            return [Unknown(bytes(buf[:1]), f"control byte 0x{first:02x} not understood")], 1
        if len(buf) < 2:
            return self._truncated(buf, final)
        total = _skip_length(buf)
        if total is None:
            return self._truncated(buf, final)
        raw = bytes(buf[:total])
        return [Unknown(raw, f"command {raw[:3].hex(' ')} not supported")], total

    # ---- meaning ------------------------------------------------------------
    def _text_run(self, buf: bytes | bytearray) -> list[Item]:
        st = self.state
        if st.line_style is None:
            st.line_style = self._style()
        st.line.append(decode_text(bytes(buf[: _text_run_length(buf)]), st.page))
        return []

    def _style(self) -> dict[str, object]:
        st = self.state
        return {
            "bold": st.bold,
            "underline": st.underline,
            "width": st.width,
            "height": st.height,
            "align": st.align,
        }

    def _flush_line(self) -> list[Item]:
        st = self.state
        if st.line_style is None:
            return []
        text = Text("".join(st.line), **st.line_style)  # type: ignore[arg-type]
        st.line, st.line_style = [], None
        return [text]

    def _apply(self, name: str, args: tuple[int, ...], raw: bytes) -> list[Item]:
        st = self.state
        if name == "line_feed":
            if st.line_style is None:
                st.line_style = self._style()
            return self._flush_line()
        if name == "carriage_return":
            return []
        if name in _STYLE_SETTERS:
            return _STYLE_SETTERS[name](self, args[0], raw)
        if name.startswith(("cut_", "feed_cut_", "feed_lines")):
            return [*self._flush_line(), _paper_motion(name, args)]
        if name == "drawer_kick":
            if args[1] == 0:
                return [Unknown(raw, "drawer_kick: zero pulse time")]
            return [DrawerKick(pin=2 if args[0] % 2 == 0 else 5, pulse_ms=args[1] * 2)]
        if name.startswith("qr_"):
            return self._qr(name, args, raw)
        if name == "init":
            self.state = _State()
        return [Control(name, args)]

    def _qr(self, name: str, args: tuple[int, ...], raw: bytes) -> list[Item]:
        st = self.state
        if name == "qr_module_size":
            st.qr_size = args[0]
        elif name == "qr_ecc":
            st.qr_ecc = QRErrorCorrection(args[0])
        elif name == "qr_print":
            if not st.qr_data:
                return [Unknown(raw, "QR print without stored data")]
            data = st.qr_data.decode("utf-8", errors="replace")
            return [*self._flush_line(), QRCode(data, st.qr_size, st.qr_ecc)]
        return []

    def _apply_payload(self, name: str, raw: bytes, data: bytes) -> list[Item]:
        if name == "gs_paren_k":
            if data[:3] == cmd.QR_STORE_HEADER and len(data) > 3:
                self.state.qr_data = data[3:]
                return []
            return [Unknown(raw, "2D symbol function not supported (only QR store)")]
        symbology = Symbology.EAN13 if name == "barcode_ean13" else Symbology.CODE128
        text = _barcode_text(symbology, data)
        if text is None:
            return [Unknown(raw, f"{symbology.value} data not understood")]
        height, width, hri = self.state.barcode
        try:
            barcode = Barcode(symbology, text, height, width, hri)
        except ReceiptModelError as exc:
            return [Unknown(raw, str(exc))]
        return [*self._flush_line(), barcode]


Setter = Callable[[EscPosDecoder, int, bytes], list[Item]]


def _set_style(attr: str, convert: Callable[[int], object | None]) -> Setter:
    def setter(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
        result = convert(value)
        if result is None:
            return [Unknown(raw, f"{attr}: value {value} not understood")]
        setattr(decoder.state, attr, result)
        return []

    return setter


def _char_size(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
    width, height = (value >> 4) + 1, (value & 0x0F) + 1
    if width > 8 or height > 8:
        return [Unknown(raw, f"char_size: {width}x{height} outside 1..8")]
    decoder.state.width, decoder.state.height = width, height
    return []


def _code_page(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
    page = CodePage.from_number(value)
    if page is None:
        return [Unknown(raw, f"code page {value} not supported")]
    decoder.state.page = page
    return [Control("code_page", (value,))]


def _barcode_height(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
    _, width, hri = decoder.state.barcode
    decoder.state.barcode = (value, width, hri)
    return []


def _barcode_width(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
    height, _, hri = decoder.state.barcode
    decoder.state.barcode = (height, value, hri)
    return []


def _barcode_hri(decoder: EscPosDecoder, value: int, raw: bytes) -> list[Item]:
    if value % 48 > 3 or 4 <= value < 48:
        return [Unknown(raw, f"barcode_hri: value {value} not understood")]
    height, width, _ = decoder.state.barcode
    decoder.state.barcode = (height, width, HRI(value % 48))
    return []


def _underline(value: int) -> bool | None:
    return value % 48 in (1, 2) if value % 48 < 3 and not 3 <= value < 48 else None


def _justify(value: int) -> Align | None:
    return Align(value % 48) if value % 48 < 3 and not 3 <= value < 48 else None


_STYLE_SETTERS: dict[str, Setter] = {
    "bold": _set_style("bold", lambda v: bool(v & 1)),
    "underline": _set_style("underline", _underline),
    "justify": _set_style("align", _justify),
    "char_size": _char_size,
    "code_page": _code_page,
    "barcode_height": _barcode_height,
    "barcode_width": _barcode_width,
    "barcode_hri": _barcode_hri,
}


def _paper_motion(name: str, args: tuple[int, ...]) -> Element:
    if name == "feed_lines":
        return Feed(args[0])
    partial = "partial" in name
    return Cut(partial=partial, feed_units=args[0] if name.startswith("feed_cut") else 0)


def _barcode_text(symbology: Symbology, data: bytes) -> str | None:
    if symbology is Symbology.EAN13:
        return data.decode("ascii") if data.isdigit() and len(data) in (12, 13) else None
    if not data.startswith(cmd.CODE128_SET_B):
        return None
    body = data[2:].decode("latin-1")
    text, i = [], 0
    while i < len(body):
        if body[i] == "{":
            if body[i + 1 : i + 2] != "{":
                return None  # code set switch or FNC: not in the model
            i += 1
        text.append(body[i])
        i += 1
    return "".join(text)


def _text_run_length(buf: bytes | bytearray) -> int:
    n = 0
    while n < len(buf) and buf[n] >= 0x20 and buf[n] != 0x7F:
        n += 1
    return n


def _payload_total(found: cmd.Command, buf: bytes | bytearray) -> int | None:
    head = len(found.prefix)
    if found.payload is cmd.Payload.COUNT_BYTE:
        return head + 1 + buf[head] if len(buf) > head else None
    if len(buf) < head + 2:
        return None
    return head + 2 + buf[head] + 256 * buf[head + 1]


def _data_len(found: cmd.Command, raw: bytes) -> int:
    return len(raw) - len(found.prefix) - (1 if found.payload is cmd.Payload.COUNT_BYTE else 2)


def _skip_length(buf: bytes | bytearray) -> int | None:
    """How many bytes an unsupported command spans (2 unless its length is known)."""
    first, second = buf[0], buf[1]
    if first in _LENGTH_PREFIXED and second == 0x28:  # GS ( x pL pH / FS ( x pL pH
        if len(buf) < 5:
            return None
        return 5 + buf[3] + 256 * buf[4]
    if first == cmd.GS and second == 0x6B:  # GS k m ... (other symbologies)
        if len(buf) < 3:
            return None
        if buf[2] <= 6:  # function A: NUL-terminated
            end = bytes(buf).find(b"\x00", 3)
            return None if end < 0 else end + 1
        return 4 + buf[3] if len(buf) > 3 else None
    return 2


def decode(data: bytes) -> tuple[list[Element], list[Unknown]]:
    """One-shot decode: the printed elements and the bytes not understood."""
    decoder = EscPosDecoder()
    items = decoder.feed(data) + decoder.finish()
    elements = [i for i in items if not isinstance(i, Control | Unknown)]
    return elements, [i for i in items if isinstance(i, Unknown)]


def decode_receipt(data: bytes) -> Receipt:
    return Receipt(decode(data)[0])
