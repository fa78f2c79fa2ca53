"""The terminal id: from configuration, else generated once and kept in the state dir."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from ..errors import ConfigError

TERMINAL_ID_FILE = "terminal-id"
TERMINAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def terminal_id(configured: str | None, state_dir: Path) -> str:
    """The configured id, else the one kept in ``state_dir/terminal-id`` (created once)."""
    if configured:
        return configured
    path = state_dir / TERMINAL_ID_FILE
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read terminal id from {path}: {exc}") from None
    if not TERMINAL_ID_RE.match(text):
        raise ConfigError(
            f"{path} holds {text[:70]!r}, not a valid terminal id; set terminal.id in the "
            "configuration or remove the file to generate a new id"
        )
    return text


def _create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    new_id = f"term-{secrets.token_hex(6)}"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(new_id + "\n", "ascii")
    try:
        os.link(tmp, path)  # atomic, and loses to a concurrent creator instead of overwriting
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text("ascii").strip()
