"""The state directory cannot be hijacked: StrictModes-like checks and no-follow file opens.

posedge keeps its journal, its keys (``device.key``, ``vault.key``, the enrolled
terminal's ``signing.key``), the till API token, the sync token (``sync-token``)
and the sealed card data in the state directory. Someone who can
write that directory, or a directory above it, could swap those files or plant
a symbolic link that makes the agent read, overwrite or shred a file of their
choosing (as root: any file). So, like OpenSSH's ``StrictModes``:

* :func:`check_state_dir` refuses (:class:`InsecureStateDir`, exit 2) a state
  directory or vault directory that is writable by group or others, or owned by
  anyone but the running user or root; it checks the parents too, up to the
  first root-owned one nobody else can write (a sticky world-writable parent
  such as ``/tmp`` is accepted: others cannot rename what is ours in it). It
  refuses a symbolic link, or anything but a regular file, where a key, token
  or lock file is expected. It never creates, changes or opens anything.
* :func:`open_secret_nofollow` opens a key, token or vault file without
  following a symbolic link (``O_NOFOLLOW``), only if it is a regular file
  (:class:`UnsafeFile` otherwise, exit 2), and gives a file it creates exactly
  the mode asked for whatever the umask (0600 for secrets, 0640 otherwise).

The checks run before any command or the daemon opens the journal
(``CliContext.state_dir``). Messages name the path and the command that fixes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import secrets
import stat
from pathlib import Path

from .errors import ConfigError

SECRET_FILE_MODE = 0o600
"""Keys, tokens, sealed card data."""
FILE_MODE = 0o640
"""Every other file posedge creates in the state directory."""
VAULT_DIR_NAME = "vault"
PROTECTED_FILES = (
    "device.key",
    "vault.key",
    "api-token",
    "terminal-id",
    "daemon.lock",
    "signing.key",
    "sync-token",
    "enrolment.json",
)
"""Files in the state directory that must be regular files (never symbolic links)."""
MAX_SMALL_FILE_BYTES = 65536


class InsecureStateDir(ConfigError):
    """The state directory (or the vault, or a parent) could be written by someone else."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class UnsafeFile(ConfigError):
    """A symbolic link or a non-regular file sits where a key, token or vault file belongs."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


# ---- directories --------------------------------------------------------------------------
def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _who_may_write(mode: int) -> str:
    group, other = bool(mode & stat.S_IWGRP), bool(mode & stat.S_IWOTH)
    return "group and others" if group and other else "group" if group else "others"


def _check_dir(path: Path, what: str, info: os.stat_result, *, parent: bool) -> None:
    uid = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (uid, 0):
        owner = _user(info.st_uid)
        if uid == 0:  # root on a directory another user owns: that user could steer root
            fix = (
                f"run the command as its owner (e.g. sudo -u {_name(info.st_uid)} posedge …), "
                f"or, if that user should not own it, fix it with: chown root {path}"
            )
        else:
            fix = f"fix it with: chown {uid} {path} (or run posedge as its owner)"
        runner = (
            "root, which runs this command"
            if uid == 0
            else (f"the user posedge runs as ({_user(uid)}) or root")
        )
        raise InsecureStateDir(
            f"{what} {path} is owned by {owner}, not by {runner}: its owner could replace the "
            "journal, the keys or the card data, or plant links that make this process "
            f"overwrite other files; {fix}",
            path,
        )
    sticky = bool(mode & stat.S_ISVTX)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not (parent and sticky):
        raise InsecureStateDir(
            f"{what} {path} is writable by {_who_may_write(mode)} (mode {mode:04o}): anyone "
            f"who can write there could replace the journal, the keys or the card data. "
            f"Fix it with: chmod go-w {path}",
            path,
        )


def _check_parents(path: Path, seen: set[Path]) -> None:
    """Each parent: ours or root's, not writable by others (sticky ones excepted); stop at
    the first root-owned one nobody else can write."""
    for parent in path.parents:
        if parent in seen:
            return
        seen.add(parent)
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            continue
        _check_dir(parent, "the state directory's parent", info, parent=True)
        if info.st_uid == 0 and not stat.S_IMODE(info.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
            return


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory others could tamper with (see the module docstring).

    A directory that does not exist yet passes when the place it will be created in
    is safe. Raises :class:`InsecureStateDir` or :class:`UnsafeFile` (both exit 2).
    Reads metadata only: nothing is created, changed or opened.
    """
    state_dir = Path(os.path.abspath(state_dir))
    seen: set[Path] = set()
    try:
        info = os.stat(state_dir)
    except FileNotFoundError:
        _check_parents(state_dir, seen)
        return
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureStateDir(
            f"the state directory {state_dir} is not a directory; move that file away or "
            "choose another --state-dir",
            state_dir,
        )
    _check_dir(state_dir, "the state directory", info, parent=False)
    real = Path(os.path.realpath(state_dir))
    _check_parents(state_dir, seen)  # the link (if it is one) cannot be re-pointed…
    if real != state_dir:  # …and neither can the place it points to
        _check_parents(real, seen)
    vault = state_dir / VAULT_DIR_NAME
    check_vault_dir(vault)
    for name in PROTECTED_FILES:
        _check_regular_if_present(state_dir / name)


