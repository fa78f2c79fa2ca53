"""Device keys and signed batches (docs/sync-protocol.md, "Enrolment and signed history").

An enrolled terminal holds an Ed25519 key pair; the back office keeps the
public key. Every events batch carries ``signature``: the device key's
signature over :func:`batch_message` — the terminal id, the batch's first and
last seq and the hash of its last event. The last hash commits to every event
before it (the journal is hash-chained), so a stolen bearer token alone can
neither inject events nor rewrite history.

Keys travel as unpadded base64url of the 32 raw bytes; signatures as
unpadded base64url of the 64 raw bytes. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

BATCH_CONTEXT = "posedge-batch-v1"
PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9_-]{43}$"
SIGNATURE_PATTERN = r"^[A-Za-z0-9_-]{86}$"


class KeyFormatError(ValueError):
    """A public key or signature is not the unpadded base64url of the right number of bytes."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not base64url") from None
    if len(raw) != size:
        raise KeyFormatError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def batch_message(terminal: str, first_seq: int, last_seq: int, last_hash: str) -> bytes:
    """The bytes a batch signature covers."""
    return f"{BATCH_CONTEXT}\n{terminal}\n{first_seq}\n{last_seq}\n{last_hash}".encode()


def new_device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public half as unpadded base64url (43 characters)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse :func:`public_key_text` output; :class:`KeyFormatError` says what is wrong."""
    return Ed25519PublicKey.from_public_bytes(_unb64(text, 32, "public key"))


def sign_batch(
    key: Ed25519PrivateKey, terminal: str, first_seq: int, last_seq: int, last_hash: str
) -> str:
    """The ``signature`` field of a batch (unpadded base64url, 86 characters)."""
    return _b64(key.sign(batch_message(terminal, first_seq, last_seq, last_hash)))


def verify_batch(
    public_key: Ed25519PublicKey | str,
    signature: str,
    terminal: str,
    first_seq: int,
    last_seq: int,
    last_hash: str,
) -> bool:
    """Whether ``signature`` is the device key's signature of this batch."""
    if isinstance(public_key, str):
        public_key = load_public_key(public_key)
    try:
        raw = _unb64(signature, 64, "signature")
    except KeyFormatError:
        return False
    try:
        public_key.verify(raw, batch_message(terminal, first_seq, last_seq, last_hash))
    except InvalidSignature:
        return False
    return True


ROTATION_CONTEXT = "posedge-token-rotation-v1"


def rotation_message(terminal: str, nonce: str) -> bytes:
    """The bytes a token-rotation request signs (the nonce makes each request unique)."""
    return f"{ROTATION_CONTEXT}\n{terminal}\n{nonce}".encode()


def sign_message(key: Ed25519PrivateKey, message: bytes) -> str:
    return _b64(key.sign(message))


def verify_message(public_key: Ed25519PublicKey | str, signature: str, message: bytes) -> bool:
    if isinstance(public_key, str):
        public_key = load_public_key(public_key)
    try:
        public_key.verify(_unb64(signature, 64, "signature"), message)
    except (InvalidSignature, KeyFormatError):
        return False
    return True
