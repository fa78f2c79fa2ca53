"""ESC/POS protocol layer (pure, no I/O): command table, receipt model, encoder,
decoder and status bytes. The device layer is :mod:`posedge.drivers.printer`."""

from .codepages import CodePage
from .decoder import Control, EscPosDecoder, Unknown, decode
from .encoder import EncodedReceipt, encode
from .model import (
    HRI,
    Align,
    Barcode,
    BarcodeDataError,
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
from .status import PrinterStatus, ReplyKind, classify_reply, decode_asb, decode_realtime

__all__ = [
    "HRI",
    "Align",
    "Barcode",
    "BarcodeDataError",
    "CodePage",
    "Control",
    "Cut",
    "DrawerKick",
    "Element",
    "EncodedReceipt",
    "EscPosDecoder",
    "Feed",
    "PrinterStatus",
    "QRCode",
    "QRErrorCorrection",
    "Receipt",
    "ReceiptModelError",
    "ReplyKind",
    "Symbology",
    "Text",
    "Unknown",
    "classify_reply",
    "decode",
    "decode_asb",
    "decode_realtime",
    "encode",
]
