"""Staff accounts of the dashboard: user names and scrypt password hashes (table staff_users).

Staff logins are not terminals: a terminal's bearer token never opens the dashboard, and
a staff session never authenticates the sync protocol. Passwords are hashed with scrypt
(hashlib, memory-hard) under a random salt per password; this module must never store,
log or return a password in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from ..store import BackofficeStore

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
# scrypt cost: one of OWASP's equal-strength minimums (N=2^15, r=8, p=3: 32 MiB, about
# 0.5 s on this project's 2-vCPU machines). Stored with each hash, so it can be raised later.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 3
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32


class StaffError(ValueError):
    """A staff account request that cannot be done; the message says what to change."""


class UnknownStaff(StaffError, LookupError):
    """No staff user of that name."""


@dataclass(frozen=True)
class StaffUser:
    username: str
    created_at: float
    password_changed_at: float


def check_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise StaffError(
            f"user name {username[:80]!r} is not allowed: 1-64 characters, letters, digits "
            "and . _ @ -, starting with a letter or digit"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise StaffError(
            f"the password has {len(password)} characters; give at least {MIN_PASSWORD_CHARS}"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise StaffError(f"the password is over {MAX_PASSWORD_CHARS} characters")
    if "\x00" in password:
        raise StaffError("the password contains a NUL character")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$key`` (base64): what staff_users keeps instead of the password."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM, dklen=KEY_BYTES,
    )  # fmt: skip
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
            p=int(p), maxmem=SCRYPT_MAXMEM, dklen=len(expected),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Checked when the user does not exist, so an unknown name costs as much as a wrong password.
_DUMMY_HASH = hash_password("posedge-dashboard-dummy", salt=b"\x00" * SALT_BYTES)


class StaffAccounts:
    """Add, list, remove staff users and change their passwords (table staff_users)."""

    def __init__(self, store: BackofficeStore) -> None:
        self.store = store

    def add(self, username: str, password: str) -> StaffUser:
        check_username(username)
        check_password(password)
        hashed = hash_password(password)
        now = time.time()
        with self.store.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO staff_users (username, password_hash, created_at,"
                " password_changed_at) VALUES (?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
                (username, hashed, now, now),
            ).rowcount
        if inserted != 1:
            raise StaffError(
                f"staff user {username!r} exists already; change the password with "
                "`posedge backoffice staff passwd`"
            )
        return StaffUser(username, now, now)

    def list(self) -> list[StaffUser]:
        rows = self.store.db.execute(
            "SELECT username, created_at, password_changed_at FROM staff_users ORDER BY username"
        ).rows
        return [StaffUser(str(r[0]), float(r[1]), float(r[2])) for r in rows]

    def remove(self, username: str) -> int:
        """Remove the user and end its sessions; returns the sessions ended."""
        with self.store.transaction() as tx:
            gone = tx.execute("DELETE FROM staff_users WHERE username = ?", (username,)).rowcount
            ended = tx.execute("DELETE FROM staff_sessions WHERE username = ?", (username,))
        if gone != 1:
            raise self._unknown(username)  # outside the transaction: it reads the users
        return ended.rowcount

    def set_password(self, username: str, password: str) -> int:
        """A new password; every session of the user ends. Returns the sessions ended."""
        check_password(password)
        hashed = hash_password(password)
        with self.store.transaction() as tx:
            changed = tx.execute(
                "UPDATE staff_users SET password_hash = ?, password_changed_at = ?"
                " WHERE username = ?",
                (hashed, time.time(), username),
            ).rowcount
            ended = tx.execute("DELETE FROM staff_sessions WHERE username = ?", (username,))
        if changed != 1:
            raise self._unknown(username)  # outside the transaction: it reads the users
        return ended.rowcount

    def authenticate(self, username: str, password: str) -> bool:
        """Whether the user exists and the password is its password (same cost either way)."""
        row = self.store.db.execute(
            "SELECT password_hash FROM staff_users WHERE username = ?", (username,)
        ).fetchone()
        stored = _DUMMY_HASH if row is None else str(row[0])
        ok = verify_password(password, stored)
        return ok and row is not None

    def _unknown(self, username: str) -> UnknownStaff:
        known = ", ".join(u.username for u in self.list()[:20]) or "none yet"
        return UnknownStaff(f"no staff user {username[:80]!r}; staff users: {known}")
