"""What must never leave the terminal in a support bundle: card data and secrets.

Two layers, one set of rules:

* :func:`scrub_text` / :func:`scrub_value` clean what the bundle collects: track data
  is removed, card numbers are masked (first 6 / last 4, :func:`posedge.agent.carddata.redact`),
  URL credentials are removed, and a known secret that appears *verbatim* (a token
  pasted into a setting or a log line) is replaced by ``[secret removed]``.
* :func:`scan_member` is the final check over the built bundle, member by member: a
  card number (Luhn, card-network prefix, also in other scripts' digits and behind
  JSON ``\\uXXXX`` escapes), track data, or a known secret in any encoding checked here
  (raw, JSON-escaped, percent-encoded, hex in either case, standard and URL-safe
  base64 at every byte alignment) is a :class:`Leak`; the bundle is refused.

A secret that shows up encoded (a key as hex in a log line) is not scrubbed on
purpose: it means something wrote a key where it must never be, and the site should
know. The secrets come from the state directory (:func:`load_secrets`): the till API
and sync tokens, ``*.key`` files (``device.key``, ``vault.key``, ``signing.key``), and
the token and client key files the configuration names.

Nothing here ever logs, prints or puts a secret or a card number into a message: a
:class:`Leak` names the member, the kind and the secret's *file name* only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posedge.drivers.reader.pan import looks_like_pan, mask_pan

from ..carddata import find_card_data, redact
from ..errors import PosedgeError
from ..statedir import read_file_nofollow

SECRET_REMOVED = "[secret removed]"
TRACK_REMOVED = "[track data removed]"
CREDENTIALS_REMOVED = "credentials-removed"
"""No spaces or brackets: the URL stays a URL, so its host is still obfuscated."""
MIN_SECRET_BYTES = 12
"""Shorter "secrets" (an empty or placeholder token file) would match everywhere."""
MIN_NEEDLE_CHARS = 12
"""An encoded fragment shorter than this is not searched for (too many chance hits)."""
SECRET_FILE_NAMES = ("api-token", "sync-token")
"""Token files in the state directory, besides every ``*.key`` there."""

# Track 1: %B PAN ^ NAME ^ YYMM service code, discretionary data ? (ISO/IEC 7813).
# Track 2: ; PAN = YYMM service code, discretionary data ?
_TRACK1_SCRUB = re.compile(r"%?[Bb]\d{12,19}\^[^^\n\"]{0,26}\^\d{4}[^?\n\"]*\??")
_TRACK2_SCRUB = re.compile(r";?(?<![\d*])\d{12,19}=\d{4}[\d=:<>]*\??")
_TRACK1_FIND = re.compile(r"[Bb]\d{12,19}\^[^^\n]{0,26}\^\d{7}")
_TRACK2_FIND = re.compile(r"(?<!\d)\d{12,19}=\d{7}")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s\"'<>]+@")
_JSON_UNICODE_ESCAPE = re.compile(r"\\u[0-9A-Fa-f]{4}")


# ---- secrets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Secret:
    name: str
    """Where it came from (a file name): safe to show."""
    raw: bytes
    text: str | None
    """The secret as text when it is one (a token), for verbatim scrubbing."""


@dataclass
class SecretSet:
    secrets: list[Secret] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Secret files that exist but could not be read, so could not be checked for."""
    _needles: list[tuple[bytes, str, str, bool]] | None = field(default=None, repr=False)

    def add(self, name: str, data: bytes) -> None:
        for raw in {data, data.strip()}:
            if len(raw) < MIN_SECRET_BYTES:
                continue
            try:
                text: str | None = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            self.secrets.append(Secret(name, raw, text))
            for part in _pem_parts(raw):
                self.secrets.append(Secret(name, part, None))
        self._needles = None

    def texts(self) -> list[tuple[str, str]]:
        """(name, text) of the secrets that are text, longest first (for scrubbing)."""
        out = {(s.name, s.text) for s in self.secrets if s.text is not None}
        return sorted(out, key=lambda pair: (-len(pair[1]), pair))

    def needles(self) -> list[tuple[bytes, str, str, bool]]:
        """(needle, secret name, encoding, case-insensitive) for the scanner."""
        if self._needles is None:
            seen: set[tuple[bytes, bool]] = set()
            needles: list[tuple[bytes, str, str, bool]] = []
            for secret in self.secrets:
                for needle, encoding, folded in _encodings(secret):
                    if folded:
                        needle = needle.lower()
                    if len(needle) >= MIN_NEEDLE_CHARS and (needle, folded) not in seen:
                        seen.add((needle, folded))
                        needles.append((needle, secret.name, encoding, folded))
            self._needles = needles
        return self._needles


def _pem_parts(raw: bytes) -> Iterator[bytes]:
    """A PEM file's body (the DER bytes) and, for an Ed25519/X25519 key, the raw key."""
    if b"-----BEGIN" not in raw:
        return
    body = b"".join(
        line.strip() for line in raw.splitlines() if line.strip() and not line.startswith(b"-----")
    )
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return
    yield der
    if len(der) == 48:  # PKCS#8 Ed25519: 16 bytes of header, then the 32-byte seed
        yield der[16:]


def _encodings(secret: Secret) -> Iterator[tuple[bytes, str, bool]]:
    raw = secret.raw
    yield raw, "raw", False
    yield raw.hex().encode(), "hex", True
    for name, alphabet in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            yield _aligned_base64(raw, shift, alphabet), name, False
    if secret.text is not None:
        escaped = json.dumps(secret.text)[1:-1]
        yield escaped.encode(), "JSON-escaped", False
        yield escaped.replace("/", "\\/").encode(), "JSON-escaped", False
        quoted = urllib.parse.quote(secret.text, safe="")
        if quoted != secret.text:
            yield quoted.encode(), "percent-encoded", True


