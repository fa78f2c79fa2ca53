"""Receipt model → ESC/POS bytes.

Every job starts with ``ESC @`` (init) and an explicit ``ESC t n`` code page
selection, so a printer left in another state by a previous job (or another
program) prints our characters right. Style commands are only sent when the
style changes. Characters the code page cannot print become ``?`` and are
reported in :class:`EncodedReceipt` — never silently dropped.

Pure: no I/O, and never emits a real-time command (``DLE EOT``/``DLE ENQ``):
the driver sends those on its own, between jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import commands as cmd
from .codepages import CodePage, encode_text
from .model import (
    HRI,
    Align,
    Barcode,
    Cut,
    DrawerKick,
    Element,
    Feed,
    QRCode,
    Receipt,
    Symbology,
    Text,
)


@dataclass(frozen=True)
class EncodedReceipt:
    """The bytes of one job and what the encoder had to change to produce them."""

    data: bytes
    code_page: CodePage
    lines: int
    """Text lines in the job (ReceiptLinePrintedCount once confirmed)."""
    barcodes: int
    cuts: int
    replaced: tuple[str, ...] = ()
    """Characters printed as ``?`` because the code page lacks them."""

    @property
    def replaced_count(self) -> int:
        return len(self.replaced)


@dataclass
class _Style:
    """What the printer currently has selected (after ``ESC @``: all defaults)."""

    bold: bool = False
    underline: bool = False
    size: int = 0
    align: Align = Align.LEFT
    barcode: tuple[int, int, HRI] | None = None
    qr: tuple[int, int] | None = None


@dataclass
class _Job:
    page: CodePage
    out: bytearray = field(default_factory=bytearray)
    style: _Style = field(default_factory=_Style)
    replaced: list[str] = field(default_factory=list)


def encode(receipt: Receipt, code_page: CodePage = CodePage.PC858) -> EncodedReceipt:
    """Encode ``receipt`` for a printer set to ``code_page``."""
    job = _Job(code_page)
    job.out += cmd.build("init") + cmd.build("code_page", code_page.number)
    for element in receipt.elements:
        _encode_element(job, element)
    return EncodedReceipt(
        data=bytes(job.out),
        code_page=code_page,
        lines=receipt.text_lines,
        barcodes=receipt.barcodes,
        cuts=receipt.cuts,
        replaced=tuple(job.replaced),
    )


def _encode_element(job: _Job, element: Element) -> None:
    if isinstance(element, Text):
        _encode_text(job, element)
    elif isinstance(element, Barcode):
        _encode_barcode(job, element)
    elif isinstance(element, QRCode):
        _encode_qr(job, element)
    elif isinstance(element, Feed):
        job.out += cmd.build("feed_lines", element.lines)
    elif isinstance(element, Cut):
        job.out += cmd.build(
            "feed_cut_partial" if element.partial else "feed_cut_full", element.feed_units
        )
    elif isinstance(element, DrawerKick):
        on_units = element.pulse_ms // 2
        job.out += cmd.build(
            "drawer_kick", 0 if element.pin == 2 else 1, on_units, min(255, on_units * 2)
        )


def _set_align(job: _Job, align: Align) -> None:
    if job.style.align is not align:
        job.out += cmd.build("justify", int(align))
        job.style.align = align


def _encode_text(job: _Job, line: Text) -> None:
    style = job.style
    _set_align(job, line.align)
    if style.bold != line.bold:
        job.out += cmd.build("bold", int(line.bold))
        style.bold = line.bold
    if style.underline != line.underline:
        job.out += cmd.build("underline", int(line.underline))
        style.underline = line.underline
    size = cmd.size_byte(line.width, line.height)
    if style.size != size:
        job.out += cmd.build("char_size", size)
        style.size = size
    encoded = encode_text(line.text, job.page)
    job.replaced.extend(encoded.replaced)
    job.out += encoded.data
    job.out += cmd.build("line_feed")


def code128_payload(data: str) -> bytes:
    """CODE128 set B payload: ``{B`` then the data, a literal ``{`` doubled."""
    return cmd.CODE128_SET_B + data.replace("{", "{{").encode("ascii")


def _encode_barcode(job: _Job, barcode: Barcode) -> None:
    settings = (barcode.height_dots, barcode.module_width, barcode.hri)
    if job.style.barcode != settings:
        job.out += cmd.build("barcode_height", barcode.height_dots)
        job.out += cmd.build("barcode_width", barcode.module_width)
        job.out += cmd.build("barcode_hri", int(barcode.hri))
        job.style.barcode = settings
    if barcode.symbology is Symbology.EAN13:
        job.out += cmd.build_payload("barcode_ean13", barcode.data.encode("ascii"))
    else:
        job.out += cmd.build_payload("barcode_code128", code128_payload(barcode.data))


def _encode_qr(job: _Job, qr: QRCode) -> None:
    settings = (qr.module_size, int(qr.ecc))
    if job.style.qr != settings:
        job.out += cmd.build("qr_model", 50, 0)
        job.out += cmd.build("qr_module_size", qr.module_size)
        job.out += cmd.build("qr_ecc", int(qr.ecc))
        job.style.qr = settings
    job.out += cmd.qr_store(qr.data.encode("utf-8"))
    job.out += cmd.build("qr_print")
