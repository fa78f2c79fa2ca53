"""Bearer tokens of the reference back office: loading the tokens file, checking requests.

The file (TOML or JSON) maps terminal id → token, either at the top level or
under a ``tokens`` table. Without a file the back office runs in open mode.
This module must never log or echo a token.
"""

from __future__ import annotations

import hmac
import json
import re
import tomllib
from pathlib import Path

from posedge.protocol.models import TERMINAL_PATTERN

MIN_TOKEN_CHARS = 8


class BackofficeConfigError(ValueError):
    """The back office configuration (flags, tokens file) is wrong; nothing was started."""


def load_tokens(path: Path) -> dict[str, str]:
    """Read a tokens file; raise :class:`BackofficeConfigError` saying what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackofficeConfigError(
            f"cannot read tokens file {path}: {exc.strerror}; pass a readable file to --tokens"
        ) from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise BackofficeConfigError(
            f"tokens file {path} is not valid {kind} ({exc}); "
            'write one `terminal-id = "token"` line per terminal'
        ) from None
    if isinstance(doc, dict) and isinstance(doc.get("tokens"), dict):
        doc = doc["tokens"]
    if not isinstance(doc, dict) or not doc:
        raise BackofficeConfigError(
            f"tokens file {path} holds no terminal → token mapping; "
            'write one `terminal-id = "token"` line per terminal'
        )
    tokens: dict[str, str] = {}
    for terminal, token in doc.items():
        if not re.match(TERMINAL_PATTERN, str(terminal)):
            raise BackofficeConfigError(
                f"tokens file {path}: {terminal!r} is not a terminal id "
                "(1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
            )
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise BackofficeConfigError(
                f"tokens file {path}: the token of {terminal} must be a string of at least "
                f"{MIN_TOKEN_CHARS} characters"
            )
        tokens[terminal] = token
    return tokens


def token_owner(tokens: dict[str, str], presented: str) -> str | None:
    """The terminal a presented token belongs to (constant-time compare per entry)."""
    owner = None
    for terminal, token in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            owner = terminal
    return owner
