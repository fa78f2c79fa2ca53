"""The hash chain: HMAC-SHA256 links under a per-device key.

``hash = HMAC(chain_key, prev_hash \\n seq \\n ts \\n type \\n txn \\n payload)``
where ``payload`` is canonical JSON (which never holds a raw newline) and the
other fields cannot hold one either (validated at append), so the message is
unambiguous.

The device key (32 random bytes, ``device.key``, mode 0600) lives in the state
directory; the chain key is derived from it. It keys the chain and nothing
else: in particular never PAN tokens, whose key must not be on disk at all
(:mod:`posedge.agent.cardtokens`, docs/card-data.md) — the journal and this
key are backed up together. The key is created only for a new, empty journal:
a journal with events and no key is an error, never a reason to start a new chain.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..statedir import SECRET_FILE_MODE, open_secret_nofollow
from .canonical import canonical_json
from .errors import JournalKeyError

KEY_FILE_NAME = "device.key"
KEY_BYTES = 32
GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class DeviceKey:
    raw: bytes

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.raw, b"posedge/" + purpose.encode(), hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """Safe to store and show: identifies the key without revealing it."""
        return hashlib.sha256(b"posedge/fingerprint" + self.raw).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"DeviceKey(fingerprint={self.fingerprint})"


def load_device_key(state_dir: Path, *, create: bool) -> DeviceKey:
    """Read ``device.key``; create it (mode 0600, O_EXCL) only when ``create``.

    Never through a symbolic link: a link (or anything but a regular file) is
    :class:`~posedge.agent.statedir.UnsafeFile`, a configuration error naming the file
    (exit 2).
    """
    path = state_dir / KEY_FILE_NAME
    try:
        fd = open_secret_nofollow(path, os.O_RDONLY, what="device key")
    except FileNotFoundError:
        if not create:
            raise JournalKeyError(
                f"device key {path} is missing but the journal already holds events; "
                "restore the key from backup — without it the chain cannot be verified "
                "and no new chain is started over existing data"
            ) from None
        return _create_key(path)
    except PermissionError:
        raise JournalKeyError(
            f"cannot read device key {path}: permission denied; run as the posedge user"
        ) from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, SECRET_FILE_MODE)  # the file we read, not what a path names now
        raw = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) != KEY_BYTES:
        raise JournalKeyError(
            f"device key {path} has {len(raw)} bytes, expected {KEY_BYTES}; restore it from backup"
        )
    return DeviceKey(raw)


def _create_key(path: Path) -> DeviceKey:
    raw = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        # Mode 0600 whatever the umask; O_EXCL|O_NOFOLLOW: never through a link.
        fd = open_secret_nofollow(path, flags, SECRET_FILE_MODE, what="device key")
    except FileExistsError:
        # Something appeared there since the read found nothing: a dangling symbolic
        # link (refused as UnsafeFile) or a key another process just created.
        return load_device_key(path.parent, create=False)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return DeviceKey(raw)


class ChainSigner:
    """Computes event hashes and checkpoint signatures."""

    def __init__(self, key: DeviceKey) -> None:
        self._chain_key = key.derive("chain")
        # Keyed once; each hash copies it (the key schedule is not redone per event).
        self._keyed = hmac.new(self._chain_key, digestmod="sha256")

    def event_hash(
        self, prev_hash: str, seq: int, ts: str, type_: str, txn: str | None, payload: str
    ) -> str:
        mac = self._keyed.copy()
        mac.update(f"{prev_hash}\n{seq}\n{ts}\n{type_}\n{txn or ''}\n{payload}".encode())
        return mac.hexdigest()

    def checkpoint_sig(self, seq: int, hash_: str, ts: str) -> str:
        body = canonical_json({"checkpoint": True, "hash": hash_, "seq": seq, "ts": ts})
        return hmac.new(self._chain_key, body.encode("utf-8"), hashlib.sha256).hexdigest()

    def row_hash(self, row: Any) -> str:
        """Recompute the hash of a stored events row (seq, ts, type, txn, payload, prev_hash)."""
        return self.event_hash(
            row["prev_hash"], row["seq"], row["ts"], row["type"], row["txn"], row["payload"]
        )
