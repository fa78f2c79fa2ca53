"""The terminal registry: enrolment codes, device public keys, hashed tokens, revocation.

docs/sync-protocol.md, "Enrolment and signed history". A terminal is added by
the operator (``posedge backoffice terminals add STORE/LANE``), which issues a
one-time enrolment code; the terminal enrols with it (``POST /v1/enrol``),
registering its Ed25519 public key and receiving its bearer token. From then on
every events batch it uploads must carry a valid signature by that key.

What is stored (table ``terminal_registry``, created by schema migration 3):
the terminal id, store and lane; the public key; the SHA-256 of the current
token (never the token) and, after a rotation, of the token before it (accepted
by the rotation endpoint only, until the new token is first used, so a rotation
whose reply was lost can be repeated); the SHA-256 of the enrolment code with
its expiry and the time it was used; the status (``active`` or ``revoked``)
and the created, enrolled, token-rotated and revoked times (epoch seconds).
Table ``terminal_rotation_nonces`` records every nonce a rotation used, so a
captured rotation request cannot be replayed.

Tokens and codes are random (256 and 80 bits); a presented token is hashed and
looked up by its hash, then compared with :func:`hmac.compare_digest`. The SQL
is portable (TEXT/BIGINT columns, ``ON CONFLICT DO NOTHING``, no SQLite-only
syntax, ``?`` placeholders) and runs in the store's transactions on either
backend (:mod:`.db`). Every change that must not race another replica is one
conditional statement whose row count is checked: a code is spent by an
``UPDATE … WHERE code_used_at IS NULL``, a nonce by an ``INSERT … ON CONFLICT
DO NOTHING``, a rotation by an ``UPDATE … WHERE token_hash = <the one read>``. This
module must never log or store a token or a code in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from posedge.protocol.models import TERMINAL_PATTERN
from posedge.protocol.signing import load_public_key

if TYPE_CHECKING:
    from .db import Transaction
    from .store import BackofficeStore

ACTIVE = "active"
REVOKED = "revoked"
DEFAULT_CODE_TTL_S = 24 * 3600
MAX_CODE_TTL_S = 30 * 86400
MIN_CODE_TTL_S = 60
# Crockford's base32: no I, L, O, U; typed codes are read leniently (see normalise_code).
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_GROUPS = 4
_CODE_GROUP_LEN = 4
_CODE_TRANSLATION = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})
NAME_PATTERN = r"^[^\x00-\x1f\x7f/]{1,64}$"
_TERMINAL_RE = re.compile(TERMINAL_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)

_COLUMNS = (
    "terminal, store, lane, status, public_key, token_hash, previous_token_hash, code_hash,"
    " code_expires_at, code_used_at, created_at, enrolled_at, token_rotated_at, revoked_at"
)


class RegistryError(ValueError):
    """An operator request the registry refuses; the message says what to do."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe, no spaces."""
    return secrets.token_urlsafe(32)


def new_code() -> str:
    """A one-time enrolment code: 80 random bits as ``XXXX-XXXX-XXXX-XXXX`` (Crockford base32)."""
    chars = [secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_GROUPS * _CODE_GROUP_LEN)]
    return "-".join(
        "".join(chars[i : i + _CODE_GROUP_LEN]) for i in range(0, len(chars), _CODE_GROUP_LEN)
    )


def normalise_code(code: str) -> str:
    """The code as hashed: upper case, without dashes and spaces, O→0 and I/L→1."""
    return code.upper().translate(_CODE_TRANSLATION)


def code_hash(code: str) -> str:
    return sha256_hex("posedge-enrolment-code\n" + normalise_code(code))


def token_hash(token: str) -> str:
    return sha256_hex(token)


