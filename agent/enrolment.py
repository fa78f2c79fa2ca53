"""The terminal's enrolment in the state directory: device signing key, token, enrolment record.

``posedge enroll`` (docs/sync-protocol.md, "Enrolment and signed history") leaves
three files behind:

* ``signing.key`` — the Ed25519 device key, PKCS#8 PEM, mode 0600 whatever the
  umask, written atomically and never through a symbolic link. It signs every
  events batch and every token rotation; it never leaves the terminal and is
  never logged or printed (only its public half, which the back office holds).
  It is separate from ``device.key`` (the journal's HMAC chain key), which must
  not change when a terminal is re-enrolled.
* the sync token — written to ``sync.token_file`` when the configuration names
  one, else to ``sync-token`` in the state directory; mode 0600, atomic
  replace, never through a link. Rotation (``posedge token rotate``) replaces it.
* ``enrolment.json`` — what the back office answered (terminal id, store, lane)
  and where it is: back office URL, token file, public key, time. Mode 0640, not
  secret. Its presence means "this state directory is enrolled".

Configuration loading stays pure (it reads one file and the environment); the
commands that talk to the back office lay the enrolment record over the loaded
configuration with :func:`enrolled_config`: ``terminal.id``, ``sync.url`` and
``sync.token_file`` come from the record when the configuration leaves them
unset. A configured ``terminal.id`` that differs from the enrolled one is a
configuration error (exit 2): the back office would refuse the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .config import Config
from .errors import ConfigError
from .statedir import (
    FILE_MODE,
    SECRET_FILE_MODE,
    UnsafeFile,
    open_secret_nofollow,
    read_file_nofollow,
)

SIGNING_KEY_FILE = "signing.key"
ENROLMENT_FILE = "enrolment.json"
DEFAULT_TOKEN_FILE = "sync-token"
_MAX_KEY_BYTES = 4096


# ---- the device key -----------------------------------------------------------------------
def signing_key_path(state_dir: Path) -> Path:
    return state_dir / SIGNING_KEY_FILE


def load_signing_key(state_dir: Path) -> Ed25519PrivateKey | None:
    """The device key, or None when this state directory was never enrolled.

    Read without following a symbolic link (:class:`UnsafeFile`, exit 2); a key that
    group or others may read is made 0600 again (the file read, not what a path names
    now). A damaged key is a configuration error naming the file and the fix.
    """
    path = signing_key_path(state_dir)
    try:
        fd = open_secret_nofollow(path, os.O_RDONLY, what="the device signing key")
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ConfigError(
            f"cannot read the device signing key {path}: permission denied; run posedge as "
            "the user that owns the state directory"
        ) from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, SECRET_FILE_MODE)
        raw = os.read(fd, _MAX_KEY_BYTES + 1)
    finally:
        os.close(fd)
    try:
        key = load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"the device signing key {path} is not an Ed25519 private key (PKCS#8 PEM); "
            "restore it from backup, or ask for a new enrolment code (posedge backoffice "
            "terminals rotate-token ID) and run posedge enroll --force"
        )
    return key


def key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


# ---- atomic secret files ------------------------------------------------------------------
def write_file_atomically(path: Path, data: bytes, mode: int, *, what: str) -> None:
    """Replace ``path`` by a file holding ``data``, durably and atomically.

    The content goes to a temporary file beside it (exact ``mode`` whatever the umask,
    ``O_EXCL|O_NOFOLLOW``, unguessable name), is fsynced and renamed over ``path`` (a
    rename replaces a symbolic link itself, never its target); the directory is
    fsynced. OSErrors propagate for the caller to explain.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = open_secret_nofollow(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, what=what)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_signing_key(state_dir: Path, key: Ed25519PrivateKey) -> Path:
    path = signing_key_path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(path, key_pem(key), SECRET_FILE_MODE, "the device signing key")
    return path


def token_path(config: Config, state_dir: Path) -> Path:
    """Where the sync token lives: ``sync.token_file``, else ``<state dir>/sync-token``."""
    configured = config.sync.token_file
    return Path(configured) if configured else state_dir / DEFAULT_TOKEN_FILE


