"""ISO/IEC 7813 magnetic-stripe tracks 1 and 2: validate, decode, encode.

Pure functions, no I/O. :func:`decode_card` turns a :class:`SensitiveTracks`
into a :class:`CardRead` that holds only what may be kept (masked PAN, brand,
expiry, service code, PAN token, per-track quality); the raw data stays in
the sensitive holder. The encoders serve the simulator and tests.

Layout (ASCII as sent by readers; the LRC character is optional)::

    track 1: % B PAN(13-19) ^ NAME(2-26) ^ YYMM SVC(3) discretionary ? [LRC]
    track 2: ; PAN(13-19) = YYMM SVC(3) discretionary ? [LRC]

Character sets: track 1 uses 6-bit values (ASCII - 0x20, so 0x20..0x5F);
track 2 uses 4-bit values (ASCII - 0x30, so 0x30..0x3F). The LRC is the XOR of
the data values from start to end sentinel; on the stripe it carries an odd
parity bit (bit 6 for track 1, bit 4 for track 2). In the ASCII stream it is
sent as the character of that data value. Worked example: ``%AT3?`` gives
data value 0x1C, which already has an odd number of ones, so the 7-bit stripe
character is 0x1C and the ASCII character is ``<``.

Never put track data, PAN digits or the name into an error message, a log
line or a repr: errors name the track and the rule that failed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ..errors import TrackDataError
from .pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, card_brand, luhn_ok, mask_pan
from .sensitive import SensitiveTracks
from .service_code import ServiceCode, parse_service_code

__all__ = [
    "CardRead",
    "CardUnreadable",
    "SensitiveTracks",
    "ServiceCode",
    "TrackError",
    "TrackQuality",
    "decode_card",
    "encode_track1",
    "encode_track2",
    "parity_char",
    "track_lrc",
]

TRACK1_START, TRACK2_START, TRACK3_START = ord("%"), ord(";"), ord("+")
END_SENTINEL = ord("?")
TRACK1_MAX_CHARS = 79
TRACK2_MAX_CHARS = 40
NAME_MIN_CHARS, NAME_MAX_CHARS = 2, 26
MIN_TOKEN_KEY_BYTES = 16
UNREADABLE_MARK = ord("E")

# (ASCII offset, lowest ASCII, highest ASCII, data bits) per track number.
_CHARSET = {1: (0x20, 0x20, 0x5F, 6), 2: (0x30, 0x30, 0x3F, 4), 3: (0x30, 0x30, 0x3F, 4)}
_START = {1: TRACK1_START, 2: TRACK2_START, 3: TRACK3_START}


class TrackQuality(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    """The reader sent nothing for this track."""
    UNREADABLE = "unreadable"
    """The reader reported the track unreadable (``E``)."""
    NO_START_SENTINEL = "no_start_sentinel"
    NO_END_SENTINEL = "no_end_sentinel"
    BAD_LRC = "bad_lrc"
    BAD_CHARACTER = "bad_character"
    BAD_FORMAT = "bad_format"
    """Field layout, length, expiry or service code wrong."""
    BAD_PAN = "bad_pan"
    """PAN length or Luhn check digit wrong."""


class TrackError(TrackDataError):
    """One track failed validation; ``track`` and ``quality`` say where and how."""

    def __init__(self, track: int, quality: TrackQuality, reason: str) -> None:
        super().__init__(f"track {track}: {reason}")
        self.track = track
        self.quality = quality
        self.reason = reason


class CardUnreadable(TrackDataError):
    """No track of the swipe could be used. ``track_quality``/``reasons`` per track."""

    def __init__(
        self,
        track_quality: dict[int, TrackQuality],
        reasons: dict[int, str],
        *,
        summary: str | None = None,
        url: str | None = None,
    ) -> None:
        detail = "; ".join(
            f"track {n}: {reasons.get(n, q.value)}" for n, q in track_quality.items()
        )
        head = summary or "card could not be read"
        super().__init__(f"{head} ({detail}); ask the customer to swipe again", url=url)
        self.track_quality = dict(track_quality)
        self.reasons = dict(reasons)

    @property
    def unreadable(self) -> bool:
        """True when the reader got no data at all (as opposed to data that failed checks)."""
        return all(
            q in (TrackQuality.UNREADABLE, TrackQuality.MISSING)
            for q in self.track_quality.values()
        )


# ---- LRC -------------------------------------------------------------------
def parity_char(value: int, bits: int) -> int:
    """``value`` (``bits`` data bits) with the odd-parity bit set above them."""
    ones = bin(value & ((1 << bits) - 1)).count("1")
    return value | ((0 if ones % 2 else 1) << bits)


def track_lrc(track: int, chars: bytes | bytearray) -> int:
    """LRC data value over ``chars`` (start sentinel .. end sentinel, ASCII)."""
    offset, low, high, bits = _CHARSET[track]
    lrc = 0
    for char in chars:
        if not low <= char <= high:
            raise TrackError(track, TrackQuality.BAD_CHARACTER, "character outside the track set")
        lrc ^= char - offset
    return lrc & ((1 << bits) - 1)


def lrc_ascii(track: int, chars: bytes | bytearray) -> int:
    """The LRC as the ASCII character readers send after the end sentinel."""
    return track_lrc(track, chars) + _CHARSET[track][0]


# ---- one track ---------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class _Fields:
    """Decoded fields of one track. Internal: holds the PAN, never leaves this module."""

    pan: str
    expiry: str
    service_code: str
    name: str | None


def _frame(track: int, raw: bytes | bytearray, lrc: bool | None) -> bytes:
    """Check sentinels, charset and LRC; return the data between the sentinels."""
    _offset, low, high, _bits = _CHARSET[track]
    limit = TRACK1_MAX_CHARS if track == 1 else TRACK2_MAX_CHARS
    if not raw:
        raise TrackError(track, TrackQuality.MISSING, "no data")
    if raw[0] != _START[track]:
        if bytes(raw[:1]) == b"E" or bytes(raw[1:3]) == b"E?":
            raise TrackError(track, TrackQuality.UNREADABLE, "reader reported the track unreadable")
        raise TrackError(track, TrackQuality.NO_START_SENTINEL, "start sentinel missing")
    end = raw.find(END_SENTINEL, 1)
    if end < 0:
        raise TrackError(track, TrackQuality.NO_END_SENTINEL, "end sentinel missing")
    trailer = len(raw) - end - 1
    if trailer > 1 or (lrc is True and trailer != 1) or (lrc is False and trailer != 0):
        raise TrackError(track, TrackQuality.BAD_FORMAT, "unexpected characters after end sentinel")
    if len(raw) > limit:
        raise TrackError(track, TrackQuality.BAD_FORMAT, f"longer than {limit} characters")
    body = bytes(raw[1:end])
    if body == b"E":
        raise TrackError(track, TrackQuality.UNREADABLE, "reader reported the track unreadable")
    if any(not low <= c <= high for c in raw[: end + 1]):
        raise TrackError(track, TrackQuality.BAD_CHARACTER, "character outside the track set")
    if trailer == 1:
        sent = raw[end + 1]
        if not low <= sent <= high or sent != lrc_ascii(track, raw[: end + 1]):
            raise TrackError(track, TrackQuality.BAD_LRC, "LRC check failed")
    return body


def _check_pan(track: int, pan: str) -> None:
    if not pan.isdigit() or not PAN_MIN_DIGITS <= len(pan) <= PAN_MAX_DIGITS:
        raise TrackError(
            track,
            TrackQuality.BAD_PAN,
            f"PAN must be {PAN_MIN_DIGITS}-{PAN_MAX_DIGITS} digits",
        )
    if not luhn_ok(pan):
        raise TrackError(track, TrackQuality.BAD_PAN, "PAN check digit (Luhn) is wrong")


def _expiry_and_service(track: int, tail: str) -> tuple[str, str]:
    expiry, service = tail[:4], tail[4:7]
    if len(expiry) != 4 or not expiry.isdigit():
        raise TrackError(track, TrackQuality.BAD_FORMAT, "expiry date must be 4 digits YYMM")
    if not 1 <= int(expiry[2:]) <= 12:
        raise TrackError(track, TrackQuality.BAD_FORMAT, "expiry month must be 01-12")
    if len(service) != 3 or not service.isdigit():
        raise TrackError(track, TrackQuality.BAD_FORMAT, "service code must be 3 digits")
    return expiry, service


def parse_track1(raw: bytes | bytearray, *, lrc: bool | None = None) -> _Fields:
    """Validate track 1; ``lrc`` True/False demands/forbids an LRC, None accepts both."""
    body = _frame(1, raw, lrc).decode("ascii")
    if "%" in body:
        raise TrackError(1, TrackQuality.BAD_CHARACTER, "start sentinel inside the data")
    if not body.startswith("B"):
        raise TrackError(1, TrackQuality.BAD_FORMAT, "format code must be 'B'")
    parts = body[1:].split("^")
    if len(parts) != 3:
        raise TrackError(1, TrackQuality.BAD_FORMAT, "expected 2 field separators '^'")
    pan, name, tail = parts
    _check_pan(1, pan)
    if not NAME_MIN_CHARS <= len(name) <= NAME_MAX_CHARS:
        raise TrackError(
            1,
            TrackQuality.BAD_FORMAT,
            f"name field must be {NAME_MIN_CHARS}-{NAME_MAX_CHARS} characters",
        )
    expiry, service = _expiry_and_service(1, tail)
    holder = name.strip(" /")
    return _Fields(pan, expiry, service, name if holder else None)


def parse_track2(raw: bytes | bytearray, *, lrc: bool | None = None) -> _Fields:
    """Validate track 2 (see :func:`parse_track1` for ``lrc``)."""
    body = _frame(2, raw, lrc).decode("ascii")
    if any(c not in "0123456789=" for c in body):
        raise TrackError(2, TrackQuality.BAD_CHARACTER, "only digits and '=' allowed in data")
    parts = body.split("=")
    if len(parts) != 2:
        raise TrackError(2, TrackQuality.BAD_FORMAT, "expected exactly one field separator '='")
    pan, tail = parts
    _check_pan(2, pan)
    expiry, service = _expiry_and_service(2, tail)
    return _Fields(pan, expiry, service, None)


# ---- the card ----------------------------------------------------------------
@dataclass(frozen=True)
class CardRead:
    """What a swipe yields. Everything but :attr:`sensitive` may be kept and journaled."""

    masked_pan: str
    brand: str | None
    expiry: str
    """``YYMM`` as on the card."""
    expiry_year: int
    expiry_month: int
    expired: bool
    """Past the end of the expiry month relative to the ``today`` given to :func:`decode_card`."""
    service_code: ServiceCode
    has_cardholder_name: bool
    pan_token: str
    """HMAC-SHA256 of the PAN under the caller's token key, hex."""
    track_quality: dict[int, TrackQuality]
    sensitive: SensitiveTracks = field(repr=False, compare=False)

    @property
    def chip_card(self) -> bool:
        """The service code says the card has a chip (a swipe is a fallback)."""
        return self.service_code.chip

    def wipe(self) -> None:
        self.sensitive.wipe()

    def __enter__(self) -> CardRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wipe()

    def summary(self) -> dict[str, object]:
        """JSON-safe, card-data-free description (CLI output, journal payloads)."""
        return {
            "masked_pan": self.masked_pan,
            "brand": self.brand,
            "expiry": self.expiry,
            "expired": self.expired,
            "service_code": self.service_code.code,
            "chip_card": self.chip_card,
            "has_cardholder_name": self.has_cardholder_name,
            "pan_token": self.pan_token,
            "track_quality": {str(n): q.value for n, q in self.track_quality.items()},
        }


