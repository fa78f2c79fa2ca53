"""The encrypted card vault for store-and-forward (issue 5 §3, DESIGN §5, §7).

An offline-approved sale needs its card data until the forward authorization
completes or the forward-by deadline passes. That data lives **only** here —
never in the journal, logs, events or exports — one AES-256-GCM sealed file
per transaction::

    <state_dir>/vault.key          32 random bytes, mode 0600 (not the device key)
    <state_dir>/vault/             mode 0700
    <state_dir>/vault/<txn>.card   header(32) ‖ ciphertext ‖ GCM tag(16)

    header = b"PEV1" ‖ key_id(8) ‖ expires_at(int64 BE, Unix s) ‖ nonce(12)
    AAD    = b"posedge/vault/v1\\0" ‖ txn ‖ b"\\0" ‖ header[:20]

The plaintext is a small JSON object with exactly what a forward
authorization needs: ``pan``, ``expiry`` (YYMM), ``service_code`` and
``entry_mode``. Track data, CVV, PIN and any other key are refused.
``expires_at`` sits in the clear header so :meth:`CardVault.expired` never
decrypts card data just to read a deadline (and still works when the key is
lost); it is bound into the AAD, so a changed deadline makes :meth:`get` fail.
The transaction id is in the AAD too: a file renamed to another sale does not
decrypt. ``key_id`` (a derived HMAC, not the key) tells "sealed under another
key" from "tampered".

Keys: ``vault.key`` is separate from ``device.key`` so that deleting it
crypto-shreds every stored card while the journal stays verifiable. A missing
key with entries present is :class:`VaultKeyMissing`, never a reason to start
silently over them; once those entries are deleted a new key is created.

Deletion: the file is overwritten in place with zeros of the same length,
fsynced, unlinked and the directory fsynced. On SSDs (wear levelling), on
journaling or copy-on-write filesystems (ext4 data=journal, btrfs, ZFS) and
with snapshots the old blocks may survive the overwrite: the overwrite is a
best effort, the real protection is the encryption plus the separate key.

Error tree (messages say what, where and what to do; they name the txn, never
card data)::

    VaultError (PosedgeError)
    ├── VaultKeyMissing     vault.key absent while sealed entries exist
    ├── VaultKeyInvalid     vault.key unreadable, a symbolic link, or not 32 bytes
    ├── VaultWrongKey       entry sealed under another vault key
    ├── VaultCorrupt        entry fails authentication or has a bad header
    ├── VaultUnsafeFile     a symbolic link or foreign file where an entry belongs
    └── VaultRefused        (also ValueError) bad txn id or disallowed card fields

Files are never opened through a symbolic link (``O_NOFOLLOW``): a link where
the key or an entry belongs is refused naming the file (:class:`VaultUnsafeFile`,
or :class:`VaultKeyInvalid` for the key), and nothing is ever written, overwritten
or deleted through one. Listing, expiry and the orphan purge see only regular
files owned by this user whose names the vault itself uses (``<txn>.card`` and
its temporary ``.<txn>.tmp-<hex>``); symbolic links, directories and foreign
files are left alone. Files are created 0600 whatever the umask; a vault
directory others could write, or that another user owns, is refused
(:class:`~posedge.agent.statedir.InsecureStateDir`, exit 2).

Thread-safe: one lock serialises every operation. This module must never log,
return in an error, or write anywhere but the vault directory any card data.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posedge.agent.carddata import FORBIDDEN_FIELDS, redact
from posedge.agent.errors import PosedgeError
from posedge.agent.statedir import (
    SECRET_FILE_MODE,
    UnsafeFile,
    check_vault_dir,
    is_regular_file,
    open_secret_nofollow,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("posedge.agent.sales.vault")

KEY_FILE_NAME = "vault.key"
VAULT_DIR_NAME = "vault"
ENTRY_SUFFIX = ".card"
TEMP_MARK = ".tmp-"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 8
TAG_BYTES = 16
MAGIC = b"PEV1"
_HEADER = struct.Struct(">4s8sq12s")
HEADER_BYTES = _HEADER.size  # 32
_AAD_PREFIX = b"posedge/vault/v1\x00"
MAX_ENTRY_BYTES = 4096

CARD_FIELDS = ("pan", "expiry", "service_code", "entry_mode")
_FIELD_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "pan": (re.compile(r"[0-9]{12,19}"), "12 to 19 digits"),
    "expiry": (re.compile(r"[0-9]{2}(0[1-9]|1[0-2])"), "YYMM"),
    "service_code": (re.compile(r"[0-9]{3}"), "3 digits"),
    "entry_mode": (re.compile(r"[a-z_]{1,16}"), "a lower-case word such as 'swipe'"),
}
# Normalised names (lower case, no "_", "-", " ") refused even when empty: the journal's
# forbidden fields plus what else a track carries.
FORBIDDEN_CARD_FIELDS = FORBIDDEN_FIELDS | {
    "discretionary", "discretionarydata", "name", "cardholdername",
}  # fmt: skip
_TXN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_TEMP = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9_-]{0,127}" + re.escape(TEMP_MARK) + r"[0-9a-f]{1,32}")
"""A temporary file :meth:`CardVault.put` writes: ``.<txn>.tmp-<hex>``."""


# ---- errors -----------------------------------------------------------------
class VaultError(PosedgeError):
    """Base of every card vault error; ``txn`` names the entry when there is one."""

    def __init__(self, message: str, *, txn: str | None = None) -> None:
        super().__init__(message)
        self.txn = txn


class VaultKeyMissing(VaultError):
    """``vault.key`` is gone while sealed entries exist: they cannot be decrypted."""


class VaultKeyInvalid(VaultError):
    """``vault.key`` cannot be read or has the wrong length."""


class VaultWrongKey(VaultError):
    """The entry was sealed under a different vault key (key replaced or restored)."""


class VaultCorrupt(VaultError):
    """The entry fails authentication (tampered, truncated, renamed) or its header is bad."""


class VaultUnsafeFile(VaultError):
    """A symbolic link, or a file the vault did not write, sits where an entry belongs."""


class VaultRefused(VaultError, ValueError):
    """The caller passed something the vault never stores (bad txn id, track/CVV/PIN...)."""


# ---- helpers ----------------------------------------------------------------
def _norm(name: str) -> str:
    return re.sub(r"[ _\-\t]", "", name).lower()


def check_txn(txn: str) -> str:
    """Return ``txn`` if it is safe as a file name (letters, digits, ``_``, ``-``)."""
    if not isinstance(txn, str) or _TXN.fullmatch(txn) is None:
        shown = redact(repr(txn)[:40]) if isinstance(txn, str) and txn.isascii() else "<non-ascii>"
        raise VaultRefused(
            f"transaction id {shown} cannot name a vault entry; use 1-128 letters, digits, "
            "'_' or '-' starting with a letter or digit"
        )
    return txn


def _check_card(txn: str, card: dict[str, Any]) -> dict[str, str]:
    if not isinstance(card, dict):
        raise VaultRefused(f"card data for {txn} must be a dict", txn=txn)
    forbidden = sorted(str(k) for k in card if _norm(str(k)) in FORBIDDEN_CARD_FIELDS)
    if forbidden:
        raise VaultRefused(
            f"card data for {txn} carries {', '.join(forbidden)}: track data, CVV, PIN and "
            f"cardholder name are never stored; pass only {', '.join(CARD_FIELDS)}",
            txn=txn,
        )
    unknown = sorted(str(k)[:32] for k in card if k not in CARD_FIELDS)
    if unknown:
        raise VaultRefused(
            f"card data for {txn} has unknown fields {', '.join(unknown)}; "
            f"the vault stores only {', '.join(CARD_FIELDS)}",
            txn=txn,
        )
    clean: dict[str, str] = {}
    for name in CARD_FIELDS:
        value = card.get(name)
        pattern, allowed = _FIELD_RULES[name]
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            # Never echo the value: it may be a PAN.
            raise VaultRefused(
                f"card data for {txn}: field {name} is missing or malformed (expected {allowed})",
                txn=txn,
            )
        clean[name] = value
    return clean


def _aad(txn: str, header: bytes) -> bytes:
    return _AAD_PREFIX + txn.encode("ascii") + b"\x00" + header[:20]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _overwrite_fd(fd: int) -> None:
    """Overwrite the open file's whole content with zeros and fsync it."""
    size = os.fstat(fd).st_size
    zeros = bytes(min(size, 65536))
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    while left > 0:
        left -= os.write(fd, zeros[: min(left, len(zeros))])
    os.fsync(fd)