def _aligned_base64(raw: bytes, shift: int, encode: Any) -> bytes:
    """The base64 characters that encode only ``raw``'s bits when ``raw`` starts
    ``shift`` bytes into a longer encoded stream."""
    encoded: bytes = encode(b"\0" * shift + raw)
    start = -(-8 * shift // 6)  # ceil
    end = (8 * (shift + len(raw))) // 6
    return encoded[start:end]


def load_secrets(state_dir: Path, extra_files: Iterable[Path] = ()) -> SecretSet:
    """The secrets to keep out: token files and ``*.key`` in ``state_dir``, plus
    ``extra_files`` (the configured token and client key files). Missing files are
    skipped; a file that exists but cannot be read is listed in ``unreadable``."""
    found = SecretSet()
    paths: list[Path] = [state_dir / name for name in SECRET_FILE_NAMES]
    with contextlib.suppress(OSError):
        paths += sorted(p for p in state_dir.iterdir() if p.name.endswith(".key"))
    paths += list(extra_files)
    seen: set[Path] = set()
    for path in paths:
        if path in seen:
            continue
        seen.add(path)
        try:
            data = read_file_nofollow(path, what="a secret to keep out of the support bundle")
        except FileNotFoundError:
            continue
        except (OSError, PosedgeError):  # unreadable: reported, never fatal
            found.unreadable.append(str(path))
            continue
        found.add(path.name, data)
    return found


# ---- scrubbing --------------------------------------------------------------------------
def scrub_text(text: str, secrets: SecretSet) -> str:
    """Track data removed, card numbers masked, URL credentials and verbatim secrets
    replaced."""
    for _name, secret in secrets.texts():
        if secret in text:
            text = text.replace(secret, SECRET_REMOVED)
    text = _TRACK1_SCRUB.sub(TRACK_REMOVED, text)
    text = _TRACK2_SCRUB.sub(TRACK_REMOVED, text)
    text = _URL_CREDENTIALS.sub(CREDENTIALS_REMOVED + "@", text)
    return redact(text)


def scrub_value(value: Any, secrets: SecretSet) -> Any:
    """:func:`scrub_text` over every string (keys too) of a JSON-like value; a number that
    is a card number (an integer, or a float with nothing after the point) becomes its
    masked text."""
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {scrub_text(str(k), secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(item, secrets) for item in value]
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if type(number) is int and abs(number) < 10**19 and looks_like_pan(str(abs(number))):
        return mask_pan(str(abs(number)))
    return value


# ---- the final scanner ------------------------------------------------------------------
@dataclass(frozen=True)
class Leak:
    member: str
    kind: str
    """What was found, e.g. ``a card number`` or ``device.key as hex``; never the data."""

    def __str__(self) -> str:
        return f"{self.member}: {self.kind}"


def scan_member(name: str, data: bytes, secrets: SecretSet) -> list[Leak]:
    """Every kind of card data or secret in one member's bytes (one Leak per kind)."""
    kinds: list[str] = []
    folded = data.lower()
    for needle, secret_name, encoding, case_insensitive in secrets.needles():
        if needle in (folded if case_insensitive else data):
            kinds.append(f"{secret_name} ({encoding})")
    text = data.decode("utf-8", errors="replace")
    documents, rest = _json_documents(name, text)
    for document in documents:  # decoded: \u escapes undone, numbers as numbers
        kinds += _value_kinds(document)
    if rest:  # text that is not JSON: as written, and with any \u escapes undone
        kinds += _card_data_kinds(rest)
        if _JSON_UNICODE_ESCAPE.search(rest):
            kinds += _card_data_kinds(_unescape_json(rest))
    unique = list(dict.fromkeys(kinds))
    return [Leak(name, kind) for kind in unique]


def _unescape_json(text: str) -> str:
    return _JSON_UNICODE_ESCAPE.sub(lambda m: chr(int(m.group()[2:], 16)), text)


def _card_data_kinds(text: str) -> list[str]:
    kinds = []
    if find_card_data(text):
        kinds.append("a card number")
    if _TRACK1_FIND.search(text) or _TRACK2_FIND.search(text):
        kinds.append("track data")
    return kinds


def _json_documents(name: str, text: str) -> tuple[list[Any], str]:
    """A ``.json`` member's document or a ``.jsonl`` member's lines, and the text that is
    not JSON (a float's digits, ``0.36000000000000004``, are never read as a card number
    in a document; an integral float is checked as the integer it is)."""
    if name.endswith(".json"):
        try:
            return [json.loads(text)], ""
        except ValueError:
            return [], text
    if name.endswith(".jsonl"):
        documents, rest = [], []
        for line in text.splitlines():
            try:
                documents.append(json.loads(line))
            except ValueError:
                rest.append(line)
        return documents, "\n".join(rest)
    return [], text


def _value_kinds(value: Any) -> list[str]:
    """Card data in the decoded strings and numbers of a JSON document."""
    if isinstance(value, str):
        return _card_data_kinds(value)
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            out += _card_data_kinds(str(key)) + _value_kinds(item)
        return out
    if isinstance(value, list):
        return [kind for item in value for kind in _value_kinds(item)]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e19:
        value = int(value)
    if type(value) is int and looks_like_pan(str(abs(value))):
        return ["a card number"]
    return []


__all__ = [
    "SECRET_REMOVED",
    "TRACK_REMOVED",
    "Leak",
    "Secret",
    "SecretSet",
    "load_secrets",
    "scan_member",
    "scrub_text",
    "scrub_value",
]
