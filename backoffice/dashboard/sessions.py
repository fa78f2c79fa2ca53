"""Staff sessions and the login rate limit, in the database (tables staff_sessions and
staff_login_failures), so every replica on one PostgreSQL database honours them.

A session is a random 256-bit cookie value; the table keeps only its SHA-256, so a copy of
the database opens no browser session. Each session has its own CSRF token for its forms.
A session ends at logout, after ``IDLE_TIMEOUT_S`` without a request, ``ABSOLUTE_TIMEOUT_S``
after the login, or when its user is removed or changes password. This module must never
log a cookie value, a CSRF token or a password.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import BackofficeStore

IDLE_TIMEOUT_S = 30 * 60.0
ABSOLUTE_TIMEOUT_S = 12 * 3600.0
# last_seen_at is written at most this often per session (not on every page view).
TOUCH_EVERY_S = 60.0
# Failed logins counted over this window; over a limit, logins are refused until the
# oldest counted failure leaves the window.
FAILURE_WINDOW_S = 15 * 60.0
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


@dataclass(frozen=True)
class Session:
    username: str
    csrf_token: str
    created_at: float
    last_seen_at: float


def cookie_digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Create, look up and end sessions; count failed logins."""

    def __init__(self, store: BackofficeStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def create(self, username: str) -> tuple[str, Session]:
        """A new session for ``username``: (the cookie value, the session)."""
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(username, secrets.token_urlsafe(32), now, now)
        with self.store.transaction() as tx:
            tx.execute(
                "DELETE FROM staff_sessions WHERE last_seen_at < ? OR created_at < ?",
                (now - IDLE_TIMEOUT_S, now - ABSOLUTE_TIMEOUT_S),
            )
            tx.execute(
                "INSERT INTO staff_sessions (id_hash, username, csrf_token, created_at,"
                " last_seen_at) VALUES (?, ?, ?, ?, ?)",
                (cookie_digest(cookie), username, session.csrf_token, now, now),
            )
        return cookie, session

    def lookup(self, cookie: str) -> Session | None:
        """The live session of this cookie (its idle clock restarted), or None."""
        if not cookie or len(cookie) > 128:
            return None
        digest = cookie_digest(cookie)
        row = self.store.db.execute(
            "SELECT s.username, s.csrf_token, s.created_at, s.last_seen_at FROM staff_sessions s"
            " JOIN staff_users u ON u.username = s.username WHERE s.id_hash = ?",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        now = self.clock()
        session = Session(str(row[0]), str(row[1]), float(row[2]), float(row[3]))
        if now - session.last_seen_at > IDLE_TIMEOUT_S or (
            now - session.created_at > ABSOLUTE_TIMEOUT_S
        ):
            self.end(cookie)
            return None
        if now - session.last_seen_at >= TOUCH_EVERY_S:
            self.store.db.execute(
                "UPDATE staff_sessions SET last_seen_at = ? WHERE id_hash = ?", (now, digest)
            )
        return session

    def end(self, cookie: str) -> None:
        self.store.db.execute(
            "DELETE FROM staff_sessions WHERE id_hash = ?", (cookie_digest(cookie),)
        )

    # -- the login rate limit ----------------------------------------------------------------

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until a login for this user from this address may be tried (0: now)."""
        now = self.clock()
        wait = 0.0
        for scope, subject, limit in (
            ("user", username, MAX_FAILURES_PER_USER),
            ("address", address, MAX_FAILURES_PER_ADDRESS),
        ):
            rows = self.store.db.execute(
                "SELECT at FROM staff_login_failures WHERE scope = ? AND subject = ? AND at > ?"
                " ORDER BY at DESC LIMIT ?",
                (scope, subject, now - FAILURE_WINDOW_S, limit),
            ).rows
            if len(rows) >= limit:
                oldest = float(rows[-1][0])
                wait = max(wait, oldest + FAILURE_WINDOW_S - now)
        return wait

    def record_failure(self, username: str, address: str) -> None:
        now = self.clock()
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM staff_login_failures WHERE at < ?", (now - FAILURE_WINDOW_S,))
            tx.executemany(
                "INSERT INTO staff_login_failures (scope, subject, at) VALUES (?, ?, ?)",
                [("user", username, now), ("address", address, now)],
            )

    def clear_failures(self, username: str) -> None:
        self.store.db.execute(
            "DELETE FROM staff_login_failures WHERE scope = 'user' AND subject = ?", (username,)
        )