def pan_token(pan: str, token_key: bytes) -> str:
    """HMAC-SHA256 of ``pan`` under ``token_key``, 64 lower-case hex.

    The token sits next to the masked PAN (first 6 and last 4 digits), so the
    key is as sensitive as the PANs themselves: whoever holds it finds the six
    hidden digits by trying 10^5 Luhn-valid candidates. It must never be
    stored, nor derived from anything stored (the agent keeps a random key in
    memory only, see docs/card-data.md). Equal tokens mean the same card only
    under the same key.
    """
    if len(token_key) < MIN_TOKEN_KEY_BYTES:
        raise ValueError(f"token key must be at least {MIN_TOKEN_KEY_BYTES} bytes")
    return hmac.new(token_key, pan.encode("ascii"), hashlib.sha256).hexdigest()


def _parse_all(
    tracks: SensitiveTracks, lrc: bool | None
) -> tuple[dict[int, TrackQuality], dict[int, str], dict[int, _Fields]]:
    quality: dict[int, TrackQuality] = {}
    reasons: dict[int, str] = {}
    good: dict[int, _Fields] = {}
    for number, parse in ((1, parse_track1), (2, parse_track2)):
        raw = tracks.track_buffer(number)
        if raw is None:
            quality[number] = TrackQuality.MISSING
            reasons[number] = "not sent by the reader"
            continue
        try:
            good[number] = parse(raw, lrc=lrc)
            quality[number] = TrackQuality.OK
        except TrackError as exc:
            quality[number], reasons[number] = exc.quality, exc.reason
    return quality, reasons, good


