"""Dump files: ``<state dir>/dumps/devices-<UTC timestamp>.json``, 0600 in a 0700 directory.

Written atomically (a temporary file made with ``O_EXCL | O_NOFOLLOW``, fsync, rename),
so a reader never sees half a dump; only the newest :data:`KEEP_DUMPS` are kept. The
directory is created 0700 whatever the umask, and a symbolic link where it belongs is
refused: a dump names the devices and the host, which is for the service's eyes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .dump import DumpError

DUMPS_DIR_NAME = "dumps"
DIR_MODE = 0o700
FILE_MODE = 0o600
KEEP_DUMPS = 20
_NAME = re.compile(r"devices-(?P<at>\d{8}T\d{6}\.\d{3})Z(?:-(?P<n>\d+))?\.json")


def dumps_dir(state_dir: Path) -> Path:
    return state_dir / DUMPS_DIR_NAME


def _ensure_dir(path: Path) -> None:
    """``path`` as a real 0700 directory (created if missing; a link or file refused)."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DumpError(f"cannot create the dump directory {path}: {exc.strerror}") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise DumpError(f"{path} is not a directory (a link or a file?); move it away")
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def encode(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` (mode 0600): a temporary file beside it, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NoStateDir(DumpError, ConfigError):
    """The state directory does not exist: a usage error (exit 2), not an internal one."""


def write_dump(state_dir: Path, doc: Any, *, keep: int = KEEP_DUMPS) -> Path:
    """Write ``doc`` as a new dump file in ``<state dir>/dumps``; prune to the newest ``keep``."""
    directory = dumps_dir(state_dir)
    if not state_dir.is_dir():
        raise NoStateDir(f"no state directory at {state_dir}; check --state-dir")
    _ensure_dir(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    path = directory / f"devices-{stamp}.json"
    n = 1
    while os.path.lexists(path):
        path = directory / f"devices-{stamp}-{n}.json"
        n += 1
    try:
        write_atomically(path, encode(doc))
    except OSError as exc:
        raise DumpError(f"cannot write the dump {path}: {exc.strerror}") from None
    prune(directory, keep)
    return path


def write_output(path: Path, doc: Any) -> Path:
    """``--output FILE``: the dump at ``path`` (0600); a bad path is a usage error (exit 2)."""
    if path.is_dir():
        raise ConfigError(f"--output {path}: is a directory; name a file, e.g. {path}/dump.json")
    if not path.parent.is_dir():
        raise ConfigError(f"--output {path}: no directory {path.parent}; create it first")
    try:
        write_atomically(path, encode(doc))
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write: {exc.strerror}") from None
    return path


def list_dumps(state_dir: Path) -> list[Path]:
    """Dump files, oldest first (their names sort by time)."""
    directory = dumps_dir(state_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [directory / n for n in sorted(names, key=_sort_key) if _NAME.fullmatch(n)]


def _sort_key(name: str) -> tuple[str, int]:
    """Time, then the counter of dumps made within the same millisecond."""
    match = _NAME.fullmatch(name)
    if match is None:
        return name, 0
    return match["at"], int(match["n"] or 0)


def prune(directory: Path, keep: int) -> None:
    names = sorted((n for n in os.listdir(directory) if _NAME.fullmatch(n)), key=_sort_key)
    for name in names[: max(0, len(names) - keep)]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
