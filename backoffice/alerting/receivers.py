"""Where notifications go: webhooks (URL and a signing secret) and Alertmanager (its base
URL), in table alert_receivers, so every replica delivers to the same places.

A webhook's secret is generated here (``whsec_…``), shown once when the receiver is
added and never listed again. Removing a receiver drops its undelivered notifications.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ..store import BackofficeStore

ReceiverKind = Literal["webhook", "alertmanager"]
RECEIVER_KINDS: tuple[ReceiverKind, ...] = ("webhook", "alertmanager")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ALERTMANAGER_PATH = "/api/v2/alerts"
MAX_URL_LENGTH = 2000


class ReceiverError(ValueError):
    """A bad receiver name, URL or kind, a duplicate or an unknown receiver."""


@dataclass(frozen=True)
class Receiver:
    name: str
    kind: ReceiverKind
    url: str
    secret: str | None
    created_at: float

    @property
    def target(self) -> str:
        """Where to POST: Alertmanager's alerts endpoint under its base URL."""
        if self.kind == "alertmanager" and not self.url.rstrip("/").endswith(ALERTMANAGER_PATH):
            return self.url.rstrip("/") + ALERTMANAGER_PATH
        return self.url

    def public_document(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {"name": self.name, "kind": self.kind, "url": shown_url(self.url),
                "signed": self.secret is not None, "created_at": self.created_at}  # fmt: skip


def shown_url(url: str) -> str:
    """The URL with any password in it as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ReceiverError(
            f"receiver name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; the message says what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise ReceiverError(f"receiver URL is {len(url)} characters; at most {MAX_URL_LENGTH}")
    if any(c.isspace() for c in url):
        raise ReceiverError(f"receiver URL {shown_url(url)!r} contains white space")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ReceiverError(f"receiver URL {shown_url(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ReceiverError(
            f"receiver URL {shown_url(url)!r}: the scheme must be http or https, "
            f"not {parts.scheme or 'missing'!r} (e.g. https://hooks.example.com/posedge)"
        )
    if not parts.hostname:
        raise ReceiverError(f"receiver URL {shown_url(url)!r} names no host")
    if port == 0:
        raise ReceiverError(f"receiver URL {shown_url(url)!r}: port 0 cannot be reached")
    if parts.fragment:
        raise ReceiverError(f"receiver URL {shown_url(url)!r}: drop the #fragment")
    return url


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Receivers:
    """Receiver records in the store's database."""

    def __init__(self, store: BackofficeStore) -> None:
        self.store = store

    def add(self, name: str, kind: str, url: str, secret: str | None = None) -> Receiver:
        check_name(name)
        if kind not in RECEIVER_KINDS:
            raise ReceiverError(f"receiver kind {kind!r}: use webhook or alertmanager")
        check_url(url)
        if kind == "webhook":
            secret = secret or new_secret()
            if len(secret) < 16:
                raise ReceiverError("a webhook secret needs at least 16 characters")
        else:
            secret = None
        now = self.store.clock()
        with self.store.transaction() as tx:
            written = tx.execute(
                "INSERT INTO alert_receivers (name, kind, url, secret, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, kind, url, secret, now),
            ).rowcount
        if not written:
            raise ReceiverError(
                f"receiver {name} exists already; remove it first "
                f"(posedge backoffice alerts receivers remove {name})"
            )
        return Receiver(name, kind, url, secret, now)

    def list(self) -> list[Receiver]:
        rows = self.store.db.execute(
            "SELECT name, kind, url, secret, created_at FROM alert_receivers ORDER BY name"
        ).rows
        return [Receiver(str(r[0]), r[1], str(r[2]), r[3], float(r[4])) for r in rows]

    def get(self, name: str) -> Receiver | None:
        return next((r for r in self.list() if r.name == name), None)

    def remove(self, name: str) -> int:
        """Remove ``name``; returns how many undelivered notifications were dropped."""
        with self.store.transaction() as tx:
            gone = tx.execute("DELETE FROM alert_receivers WHERE name = ?", (name,)).rowcount
            if not gone:
                known = [str(r[0]) for r in tx.execute(
                    "SELECT name FROM alert_receivers ORDER BY name").rows]  # fmt: skip
                raise ReceiverError(
                    f"no receiver {name[:80]!r}; receivers: {', '.join(known) or 'none'}"
                )
            return tx.execute(
                "DELETE FROM alert_outbox WHERE receiver = ? AND delivered_at IS NULL", (name,)
            ).rowcount