def _consistent(good: dict[int, _Fields], quality: dict[int, TrackQuality]) -> None:
    if 1 in good and 2 in good:
        one, two = good[1], good[2]
        for what, a, b in (
            ("PAN", one.pan, two.pan),
            ("expiry date", one.expiry, two.expiry),
            ("service code", one.service_code, two.service_code),
        ):
            if a != b:
                raise CardUnreadable(
                    quality,
                    {1: f"{what} differs from track 2", 2: f"{what} differs from track 1"},
                    summary="tracks disagree",
                )


def decode_card(
    tracks: SensitiveTracks,
    *,
    token_key: bytes,
    today: date | None = None,
    lrc: bool | None = None,
) -> CardRead:
    """Validate tracks 1 and 2 and build the :class:`CardRead` (track 2 preferred).

    Raises :class:`CardUnreadable` when neither track is usable or they disagree.
    Stores the PAN and name inside ``tracks``; never anywhere else.
    """
    quality, reasons, good = _parse_all(tracks, lrc)
    if not good:
        raise CardUnreadable(quality, reasons)
    _consistent(good, quality)
    best = good.get(2) or good[1]
    name = good[1].name if 1 in good else None
    tracks.set_decoded(best.pan, name)
    today = today or datetime.now(UTC).date()
    year, month = 2000 + int(best.expiry[:2]), int(best.expiry[2:])
    return CardRead(
        masked_pan=mask_pan(best.pan),
        brand=card_brand(best.pan),
        expiry=best.expiry,
        expiry_year=year,
        expiry_month=month,
        expired=(today.year, today.month) > (year, month),
        service_code=parse_service_code(best.service_code),
        has_cardholder_name=name is not None,
        pan_token=pan_token(best.pan, token_key),
        track_quality=quality,
        sensitive=tracks,
    )


