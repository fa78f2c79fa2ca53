"""One daemon per state directory: an ``flock``-ed PID file, ``<state dir>/daemon.lock``.

The lock lives in the state directory (not the runtime directory) because the
state is what two daemons must not share; two runtime directories can point
at one state directory.

``flock(2)`` belongs to the open file, so the kernel drops it when the holder
dies however it dies (SIGKILL, OOM, power loss): a crash never leaves a lock
that blocks the next start. The file itself stays; a stale one is simply
locked again and its PID overwritten. It is never unlinked, because unlinking
a lock file races with a second daemon that has it open (both would "own" a
different inode). The file descriptor is close-on-exec, so programs we
spawn do not inherit the lock (a bare ``fork()`` without exec would).

Errors (exit codes per DESIGN §3):

    ConfigError                         exit 2
    ├── DaemonAlreadyRunning            another process holds the lock (pid named)
    ├── UnsafeFile                      daemon.lock is a symbolic link or not a regular file
    └── (plain ConfigError)             the lock file cannot be created/opened

This module must never delete or truncate a lock file it does not hold, and
never wait for a lock (a second daemon fails fast).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError
from ..statedir import SECRET_FILE_MODE, UnsafeFile, open_secret_nofollow, read_file_nofollow

LOCK_FILE_NAME = "daemon.lock"


class DaemonAlreadyRunning(ConfigError):
    """Another posedge daemon holds this state directory (exit 2)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not recorded yet"
        super().__init__(
            f"another posedge daemon ({holder}) is running on this state directory: "
            f"{path} is locked; stop it (systemctl stop posedge) or use another --state-dir"
        )


class StateDirLock:
    """The exclusive daemon lock of one state directory; a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> StateDirLock:
        return cls(Path(state_dir) / LOCK_FILE_NAME)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and record our pid; raise DaemonAlreadyRunning if taken."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Never through a symbolic link (UnsafeFile, exit 2): a planted one would have us
            # truncate the file it names. 0600 whatever the umask (an existing file is made
            # 0600 too): flock(2) needs only an open descriptor, so anyone who could open
            # the file, even read-only, could hold the lock and keep the daemon from starting.
            fd = open_secret_nofollow(
                self.path, os.O_RDWR | os.O_CREAT, SECRET_FILE_MODE, what="the daemon lock file"
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot open the daemon lock file {self.path}: {exc.strerror}; "
                "check that the state directory exists and belongs to the posedge user"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DaemonAlreadyRunning(self.path, self.holder_pid()) from None
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(
                f"cannot write the daemon pid to {self.path}: {exc.strerror}"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; the (emptied) file stays for the next start."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def holder_pid(self) -> int | None:
        """The pid recorded in the lock file (the holder's while it is locked)."""
        try:
            raw = read_file_nofollow(self.path, max_bytes=64, what="the daemon lock file")
        except (OSError, UnsafeFile):
            return None
        text = raw.decode("ascii", errors="replace").strip()
        return int(text) if (text.isascii() and text.isdigit()) else None

    def __enter__(self) -> StateDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