def check_vault_dir(vault: Path) -> None:
    """The card vault directory, if present: a real directory, ours, nobody else may write."""
    try:
        info = os.lstat(vault)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise InsecureStateDir(
            f"the card vault directory {vault} is {kind}; the vault must be a real directory "
            f"inside the state directory. Move it away (mv {vault} {vault}.suspect) and check "
            "who put it there",
            vault,
        )
    _check_dir(vault, "the card vault directory", info, parent=False)


def _check_regular_if_present(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise _unsafe(path, info.st_mode)


def _unsafe(path: Path, mode: int, what: str = "") -> UnsafeFile:
    label = f"{what} {path}" if what else str(path)
    if stat.S_ISLNK(mode):
        return UnsafeFile(
            f"{label} is a symbolic link; posedge never follows links for its key, token, "
            "lock and vault files (a planted link could make it read or overwrite another "
            f"file). Replace the link by the file itself: "
            f'cp --remove-destination "$(readlink -f {path})" {path}',
            path,
        )
    return UnsafeFile(
        f"{label} is not a regular file; posedge expects a plain file there. Move it away "
        f"(mv {path} {path}.suspect) and check who put it there",
        path,
    )


# ---- files --------------------------------------------------------------------------------
def open_secret_nofollow(
    path: Path | str, flags: int, mode: int = SECRET_FILE_MODE, *, what: str = ""
) -> int:
    """``os.open(path, flags, mode)`` that never follows a symbolic link at ``path``.

    * a symbolic link, or anything but a regular file (a FIFO, a directory, a
      device) raises :class:`UnsafeFile` naming the file (``what`` prefixes its name);
    * with ``O_CREAT`` the file ends up with exactly ``mode`` whatever the umask;
    * other errors (``FileNotFoundError``, ``FileExistsError``, ``PermissionError``)
      propagate unchanged, so callers keep their own handling.

    The descriptor is close-on-exec. The caller closes it.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    raise _unsafe(path, info.st_mode, what) from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            with contextlib.suppress(OSError):
                raise _unsafe(path, os.lstat(path).st_mode, what) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _unsafe(path, info.st_mode, what)
        # O_NONBLOCK only kept a FIFO from blocking the open; regular files ignore it.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        if flags & os.O_CREAT and stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)  # the umask may have taken bits away
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file_nofollow(
    path: Path | str, *, max_bytes: int = MAX_SMALL_FILE_BYTES, what: str = ""
) -> bytes:
    """The whole content of a small regular file, opened with :func:`open_secret_nofollow`.

    Reads at most ``max_bytes + 1`` bytes, so a caller can tell an oversized file.
    """
    fd = open_secret_nofollow(path, os.O_RDONLY, what=what)
    try:
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def create_file_once(path: Path, data: bytes, mode: int, *, what: str = "") -> None:
    """Write a new small file at ``path`` durably and atomically, unless one is already there.

    The content goes to a temporary file (``mode`` whatever the umask, never through
    a link), is fsynced, then hard-linked into place: a concurrent creator wins and
    its file is kept, never overwritten. OSErrors propagate for the caller to explain.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = open_secret_nofollow(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, what=what)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def is_regular_file(path: Path | str) -> bool:
    """True for a regular file (a symbolic link to one is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


__all__ = [
    "FILE_MODE",
    "PROTECTED_FILES",
    "SECRET_FILE_MODE",
    "InsecureStateDir",
    "UnsafeFile",
    "check_state_dir",
    "check_vault_dir",
    "create_file_once",
    "is_regular_file",
    "open_secret_nofollow",
    "read_file_nofollow",
]
