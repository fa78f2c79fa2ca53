"""Sale receipts (issue 5 §4): a :class:`SaleView` → a printer-independent :class:`Receipt`.

:func:`build_receipt` lays out one copy (customer or merchant) for a printer
``columns`` characters wide: merchant name, date/time, sale id and reference,
amount, outcome (with the decline reason), masked PAN, brand, entry mode, auth
code, an OFFLINE mark for ``approved_offline`` only, a REPRINT mark, the copy
label, a signature line on the merchant copy of an offline or fallback
approval, a CODE128 barcode of the sale id, feed and cut.

Pure: no I/O, no ESC/POS bytes (that is the printer driver's job). It must
never print a full PAN: every free-text field goes through
:func:`~posedge.agent.carddata.redact`, and the finished receipt is checked
with :func:`~posedge.agent.carddata.find_card_data` before it is returned.
"""

from __future__ import annotations

import contextlib
import textwrap
from datetime import UTC, datetime
from typing import Literal

from posedge.agent.carddata import find_card_data, redact
from posedge.drivers.escpos.model import (
    Align,
    Barcode,
    BarcodeDataError,
    Cut,
    Element,
    Feed,
    Receipt,
    Symbology,
    Text,
)

from .model import SaleState, SaleView
from .policy import format_amount

Copy = Literal["customer", "merchant"]
MIN_COLUMNS = 24
MAX_COLUMNS = 64
BARCODE_HEIGHT_DOTS = 60

OUTCOME_LABELS: dict[SaleState, str] = {
    SaleState.APPROVED: "APPROVED",
    SaleState.APPROVED_OFFLINE: "APPROVED",
    SaleState.DECLINED: "DECLINED",
    SaleState.CANCELLED: "CANCELLED",
    SaleState.ABANDONED: "ABANDONED",
    SaleState.REVERSED: "REVERSED",
    SaleState.VOIDED: "VOIDED",
    SaleState.IN_DOUBT: "OUTCOME UNKNOWN",
    SaleState.CREATED: "NOT COMPLETED",
    SaleState.CARD_READ: "NOT COMPLETED",
    SaleState.AUTHORIZING: "NOT COMPLETED",
}
OUTCOME_NOTES: dict[SaleState, str] = {
    SaleState.REVERSED: "The authorization was reversed; no money was taken.",
    SaleState.VOIDED: "This sale was voided; no money will be taken.",
    SaleState.CANCELLED: "Cancelled before a card was read.",
    SaleState.ABANDONED: "No card was presented.",
    SaleState.IN_DOUBT: "Waiting for the host; do not hand over goods.",
}
ENTRY_LABELS = {"swipe": "SWIPE", "fallback": "SWIPE (CHIP FALLBACK)", "manual": "MANUAL"}
OFFLINE_NOTE = "Approved offline - will be forwarded"
FORWARD_NOTES = {
    "approved": "Forwarded: approved",
    "declined": "Forwarded: DECLINED by the card issuer",
    "expired": "Forward deadline passed: NOT collected",
}
_SIGNATURE_STATES = frozenset({SaleState.APPROVED, SaleState.APPROVED_OFFLINE})


class ReceiptCardDataError(ValueError):
    """The receipt would show card data (a full PAN); it is never printed."""


def build_receipt(
    sale: SaleView,
    copy: Copy,
    *,
    merchant_name: str,
    columns: int,
    reprint: bool = False,
    now: datetime | None = None,
) -> Receipt:
    """One copy of the receipt for ``sale``; raises ValueError for a bad copy/columns."""
    if copy not in ("customer", "merchant"):
        raise ValueError(f"copy must be 'customer' or 'merchant', not {copy!r}")
    if not MIN_COLUMNS <= columns <= MAX_COLUMNS:
        raise ValueError(f"columns={columns} outside {MIN_COLUMNS}..{MAX_COLUMNS}")
    lines = _Layout(columns)
    lines.big(merchant_name or "posedge")
    if reprint:
        lines.mark("*** REPRINT ***")
    lines.rule()
    lines.pair("Date", receipt_time(sale.created_at))
    if reprint:
        lines.pair("Reprinted", receipt_time((now or datetime.now(UTC)).isoformat()))
    lines.pair("Sale", sale.id)
    if sale.reference:
        lines.pair("Ref", sale.reference)
    lines.rule()
    lines.pair("SALE", f"{sale.currency} {format_amount(sale.amount, sale.currency)}", bold=True)
    lines.rule()
    _outcome(lines, sale)
    _card(lines, sale)
    lines.rule()
    _signature(lines, sale, copy)
    lines.mark("MERCHANT COPY" if copy == "merchant" else "CUSTOMER COPY")
    lines.add(Feed(1))
    # An id a barcode cannot carry is still printed as text above.
    with contextlib.suppress(BarcodeDataError):
        lines.add(Barcode(Symbology.CODE128, sale.id, height_dots=BARCODE_HEIGHT_DOTS))
    lines.add(Feed(3))
    lines.add(Cut())
    receipt = Receipt(lines.elements)
    if find_card_data(receipt.plain_text()):
        raise ReceiptCardDataError(
            f"receipt for sale {sale.id} would show a full card number; it was not built"
        )
    return receipt