def write_token(path: Path, token: str) -> None:
    """Write the sync token (0600, atomically); the token itself never reaches a message."""
    _write(path, (token + "\n").encode("utf-8"), SECRET_FILE_MODE, "the sync token file")


def _write(path: Path, data: bytes, mode: int, what: str) -> None:
    try:
        write_file_atomically(path, data, mode, what=what)
    except UnsafeFile:
        raise
    except OSError as exc:
        raise ConfigError(
            f"cannot write {what} {path}: {exc.strerror or exc}; the posedge user must be "
            f"able to create files in {path.parent}"
        ) from None


# ---- the enrolment record -----------------------------------------------------------------
@dataclass(frozen=True)
class Enrolment:
    """``enrolment.json``: who this terminal is at which back office. Holds no secret."""

    terminal: str
    store: str
    lane: str
    backoffice: str
    token_file: str
    public_key: str
    enrolled_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def enrolment_path(state_dir: Path) -> Path:
    return state_dir / ENROLMENT_FILE


def read_enrolment(state_dir: Path) -> Enrolment | None:
    """The enrolment record, or None when the state directory was never enrolled."""
    path = enrolment_path(state_dir)
    try:
        raw = read_file_nofollow(path, what="the enrolment record")
    except FileNotFoundError:
        return None
    except UnsafeFile:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the enrolment record {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
        record = Enrolment(**{name: str(doc[name]) for name in Enrolment.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"the enrolment record {path} is damaged; enrol again (posedge enroll --force "
            "with a new code from posedge backoffice terminals rotate-token ID)"
        ) from None
    return record


def write_enrolment(state_dir: Path, record: Enrolment) -> Path:
    path = enrolment_path(state_dir)
    text = json.dumps(record.as_dict(), indent=2, sort_keys=True) + "\n"
    _write(path, text.encode("utf-8"), FILE_MODE, "the enrolment record")
    return path


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def apply_enrolment(config: Config, record: Enrolment | None) -> Config:
    """``config`` with ``terminal.id``, ``sync.url`` and ``sync.token_file`` taken from the
    enrolment record where the configuration leaves them unset. Never raises."""
    if record is None:
        return config
    terminal = config.terminal
    sync = config.sync
    updates: dict[str, Any] = {}
    if terminal.id is None:
        updates["terminal"] = terminal.model_copy(update={"id": record.terminal})
    sync_updates: dict[str, Any] = {}
    if sync.url is None:
        sync_updates["url"] = record.backoffice
    if sync.token_file is None:
        sync_updates["token_file"] = record.token_file
    if sync_updates:
        updates["sync"] = sync.model_copy(update=sync_updates)
    return config.model_copy(update=updates) if updates else config


def check_enrolment(config: Config, record: Enrolment | None) -> None:
    """A configured ``terminal.id`` must be the enrolled one (ConfigError, exit 2)."""
    if record is None or config.terminal.id in (None, record.terminal):
        return
    raise ConfigError(
        f"terminal.id = {config.terminal.id!r} in the configuration, but this state directory "
        f"is enrolled as {record.terminal!r} ({ENROLMENT_FILE}); the back office accepts the "
        f"token and the device key for {record.terminal} only. Remove terminal.id from the "
        "configuration (or set it to the enrolled id)"
    )


def enrolled_config(config: Config, state_dir: Path) -> Config:
    """The configuration as the commands that talk to the back office use it: checked
    against and completed by ``<state dir>/enrolment.json`` (no-op when not enrolled)."""
    record = read_enrolment(state_dir)
    check_enrolment(config, record)
    return apply_enrolment(config, record)


__all__ = [
    "DEFAULT_TOKEN_FILE",
    "ENROLMENT_FILE",
    "SIGNING_KEY_FILE",
    "Enrolment",
    "apply_enrolment",
    "check_enrolment",
    "enrolled_config",
    "enrolment_path",
    "load_signing_key",
    "read_enrolment",
    "signing_key_path",
    "token_path",
    "write_enrolment",
    "write_file_atomically",
    "write_signing_key",
    "write_token",
]