# ---- stream splitting --------------------------------------------------------
def _guess_track(chunk: bytes | bytearray, next_track: int) -> int:
    """Which track a chunk without a start sentinel most likely is."""
    four_bit = all(0x30 <= c <= 0x3F for c in chunk)
    return max(next_track, 2) if four_bit else next_track


def split_tracks(body: bytes | bytearray, *, lrc: bool = False) -> SensitiveTracks:
    """Cut a reader's ``%...?;...?+...?`` text into tracks (validation comes later).

    ``lrc`` says whether the reader sends one LRC character after each end
    sentinel. A chunk without a start sentinel is kept under the track it most
    likely is, so the parser can report ``no_start_sentinel`` for it.
    """
    found: dict[int, bytearray] = {}
    pos, next_track, size = 0, 1, len(body)
    while pos < size and next_track <= 3:
        char = body[pos]
        number = next((n for n in (1, 2, 3) if _START[n] == char and n >= next_track), 0)
        end = body.find(END_SENTINEL, pos + 1 if number else pos)
        stop = size if end < 0 else min(size, end + 1 + (1 if lrc else 0))
        chunk = body[pos:stop]
        pos = stop
        if not number:
            number = _guess_track(chunk, next_track)
        found[number] = bytearray(chunk)
        next_track = number + 1
    holder = SensitiveTracks(found.get(1), found.get(2), found.get(3))
    for buf in found.values():
        buf[:] = bytes(len(buf))
    return holder


# ---- encoders (simulator, tests) ---------------------------------------------
def _with_lrc(track: int, text: bytes, lrc: bool) -> bytes:
    return text + bytes([lrc_ascii(track, text)]) if lrc else text


def encode_track1(
    pan: str,
    name: str,
    expiry: str,
    service_code: str,
    discretionary: str = "",
    *,
    lrc: bool = False,
) -> bytes:
    """``%B<pan>^<name>^<YYMM><svc><discretionary>?`` plus the LRC when asked."""
    text = f"%B{pan}^{name}^{expiry}{service_code}{discretionary}?".encode("ascii")
    return _with_lrc(1, text, lrc)


def encode_track2(
    pan: str,
    expiry: str,
    service_code: str,
    discretionary: str = "",
    *,
    lrc: bool = False,
) -> bytes:
    """``;<pan>=<YYMM><svc><discretionary>?`` plus the LRC when asked."""
    text = f";{pan}={expiry}{service_code}{discretionary}?".encode("ascii")
    return _with_lrc(2, text, lrc)