def _ours(entry: os.DirEntry[str]) -> bool:
    """A regular file (not a link to one) owned by this user."""
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def _to_epoch(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("vault deadlines must be timezone-aware datetimes (UTC)")
    return int(when.timestamp())


class _VaultKey:
    """The AES key and its public id, both derived from the 32 raw bytes."""

    def __init__(self, raw: bytes) -> None:
        self._aes_key = hmac.new(raw, b"posedge/vault/aes-256-gcm", hashlib.sha256).digest()
        self._aead: AESGCM | None = None
        self.key_id = hmac.new(raw, b"posedge/vault/key-id", hashlib.sha256).digest()[:8]

    @property
    def aead(self) -> AESGCM:
        # cryptography is imported on the first seal/unseal, not at daemon start:
        # it costs ~7 MiB of RSS an idle agent with no offline sale never needs.
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._aes_key)
        return self._aead

    def __repr__(self) -> str:
        return f"_VaultKey(id={self.key_id.hex()})"


# ---- the vault --------------------------------------------------------------
class CardVault:
    """Sealed card data for offline sales, one file per transaction id."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.key_path = self.state_dir / KEY_FILE_NAME
        self.directory = self.state_dir / VAULT_DIR_NAME
        self._lock = threading.RLock()
        self._key: _VaultKey | None = None
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_vault_dir(self.directory)  # a link, or writable by others: refused (exit 2)
        if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
            os.chmod(self.directory, 0o700)
        with self._lock:
            self._remove_temp_files()
            try:
                self._load_key(create=True)
            except VaultError as exc:
                # Online sales go on; put/get raise the same error with what to do.
                log.warning("card vault unusable: %s", exc)

    def __repr__(self) -> str:
        return f"CardVault({str(self.directory)!r})"

    # ---- key ----------------------------------------------------------------
    def _load_key(self, *, create: bool) -> _VaultKey:
        if self._key is not None:
            return self._key
        try:
            raw = self._read_key()
        except FileNotFoundError:
            count = len(self._entry_names())
            if count or not create:
                raise VaultKeyMissing(
                    f"vault key {self.key_path} is missing but {count} sealed card "
                    f"entr{'y' if count == 1 else 'ies'} exist in {self.directory}; restore the "
                    "key from backup, or let those offline sales expire (their card data is "
                    "unrecoverable) — a new key is created once they are deleted"
                ) from None
            raw = self._create_key()
        except UnsafeFile as exc:
            raise VaultKeyInvalid(str(exc)) from None
        except OSError as exc:
            raise VaultKeyInvalid(
                f"cannot read vault key {self.key_path}: {exc.strerror}; "
                "run as the posedge user and check the state directory"
            ) from None
        if len(raw) != KEY_BYTES:
            raise VaultKeyInvalid(
                f"vault key {self.key_path} has {len(raw)} bytes, expected {KEY_BYTES}; "
                "restore it from backup or delete it together with the vault entries"
            )
        self._key = _VaultKey(raw)
        return self._key

    def _read_key(self) -> bytes:
        """The key file's bytes (never through a symbolic link); made 0600 if it was not."""
        fd = open_secret_nofollow(self.key_path, os.O_RDONLY, what="vault key")
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, SECRET_FILE_MODE)
            return os.read(fd, MAX_ENTRY_BYTES)
        finally:
            os.close(fd)

    def _create_key(self) -> bytes:
        raw = secrets.token_bytes(KEY_BYTES)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = open_secret_nofollow(self.key_path, flags, SECRET_FILE_MODE, what="vault key")
        except FileExistsError:  # another process won the race (or a link is there)
            return self._read_key()
        try:
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.state_dir)
        log.info("created vault key %s", self.key_path)
        return raw

    # ---- paths --------------------------------------------------------------
    def _path(self, txn: str) -> Path:
        return self.directory / f"{check_txn(txn)}{ENTRY_SUFFIX}"

    def _entry_names(self) -> list[str]:
        """Txns of the entries: regular files of ours named ``<txn>.card``, nothing else."""
        names = []
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(ENTRY_SUFFIX) and not name.startswith("."):
                txn = name[: -len(ENTRY_SUFFIX)]
                if _TXN.fullmatch(txn) and _ours(entry):
                    names.append(txn)
        return sorted(names)

    def _remove_temp_files(self) -> None:
        """Shred temp files a crash left behind (they hold ciphertext); only ours."""
        for entry in os.scandir(self.directory):
            if _TEMP.fullmatch(entry.name) and _ours(entry):
                self._shred_if_ours(Path(entry.path))

    # ---- operations ---------------------------------------------------------
    def put(self, txn: str, card: dict[str, Any], expires_at: datetime) -> None:
        """Seal ``card`` for ``txn``; durable (file and directory fsynced) on return.

        Replaces an existing entry for ``txn`` (the old content is overwritten).
        """
        check_txn(txn)
        clean = _check_card(txn, card)
        expires = _to_epoch(expires_at)
        with self._lock:
            key = self._load_key(create=True)
            header = _HEADER.pack(MAGIC, key.key_id, expires, secrets.token_bytes(NONCE_BYTES))
            plaintext = json.dumps(clean, separators=(",", ":"), sort_keys=True).encode()
            sealed = header + key.aead.encrypt(header[20:], plaintext, _aad(txn, header))
            del plaintext, clean
            target = self._path(txn)
            old = self._open_existing(target)  # a link or foreign file there: refused
            try:
                temp = self.directory / f".{txn}{TEMP_MARK}{secrets.token_hex(4)}"
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                fd = open_secret_nofollow(temp, flags, SECRET_FILE_MODE, what="vault entry")
                try:
                    view = memoryview(sealed)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except BaseException:
                    os.close(fd)
                    self._discard(temp)
                    raise
                os.close(fd)
                os.replace(temp, target)
                _fsync_dir(self.directory)
                if old is not None:
                    _overwrite_fd(old)
            finally:
                if old is not None:
                    os.close(old)
        log.debug("sealed card data for %s", txn)

    @staticmethod
    def _open_existing(path: Path) -> int | None:
        """The file opened for overwriting, None if absent; VaultUnsafeFile for a symbolic
        link, a non-regular file, a file of another user or one with other hard links
        (overwriting would reach a file the vault never wrote)."""
        try:
            fd = open_secret_nofollow(path, os.O_RDWR, what="vault file")
        except FileNotFoundError:
            return None
        except UnsafeFile as exc:
            raise VaultUnsafeFile(str(exc)) from None
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_nlink != 1:
            os.close(fd)
            raise VaultUnsafeFile(
                f"vault file {path} is not one the vault wrote (owner uid {info.st_uid}, "
                f"{info.st_nlink} hard links); it is left alone: move it away "
                f"(mv {path} {path}.suspect) and check who put it there"
            )
        return fd

    def get(self, txn: str) -> dict[str, Any] | None:
        """The card data for ``txn`` plus ``expires_at`` (ISO 8601), or None if absent.

        The caller must drop the returned dict as soon as the forward is sent.
        """
        path = self._path(txn)
        with self._lock:
            try:
                fd = open_secret_nofollow(path, os.O_RDONLY, what="vault entry")
            except FileNotFoundError:
                return None
            except UnsafeFile as exc:
                raise VaultUnsafeFile(str(exc), txn=txn) from None
            try:
                blob = os.read(fd, MAX_ENTRY_BYTES + 1)
            finally:
                os.close(fd)
            key = self._load_key(create=False)
            header, expires = self._parse_header(txn, blob)
            if header[4:12] != key.key_id:
                raise VaultWrongKey(
                    f"vault entry {path} was sealed under another vault key than "
                    f"{self.key_path}; restore the matching key, or let the sale expire",
                    txn=txn,
                )
            from cryptography.exceptions import InvalidTag

            try:
                plaintext = key.aead.decrypt(header[20:], blob[HEADER_BYTES:], _aad(txn, header))
            except InvalidTag:
                raise VaultCorrupt(
                    f"vault entry {path} fails authentication (tampered, truncated, or renamed "
                    "from another sale); it cannot be forwarded — treat the sale as not "
                    "forwardable and raise an alert",
                    txn=txn,
                ) from None
        card: dict[str, Any] = json.loads(plaintext)
        card["expires_at"] = datetime.fromtimestamp(expires, UTC).isoformat()
        return card

    def _parse_header(self, txn: str, blob: bytes) -> tuple[bytes, int]:
        if len(blob) < HEADER_BYTES + TAG_BYTES or len(blob) > MAX_ENTRY_BYTES:
            raise VaultCorrupt(
                f"vault entry for {txn} in {self.directory} has an impossible size "
                f"({len(blob)} bytes); it cannot be forwarded",
                txn=txn,
            )
        magic, _key_id, expires, _nonce = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise VaultCorrupt(
                f"vault entry for {txn} in {self.directory} has no vault header; "
                "it cannot be forwarded",
                txn=txn,
            )
        return blob[:HEADER_BYTES], int(expires)

    def delete(self, txn: str) -> bool:
        """Overwrite, fsync, unlink and fsync the directory; False if there was no entry.

        A symbolic link or a foreign file where the entry belongs is left alone (a warning
        names it) and False returned: nothing is ever written or removed through a link.
        """
        path = self._path(txn)
        with self._lock:
            removed = self._shred_if_ours(path)
        if removed:
            log.debug("deleted card data for %s", txn)
        return removed

    def _shred_if_ours(self, path: Path) -> bool:
        try:
            return self._shred(path)
        except VaultUnsafeFile as exc:
            log.warning("vault: %s", exc)
            return False

    def _shred(self, path: Path) -> bool:
        fd = self._open_existing(path)
        if fd is None:
            return False
        try:
            _overwrite_fd(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _fsync_dir(self.directory)
        return True

    def _discard(self, path: Path) -> None:
        """Best-effort removal on an error path (the disk may be failing): never raises."""
        try:
            self._shred(path)
        except (OSError, VaultError):
            with contextlib.suppress(OSError):
                path.unlink()

    def txns(self) -> list[str]:
        """Transaction ids with a sealed entry, sorted."""
        with self._lock:
            return self._entry_names()

    def __contains__(self, txn: object) -> bool:
        return isinstance(txn, str) and is_regular_file(self._path(txn))

    def __len__(self) -> int:
        return len(self.txns())

    def _read_deadline(self, txn: str) -> int | None:
        """The header's deadline; None for a bad header; FileNotFoundError if gone,
        VaultUnsafeFile for a symbolic link or a non-regular file."""
        path = self._path(txn)
        try:
            fd = open_secret_nofollow(path, os.O_RDONLY, what="vault entry")
        except UnsafeFile as exc:
            raise VaultUnsafeFile(str(exc), txn=txn) from None
        try:
            head = os.read(fd, HEADER_BYTES)
        finally:
            os.close(fd)
        if len(head) < HEADER_BYTES or head[:4] != MAGIC:
            return None
        return int(_HEADER.unpack(head)[2])

    def _deadlines(self) -> Iterator[tuple[str, int | None]]:
        for txn in self._entry_names():
            try:
                yield txn, self._read_deadline(txn)
            except (FileNotFoundError, VaultUnsafeFile):
                continue

    def expires_at(self, txn: str) -> datetime | None:
        """The deadline in the entry's header (authenticated only by :meth:`get`)."""
        with self._lock:
            try:
                expires = self._read_deadline(txn)
            except FileNotFoundError:
                return None
            except VaultUnsafeFile as exc:
                log.warning("vault: %s", exc)
                return None
        return None if expires is None else datetime.fromtimestamp(expires, UTC)

    def expired(self, now: datetime) -> list[str]:
        """Entries whose deadline is at or before ``now``; never decrypts.

        An entry whose header cannot be read is listed too: card data that can
        neither be forwarded nor dated must not be kept.
        """
        limit = _to_epoch(now)
        with self._lock:
            out = []
            for txn, expires in self._deadlines():
                if expires is None:
                    log.warning("vault entry for %s has a bad header; treating it as expired", txn)
                    out.append(txn)
                elif expires <= limit:
                    out.append(txn)
            return out

    def purge_orphans(self, keep: set[str]) -> list[str]:
        """Delete every entry whose txn is not in ``keep`` (outstanding offline sales).

        Touches only regular files of ours named like entries or their temp files:
        symbolic links, directories and foreign files are never opened or removed.
        """
        with self._lock:
            self._remove_temp_files()
            purged = [
                txn
                for txn in self._entry_names()
                if txn not in keep and self._shred_if_ours(self._path(txn))
            ]
        if purged:
            log.info("purged %d orphaned vault entries", len(purged))
        return purged

    def shred_all(self) -> list[str]:
        """Delete every entry and the vault key (decommissioning). Returns the txns."""
        with self._lock:
            purged = self.purge_orphans(set())
            fd = self._open_existing(self.key_path)
            if fd is not None:
                try:
                    _overwrite_fd(fd)
                finally:
                    os.close(fd)
                self.key_path.unlink()
                _fsync_dir(self.state_dir)
            self._key = None
        return purged
