"""The terminal id: from configuration, else generated once and kept in the state dir.

``<state dir>/terminal-id`` is read and created without following a symbolic
link (a planted link is refused, naming the file) and created with mode 0640
whatever the umask.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from ..errors import ConfigError
from ..statedir import FILE_MODE, UnsafeFile, create_file_once, read_file_nofollow

TERMINAL_ID_FILE = "terminal-id"
TERMINAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_BYTES = 1024


def terminal_id(configured: str | None, state_dir: Path) -> str:
    """The configured id, else the one kept in ``state_dir/terminal-id`` (created once)."""
    if configured:
        return configured
    path = state_dir / TERMINAL_ID_FILE
    try:
        text = _read(path)
    except FileNotFoundError:
        return _create(path)
    if not TERMINAL_ID_RE.match(text):
        raise ConfigError(
            f"{path} holds {text[:70]!r}, not a valid terminal id; set terminal.id in the "
            "configuration or remove the file to generate a new id"
        )
    return text


def _read(path: Path) -> str:
    try:
        raw = read_file_nofollow(path, max_bytes=_MAX_BYTES, what="the terminal id file")
        return raw[:_MAX_BYTES].decode("ascii").strip()
    except (FileNotFoundError, UnsafeFile):
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read terminal id from {path}: {exc}") from None


def _create(path: Path) -> str:
    new_id = f"term-{secrets.token_hex(6)}"
    try:
        create_file_once(path, (new_id + "\n").encode("ascii"), FILE_MODE,
                         what="the terminal id file")  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"cannot create the terminal id file {path}: {exc.strerror}; fix the state "
            "directory's permissions or set terminal.id"
        ) from None
    return _read(path)