def terminal_id_for(store_lane: str, terminal_id: str | None = None) -> tuple[str, str, str]:
    """(terminal id, store, lane) from ``STORE/LANE`` and an optional explicit id.

    The id is ``STORE-LANE`` unless given. Raises :class:`RegistryError` saying what
    is wrong and how to fix it.
    """
    store, sep, lane = store_lane.partition("/")
    if not sep or not store or not lane or "/" in lane:
        raise RegistryError(
            f"{store_lane!r} is not STORE/LANE: write the store and the lane separated by one "
            "slash, e.g. 0042/3 or berlin-mitte/lane-2"
        )
    for what, value in (("store", store), ("lane", lane)):
        if not _NAME_RE.match(value):
            raise RegistryError(
                f"the {what} {value!r} must be 1-64 characters without control characters or '/'"
            )
    candidate = terminal_id if terminal_id is not None else f"{store}-{lane}"
    if not _TERMINAL_RE.match(candidate):
        bad = sorted(
            {ch for ch in candidate if not (ch.isascii() and (ch.isalnum() or ch in "._-"))}
        )
        if not candidate:
            reason = "it is empty"
        elif len(candidate) > 64:
            reason = f"it has {len(candidate)} characters (at most 64)"
        elif bad:
            reason = "it contains " + ", ".join(repr(ch) for ch in bad)
        else:
            reason = "it must start with a letter or a digit"
        fix = (
            "choose another --terminal-id"
            if terminal_id is not None
            else "pass --terminal-id ID to choose one"
        )
        raise RegistryError(
            f"{candidate!r} is not a valid terminal id: {reason}. A terminal id is 1-64 of "
            f"A-Z a-z 0-9 . _ - starting with a letter or digit; {fix}"
        )
    return candidate, store, lane


@dataclass(frozen=True)
class TerminalRecord:
    """One row of the registry. Holds hashes only, never a token or a code."""

    terminal: str
    store: str
    lane: str
    status: str
    public_key: str | None
    token_hash: str | None
    previous_token_hash: str | None
    code_hash: str | None
    code_expires_at: int | None
    code_used_at: int | None
    created_at: int
    enrolled_at: int | None
    token_rotated_at: int | None
    revoked_at: int | None

    @property
    def revoked(self) -> bool:
        return self.status == REVOKED

    @property
    def enrolled(self) -> bool:
        """It has registered a device key: its batches must be signed."""
        return self.public_key is not None

    def state(self, now: float) -> str:
        """What an operator needs to know: revoked, enrolled, awaiting enrolment, code expired."""
        if self.revoked:
            return "revoked"
        if self.code_hash is not None and self.code_used_at is None:
            expired = self.code_expires_at is not None and self.code_expires_at <= now
            if expired:
                return "code expired" if not self.enrolled else "enrolled, new code expired"
            return "awaiting enrolment" if not self.enrolled else "awaiting re-enrolment"
        return "enrolled" if self.enrolled else "awaiting enrolment"

    def public_document(self, now: float) -> dict[str, Any]:
        """For ``terminals list --json``: no hashes."""
        doc = asdict(self)
        for secret in ("token_hash", "previous_token_hash", "code_hash"):
            doc.pop(secret)
        doc["state"] = self.state(now)
        doc["has_token"] = self.token_hash is not None
        return doc


EnrolKind = Literal["ok", "unknown", "used", "expired", "revoked"]
RotateKind = Literal["ok", "unauthorized", "revoked", "not-enrolled", "nonce-reused", "conflict"]


@dataclass(frozen=True)
class EnrolOutcome:
    kind: EnrolKind
    record: TerminalRecord | None = None
    token: str | None = None


@dataclass(frozen=True)
class RotateOutcome:
    kind: RotateKind
    token: str | None = None


