"""The one holder of raw card data: track bytes, PAN and cardholder name.

DESIGN §5: full track data exists only in memory for the one authorization
call, then is overwritten. :class:`SensitiveTracks` keeps everything in
``bytearray`` buffers and :meth:`SensitiveTracks.wipe` zero-fills them; after
a wipe every accessor raises :class:`SensitiveDataWiped`. Use it as a context
manager so the wipe cannot be forgotten.

This module must never log, print, pickle, or put card data into ``repr()``,
``str()`` or exception messages. Python cannot guarantee that no copy of a
value ever existed (``bytes``/``str`` returned by the accessors are copies the
caller must drop quickly); the buffers owned here are wiped for certain.
"""

from __future__ import annotations

from types import TracebackType

TRACK_NUMBERS = (1, 2, 3)


class SensitiveDataWiped(RuntimeError):
    """Card data was accessed after :meth:`SensitiveTracks.wipe`."""

    def __init__(self) -> None:
        super().__init__("card data was already wiped after use; read the card again to get it")


class SensitiveTracks:
    """Raw tracks 1–3 (as received, sentinels included) plus the parsed PAN and name.

    A track that was not sent is ``None``. The PAN and name are filled in by
    :func:`posedge.drivers.reader.tracks.decode_card`.
    """

    __slots__ = ("_name", "_pan", "_tracks", "_wiped")

    def __init__(
        self,
        track1: bytes | bytearray | None = None,
        track2: bytes | bytearray | None = None,
        track3: bytes | bytearray | None = None,
    ) -> None:
        self._tracks: dict[int, bytearray | None] = {
            1: None if track1 is None else bytearray(track1),
            2: None if track2 is None else bytearray(track2),
            3: None if track3 is None else bytearray(track3),
        }
        self._pan = bytearray()
        self._name = bytearray()
        self._wiped = False

    # ---- access (raises after wipe) ---------------------------------------
    def _check(self) -> None:
        if self._wiped:
            raise SensitiveDataWiped()

    def track(self, number: int) -> bytes | None:
        """A copy of track ``number`` as received, or None when absent."""
        self._check()
        if number not in TRACK_NUMBERS:
            raise ValueError(f"track number must be 1, 2 or 3, not {number}")
        raw = self._tracks[number]
        return None if raw is None else bytes(raw)

    def track_buffer(self, number: int) -> bytearray | None:
        """The live buffer of track ``number`` (no copy; wiped with this object)."""
        self._check()
        if number not in TRACK_NUMBERS:
            raise ValueError(f"track number must be 1, 2 or 3, not {number}")
        return self._tracks[number]

    def present(self) -> tuple[int, ...]:
        """Numbers of the tracks that were sent (possibly unreadable)."""
        self._check()
        return tuple(n for n in TRACK_NUMBERS if self._tracks[n] is not None)

    @property
    def pan(self) -> str:
        """The full PAN (for the authorization call only)."""
        self._check()
        if not self._pan:
            raise ValueError("no PAN decoded yet; call decode_card first")
        return self._pan.decode("ascii")

    @property
    def cardholder_name(self) -> str | None:
        """The name from track 1 (``SURNAME/FIRST``) or None when not on the card."""
        self._check()
        return self._name.decode("ascii") if self._name else None

    def set_decoded(self, pan: str, name: str | None) -> None:
        """Store the PAN and name found by the track parser."""
        self._check()
        self._wipe_buffer(self._pan)
        self._wipe_buffer(self._name)
        self._pan = bytearray(pan.encode("ascii"))
        self._name = bytearray((name or "").encode("ascii"))

    # ---- wiping --------------------------------------------------------------
    @property
    def wiped(self) -> bool:
        return self._wiped

    @staticmethod
    def _wipe_buffer(buf: bytearray | None) -> None:
        if buf:
            buf[:] = bytes(len(buf))

    def wipe(self) -> None:
        """Zero-fill every buffer. Idempotent; later access raises."""
        for raw in self._tracks.values():
            self._wipe_buffer(raw)
        self._wipe_buffer(self._pan)
        self._wipe_buffer(self._name)
        self._wiped = True

    def raw_buffers(self) -> tuple[bytearray, ...]:
        """Every owned buffer, for tests that prove the wipe (works after wipe)."""
        out = [b for b in self._tracks.values() if b is not None]
        return (*out, self._pan, self._name)

    def __enter__(self) -> SensitiveTracks:
        self._check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()

    def __del__(self) -> None:
        self.wipe()

    def __repr__(self) -> str:
        if self._wiped:
            return "<SensitiveTracks wiped>"
        present = ",".join(str(n) for n in TRACK_NUMBERS if self._tracks[n] is not None)
        return f"<SensitiveTracks tracks=[{present}] (card data hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SensitiveTracks must never be pickled or copied")
