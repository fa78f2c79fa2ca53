"""The till API's bearer token: read from ``api.token_file`` or created once in the state dir.

When ``api.token_file`` is unset the token lives in ``<state dir>/api-token``
(mode 0600): created on first use from 32 random bytes, published atomically
(written to an O_EXCL temporary file, then hard-linked into place, so a reader
never sees a half-written token and two starters agree on one token) and
reused afterwards. Token files are opened without following a symbolic link: a
link where the token should be is refused (exit 2) naming the file. This module
must never log, print or put a token into an error message.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from posedge.agent.config import ApiConfig, Config
from posedge.agent.errors import ConfigError
from posedge.agent.statedir import create_file_once, open_secret_nofollow

log = logging.getLogger("posedge.api")

TOKEN_FILE_NAME = "api-token"
TOKEN_FILE_MODE = 0o600
TOKEN_RANDOM_BYTES = 32
MAX_TOKEN_FILE_BYTES = 4096


def token_path(config: Config | ApiConfig, state_dir: Path) -> Path:
    """Where the token is read from: ``api.token_file``, else ``<state dir>/api-token``."""
    api = config.api if isinstance(config, Config) else config
    return Path(api.token_file) if api.token_file else state_dir / TOKEN_FILE_NAME


def load_or_create_token(config: Config | ApiConfig, state_dir: Path) -> str:
    """The bearer token the till must present. Raises ConfigError naming the key."""
    api = config.api if isinstance(config, Config) else config
    if api.token_file:
        return read_token(Path(api.token_file), "api.token_file")
    path = state_dir / TOKEN_FILE_NAME
    if not os.path.lexists(path):
        _create(path)
    return read_token(path, "the generated api-token")


def read_token(path: Path, key: str) -> str:
    """The token in ``path``, opened without following a symbolic link (refused, exit 2)."""
    try:
        fd = open_secret_nofollow(path, os.O_RDONLY, what=f"{key}: the till API token file")
        try:
            info = os.fstat(fd)
            raw = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot read the till API token file {path}: {exc.strerror}"
        ) from None
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"{key}: {path} is over {MAX_TOKEN_FILE_BYTES} bytes; not a token file")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(
            f"{key}: {path} must hold one token of printable ASCII without spaces "
            "(delete the generated api-token to have a new one made)"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("the till API token file %s is readable by others; chmod 600 it", path)
    return token


def _create(path: Path) -> None:
    token = secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    try:
        # Mode 0600 whatever the umask; never through a symbolic link; another starter
        # that won the race keeps its token.
        create_file_once(path, (token + "\n").encode("ascii"), TOKEN_FILE_MODE,
                         what="the till API token file")  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"cannot create the till API token file {path}: {exc.strerror}; "
            "fix the state directory's permissions or set api.token_file"
        ) from None