def _outcome(lines: _Layout, sale: SaleView) -> None:
    lines.big(OUTCOME_LABELS.get(sale.state, sale.state.value.upper()))
    if sale.state is SaleState.APPROVED_OFFLINE:
        lines.big("OFFLINE")
        lines.wrap(OFFLINE_NOTE, align=Align.CENTER, bold=True)
    note = OUTCOME_NOTES.get(sale.state)
    if note:
        lines.wrap(note)
    if sale.state is SaleState.DECLINED and sale.decline_reason:
        lines.wrap(f"Reason: {sale.decline_reason}")
    if sale.forward_state in FORWARD_NOTES:
        lines.wrap(FORWARD_NOTES[sale.forward_state])
    if sale.auth_code:
        lines.pair("Auth code", sale.auth_code)


def _card(lines: _Layout, sale: SaleView) -> None:
    if sale.masked_pan:
        lines.pair("Card", sale.masked_pan)
    if sale.brand:
        lines.pair("Brand", sale.brand.upper())
    if sale.entry_mode:
        lines.pair("Entry", ENTRY_LABELS.get(sale.entry_mode, sale.entry_mode.upper()))


def _signature(lines: _Layout, sale: SaleView, copy: Copy) -> None:
    needs = sale.state is SaleState.APPROVED_OFFLINE or sale.entry_mode == "fallback"
    if copy != "merchant" or not needs or sale.state not in _SIGNATURE_STATES:
        return
    lines.add(Feed(2))
    lines.line("X" + "_" * (lines.columns - 1))
    lines.line("Cardholder signature", align=Align.CENTER)
    lines.add(Feed(1))


def receipt_time(iso: str) -> str:
    """An ISO time as printed on receipts and Z-reports: UTC, to the second."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Layout:
    """Collects elements, fitting every line into the paper width; redacts free text."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.elements: list[Element] = []

    def add(self, element: Element) -> None:
        self.elements.append(element)

    def line(
        self,
        text: str,
        *,
        bold: bool = False,
        width: int = 1,
        height: int = 1,
        align: Align = Align.LEFT,
    ) -> None:
        clean = redact(text.replace("\n", " ").replace("\r", " "))[: self.columns // width]
        self.add(Text(clean, bold=bold, width=width, height=height, align=align))

    def wrap(self, text: str, *, bold: bool = False, align: Align = Align.LEFT) -> None:
        for part in textwrap.wrap(redact(" ".join(text.split())), self.columns) or [""]:
            self.line(part, bold=bold, align=align)

    def big(self, text: str) -> None:
        """Bold, double width and height, centred; wrapped to half the width."""
        for part in textwrap.wrap(redact(" ".join(text.split())), self.columns // 2) or [""]:
            self.line(part, bold=True, width=2, height=2, align=Align.CENTER)

    def mark(self, text: str) -> None:
        self.line(text, bold=True, align=Align.CENTER)

    def rule(self) -> None:
        self.add(Text("-" * self.columns))

    def pair(self, label: str, value: str, *, bold: bool = False) -> None:
        """``label`` left, ``value`` right; a value too long goes on its own lines."""
        value = redact(" ".join(value.split()))
        room = self.columns - len(label) - 1
        if len(value) <= room:
            self.line(f"{label} {value:>{room}}", bold=bold)
        else:
            self.line(label, bold=bold)
            for part in textwrap.wrap(value, self.columns) or [""]:
                self.line(part, bold=bold, align=Align.RIGHT)


Layout = _Layout
"""The same line rules (width, redaction) for other printouts: the Z-report (agent/close)."""