class TerminalRegistry:
    """Registry operations on the store's connection and transactions (thread-safe)."""

    def __init__(self, store: BackofficeStore) -> None:
        self._store = store
        self._keys: dict[str, Ed25519PublicKey] = {}

    # -- plumbing: the one place that touches the store's database ----------------------------
    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        with self._store.transaction() as tx:
            yield tx

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return list(self._store.db.execute(sql, params).fetchall())

    def _now(self) -> int:
        return int(self._store.clock())

    @staticmethod
    def _record(row: Any) -> TerminalRecord:
        return TerminalRecord(*row)

    def _get(self, db: Transaction, terminal: str) -> TerminalRecord | None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM terminal_registry WHERE terminal = ?", (terminal,)
        ).fetchone()
        return None if row is None else self._record(row)

    # -- operator --------------------------------------------------------------------------------
    def add(
        self, terminal: str, store: str, lane: str, ttl_s: float = DEFAULT_CODE_TTL_S
    ) -> tuple[TerminalRecord, str]:
        """Register a new terminal and issue its enrolment code (returned once, stored hashed)."""
        code = new_code()
        now = self._now()
        with self._write() as db:
            existing = self._get(db, terminal)
            if existing is not None:
                raise RegistryError(
                    f"terminal {terminal} exists already ({existing.state(now)}, store "
                    f"{existing.store}, lane {existing.lane}); for a new enrolment code run "
                    f"posedge backoffice terminals rotate-token {terminal}, or choose another "
                    "--terminal-id"
                )
            cursor = db.execute(
                "INSERT INTO terminal_registry (terminal, store, lane, status, code_hash,"
                " code_expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (terminal, store, lane, ACTIVE, code_hash(code), now + int(ttl_s), now),
            )
            if cursor.rowcount != 1:  # added meanwhile by another process
                raise RegistryError(f"terminal {terminal} exists already; choose another id")
            record = self._get(db, terminal)
        assert record is not None
        return record, code

    def new_code(
        self, terminal: str, ttl_s: float = DEFAULT_CODE_TTL_S
    ) -> tuple[TerminalRecord, str]:
        """``terminals rotate-token``: the terminal's tokens stop working at once and a new
        enrolment code is issued; enrolling with it registers a new device key and token."""
        code = new_code()
        now = self._now()
        with self._write() as db:
            record = self._get(db, terminal)
            if record is None:
                raise RegistryError(
                    f"no terminal {terminal} in the registry; add it with posedge backoffice "
                    "terminals add STORE/LANE"
                )
            if record.revoked:
                raise RegistryError(
                    f"terminal {terminal} is revoked; a revoked terminal cannot enrol again. "
                    "Add the replacement as a new terminal (posedge backoffice terminals add "
                    "STORE/LANE --terminal-id NEW-ID)"
                )
            db.execute(
                "UPDATE terminal_registry SET token_hash = NULL, previous_token_hash = NULL,"
                " code_hash = ?, code_expires_at = ?, code_used_at = NULL, token_rotated_at = ?"
                " WHERE terminal = ?",
                (code_hash(code), now + int(ttl_s), now, terminal),
            )
            updated = self._get(db, terminal)
        assert updated is not None
        return updated, code

    def revoke(self, terminal: str) -> TerminalRecord:
        """Refuse the terminal's token, key and any outstanding code from now on, everywhere."""
        now = self._now()
        with self._write() as db:
            record = self._get(db, terminal)
            if record is None:
                raise RegistryError(f"no terminal {terminal} in the registry")
            if not record.revoked:
                db.execute(
                    "UPDATE terminal_registry SET status = ?, revoked_at = ? WHERE terminal = ?",
                    (REVOKED, now, terminal),
                )
            updated = self._get(db, terminal)
        assert updated is not None
        return updated

    def terminals(self) -> list[TerminalRecord]:
        rows = self._read(f"SELECT {_COLUMNS} FROM terminal_registry ORDER BY terminal")
        return [self._record(row) for row in rows]

    def get(self, terminal: str, db: Transaction | None = None) -> TerminalRecord | None:
        """The terminal's record, or None; read in ``db`` when given (a caller's transaction)."""
        if db is not None:
            return self._get(db, terminal)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM terminal_registry WHERE terminal = ?", (terminal,)
        )
        return self._record(rows[0]) if rows else None

    # -- terminals -------------------------------------------------------------------------------
    def by_token(self, token: str) -> TerminalRecord | None:
        """The terminal whose current token this is (revoked ones included: the caller refuses
        them with 403), or None. Looked up by hash, then compared in constant time."""
        digest = token_hash(token)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM terminal_registry WHERE token_hash = ?", (digest,)
        )
        if not rows:
            return None
        record = self._record(rows[0])
        stored = record.token_hash or ""
        return record if hmac.compare_digest(stored.encode(), digest.encode()) else None

    def by_previous_token(self, terminal: str, token: str) -> TerminalRecord | None:
        """``terminal`` when ``token`` is its token before the last rotation (rotation only)."""
        record = self.get(terminal)
        if record is None or record.previous_token_hash is None:
            return None
        digest = token_hash(token).encode()
        return record if hmac.compare_digest(record.previous_token_hash.encode(), digest) else None

    def forget_previous_token(self, terminal: str) -> None:
        """The new token was used: the one before it is refused by the rotation endpoint too."""
        with self._write() as db:
            db.execute(
                "UPDATE terminal_registry SET previous_token_hash = NULL WHERE terminal = ?",
                (terminal,),
            )

    def public_key(self, record: TerminalRecord) -> Ed25519PublicKey:
        """The parsed key of an enrolled terminal (cached by its text)."""
        assert record.public_key is not None
        key = self._keys.get(record.public_key)
        if key is None:
            key = load_public_key(record.public_key)
            if len(self._keys) > 65536:
                self._keys.clear()
            self._keys[record.public_key] = key
        return key

    def enrol(self, code: str, public_key: str) -> EnrolOutcome:
        """Spend a one-time code: register ``public_key`` and issue the terminal's token."""
        digest = code_hash(code)
        token = new_token()
        now = self._now()
        with self._write() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM terminal_registry WHERE code_hash = ?", (digest,)
            ).fetchone()
            if row is None:
                return EnrolOutcome("unknown")
            record = self._record(row)
            if record.revoked:
                return EnrolOutcome("revoked", record)
            if record.code_used_at is not None:
                return EnrolOutcome("used", record)
            if record.code_expires_at is None or record.code_expires_at <= now:
                return EnrolOutcome("expired", record)
            cursor = db.execute(
                "UPDATE terminal_registry SET public_key = ?, token_hash = ?,"
                " previous_token_hash = NULL, code_used_at = ?, enrolled_at = ?"
                " WHERE terminal = ? AND code_hash = ? AND code_used_at IS NULL AND status = ?",
                (public_key, token_hash(token), now, now, record.terminal, digest, ACTIVE),
            )
            if cursor.rowcount != 1:  # another replica spent it first
                return EnrolOutcome("used", record)
            enrolled = self._get(db, record.terminal)
        return EnrolOutcome("ok", enrolled, token)

    def rotate(self, terminal: str, presented: str, nonce: str) -> RotateOutcome:
        """Issue a new token for ``terminal``, authenticated by ``presented`` (its current
        token, or the one before the last rotation) — the caller has verified the device
        key's signature over the nonce. Each nonce works once."""
        presented_hash = token_hash(presented)
        token = new_token()
        now = self._now()
        with self._write() as db:
            record = self._get(db, terminal)
            if record is None:
                return RotateOutcome("unauthorized")
            if record.revoked:
                return RotateOutcome("revoked")
            if not record.enrolled:
                return RotateOutcome("not-enrolled")
            current = record.token_hash or ""
            previous = record.previous_token_hash or ""
            is_current = hmac.compare_digest(current.encode(), presented_hash.encode())
            is_previous = hmac.compare_digest(previous.encode(), presented_hash.encode())
            if not (current and is_current) and not (previous and is_previous):
                return RotateOutcome("unauthorized")
            cursor = db.execute(
                "INSERT INTO terminal_rotation_nonces (terminal, nonce_hash, used_at)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (terminal, sha256_hex(nonce), now),
            )
            if cursor.rowcount != 1:
                return RotateOutcome("nonce-reused")
            # The token the terminal holds stays good for rotating again (a lost reply),
            # and for nothing else.
            keep = presented_hash if is_current else record.previous_token_hash
            cursor = db.execute(
                "UPDATE terminal_registry SET token_hash = ?, previous_token_hash = ?,"
                " token_rotated_at = ? WHERE terminal = ? AND token_hash = ?",
                (token_hash(token), keep, now, terminal, record.token_hash),
            )
            if cursor.rowcount != 1:
                return RotateOutcome("conflict")
        return RotateOutcome("ok", token)

    def public_document(self, now: float | None = None) -> list[dict[str, Any]]:
        when = self._store.clock() if now is None else now
        return [record.public_document(when) for record in self.terminals()]


__all__ = [
    "ACTIVE",
    "DEFAULT_CODE_TTL_S",
    "REVOKED",
    "EnrolOutcome",
    "RegistryError",
    "RotateOutcome",
    "TerminalRecord",
    "TerminalRegistry",
    "code_hash",
    "new_code",
    "normalise_code",
    "terminal_id_for",
    "token_hash",
]
