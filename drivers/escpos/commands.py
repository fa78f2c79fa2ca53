"""ESC/POS commands as a declarative table: name → prefix, arguments, help.

One table drives the encoder (:func:`build`), the decoder (:func:`match`) and
the simulator, so the two sides of the wire cannot drift apart. A command is
a fixed byte ``prefix`` followed either by a fixed number of one-byte
arguments (each with an allowed range) or by a payload whose length is given
in the bytes after the prefix (:class:`Payload`).

Sources: Epson ESC/POS reference and python-escpos ``constants.py`` (facts
summarised in ``shared/REFERENCE.md``). Pure data and byte building: never
does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ESC = 0x1B
GS = 0x1D
DLE = 0x10
FS = 0x1C
LF = 0x0A
CR = 0x0D
NUL = 0x00


@dataclass(frozen=True)
class Arg:
    """A one-byte argument with its allowed range (inclusive)."""

    name: str
    lo: int = 0
    hi: int = 255


class Payload(enum.Enum):
    """How a variable-length command says how long its data is."""

    COUNT_BYTE = "one length byte n, then n data bytes"
    LENGTH_LE16 = "pL pH (little-endian length), then that many bytes"


@dataclass(frozen=True)
class Command:
    name: str
    prefix: bytes
    help: str
    args: tuple[Arg, ...] = ()
    payload: Payload | None = None
    realtime: bool = False
    """Executed on receipt, even offline or mid-stream (DLE EOT, DLE ENQ)."""

    @property
    def fixed_length(self) -> int:
        """Length of the command when it has no payload."""
        return len(self.prefix) + len(self.args)


def _cmd(name: str, prefix: str, help: str, *args: Arg, **kw: object) -> Command:
    return Command(name, bytes.fromhex(prefix), help, args, **kw)  # type: ignore[arg-type]


_TABLE: tuple[Command, ...] = (
    _cmd("line_feed", "0a", "LF: print the line buffer and feed one line"),
    _cmd("carriage_return", "0d", "CR: ignored by printers in the default (auto LF off) mode"),
    _cmd("init", "1b40", "ESC @: reset styles, code page and buffers to power-on defaults"),
    _cmd("justify", "1b61", "ESC a n: 0 left, 1 centre, 2 right (start of line only)",
         Arg("n", 0, 50)),
    _cmd("bold", "1b45", "ESC E n: emphasis on when the lowest bit of n is 1", Arg("n")),
    _cmd("underline", "1b2d", "ESC - n: 0 off, 1 one-dot, 2 two-dot (48..50 alike)",
         Arg("n", 0, 50)),
    _cmd("char_size", "1d21", "GS ! n: high nibble width-1, low nibble height-1 (1..8)",
         Arg("n", 0, 0x77)),
    _cmd("code_page", "1b74", "ESC t n: select character code table n", Arg("n")),
    _cmd("feed_lines", "1b64", "ESC d n: print and feed n lines", Arg("n")),
    _cmd("cut_full", "1d5600", "GS V 0: full cut at the current position"),
    _cmd("cut_partial", "1d5601", "GS V 1: partial cut at the current position"),
    _cmd("cut_full_ascii", "1d5630", "GS V '0': full cut (ASCII form)"),
    _cmd("cut_partial_ascii", "1d5631", "GS V '1': partial cut (ASCII form)"),
    _cmd("feed_cut_full", "1d5641", "GS V A n: feed to cutter + n motion units, full cut",
         Arg("n")),
    _cmd("feed_cut_partial", "1d5642", "GS V B n: feed to cutter + n motion units, partial cut",
         Arg("n")),
    _cmd("drawer_kick", "1b70", "ESC p m t1 t2: pulse pin 2 (m=0) or 5 (m=1), on t1x2 ms",
         Arg("m", 0, 49), Arg("t1"), Arg("t2")),
    _cmd("barcode_height", "1d68", "GS h n: barcode height in dots", Arg("n", 1, 255)),
    _cmd("barcode_width", "1d77", "GS w n: barcode module width 2..6", Arg("n", 1, 6)),
    _cmd("barcode_hri", "1d48", "GS H n: HRI text 0 none, 1 above, 2 below, 3 both",
         Arg("n", 0, 51)),
    _cmd("barcode_code128", "1d6b49", "GS k 73 n data: CODE128 (data starts with {A/{B/{C)",
         payload=Payload.COUNT_BYTE),
    _cmd("barcode_ean13", "1d6b43", "GS k 67 n data: EAN-13 (12 or 13 digits)",
         payload=Payload.COUNT_BYTE),
    _cmd("qr_model", "1d286b04003141", "GS ( k fn65: QR model n1 (49 model 1, 50 model 2), n2=0",
         Arg("n1", 49, 51), Arg("n2")),
    _cmd("qr_module_size", "1d286b03003143", "GS ( k fn67: QR module size n dots (1..16)",
         Arg("n", 1, 16)),
    _cmd("qr_ecc", "1d286b03003145", "GS ( k fn69: QR error correction 48 L, 49 M, 50 Q, 51 H",
         Arg("n", 48, 51)),
    _cmd("qr_print", "1d286b0300315130", "GS ( k fn81: print the stored QR symbol"),
    _cmd("gs_paren_k", "1d286b", "GS ( k pL pH cn fn ...: 2D symbol function (QR store: "
         "cn=0x31 fn=0x50 m=0x30 data)", payload=Payload.LENGTH_LE16),
    _cmd("realtime_status", "1004", "DLE EOT n: real-time status byte n=1..4 (any state)",
         Arg("n", 1, 4), realtime=True),
    _cmd("realtime_recover", "1005", "DLE ENQ n: 1 recover and resume, 2 recover and clear "
         "buffers (recoverable errors only)", Arg("n", 1, 2), realtime=True),
    _cmd("transmit_status", "1d72", "GS r n: in buffer order; n=1 paper sensor, n=2 drawer",
         Arg("n", 1, 50)),
    _cmd("auto_status_back", "1d61", "GS a n: enable Automatic Status Back (0 disables)",
         Arg("n")),
)  # fmt: skip

COMMANDS: dict[str, Command] = {c.name: c for c in _TABLE}
"""Every known command by name."""

QR_STORE_HEADER = bytes((0x31, 0x50, 0x30))
"""cn fn m of the QR "store data" function inside ``GS ( k``."""

CODE128_SET_B = b"{B"
"""Code-set selector every CODE128 payload starts with (printable ASCII)."""


def build(name: str, *values: int) -> bytes:
    """Bytes of a fixed-argument command, arguments checked against the table."""
    cmd = COMMANDS[name]
    if cmd.payload is not None:
        raise TypeError(f"{name} takes a payload; use build_payload()")
    if len(values) != len(cmd.args):
        raise TypeError(f"{name} takes {len(cmd.args)} argument(s), got {len(values)}")
    for arg, value in zip(cmd.args, values, strict=True):
        if not arg.lo <= value <= arg.hi:
            raise ValueError(f"{name}: {arg.name}={value} outside {arg.lo}..{arg.hi}")
    return cmd.prefix + bytes(values)


def build_payload(name: str, data: bytes) -> bytes:
    """Bytes of a variable-length command carrying ``data``."""
    cmd = COMMANDS[name]
    if cmd.payload is Payload.COUNT_BYTE:
        if not 1 <= len(data) <= 255:
            raise ValueError(f"{name}: data must be 1..255 bytes, got {len(data)}")
        return cmd.prefix + bytes((len(data),)) + data
    if cmd.payload is Payload.LENGTH_LE16:
        if len(data) > 0xFFFF:
            raise ValueError(f"{name}: data must be at most 65535 bytes, got {len(data)}")
        return cmd.prefix + len(data).to_bytes(2, "little") + data
    raise TypeError(f"{name} has fixed arguments; use build()")


def size_byte(width: int, height: int) -> int:
    """The ``GS !`` argument for a character size of width x height (1..8 each)."""
    if not (1 <= width <= 8 and 1 <= height <= 8):
        raise ValueError(f"character size {width}x{height} outside 1..8")
    return ((width - 1) << 4) | (height - 1)


def qr_store(data: bytes) -> bytes:
    """``GS ( k`` store-data function for a QR symbol (pL+256*pH = len(data)+3)."""
    return build_payload("gs_paren_k", QR_STORE_HEADER + data)


# ---- prefix matching (used by the decoder) ---------------------------------
_BY_PREFIX: dict[bytes, Command] = {c.prefix: c for c in _TABLE}
_PROPER_PREFIXES: frozenset[bytes] = frozenset(
    c.prefix[:i] for c in _TABLE for i in range(1, len(c.prefix))
)
_MAX_PREFIX = max(len(c.prefix) for c in _TABLE)


def match(buf: bytes | bytearray, pos: int) -> Command | bool | None:
    """The longest table command whose prefix starts at ``buf[pos]``.

    Returns the :class:`Command`, ``True`` when more bytes are needed to
    decide, or ``None`` when no command starts there.
    """
    best: Command | None = None
    end = min(len(buf), pos + _MAX_PREFIX)
    for stop in range(pos + 1, end + 1):
        candidate = bytes(buf[pos:stop])
        if candidate in _BY_PREFIX:
            best = _BY_PREFIX[candidate]
        if candidate not in _PROPER_PREFIXES:
            return best
    # Ran out of bytes while still on a proper prefix of a longer command.
    return True if end < pos + _MAX_PREFIX else best
