"""Per-device statistics counters (UnifiedPOS names), persisted in the state dir.

One JSON file per device, ``<state_dir>/devices/<device_id>.stats.json``,
written atomically (temp file, fsync, rename) so a crash never leaves a torn
file. A damaged file is kept aside as ``.corrupt`` and counting restarts; the
counters are diagnostics, never a reason to refuse work.

Files are created 0640 and the ``devices`` directory 0750 whatever the umask,
and nothing is opened through a symbolic link (``O_NOFOLLOW``; the temporary
file has an unguessable name and ``O_EXCL``): a link, or anything but a regular
file, where the statistics file belongs is set aside like a damaged file, its
target never read or written. (posedge.agent.statedir does the same for the
agent; drivers must not import the agent, hence the few lines here.)

``min_save_interval_s`` bounds how often a busy device fsyncs its counters (a
lane selling many sales a second would otherwise spend its time here); a
skipped save is made at the next one due or at ``save(force=True)`` on close.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
FILE_MODE = 0o640
DIR_MODE = 0o750
MAX_FILE_BYTES = 1 << 20
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class _NotAFile(Exception):
    """A symbolic link or a non-regular file where the statistics file belongs."""


def _read_nofollow(path: Path) -> bytes:
    """The file's content; never through a link, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _NotAFile from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotAFile
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _make_dir(path: Path) -> None:
    """``path`` as a directory of mode DIR_MODE (umask or not) if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    try:
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


class DeviceStatistics:
    """Named integer counters plus powered/online hours for one device."""

    def __init__(
        self, state_dir: Path | None, device_id: str, *, min_save_interval_s: float = 0.0
    ) -> None:
        self.device_id = device_id
        self.min_save_interval_s = min_save_interval_s
        self._last_save: float | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._online_since: float | None = None
        self._online_s_base = 0.0
        self.path: Path | None = None
        if state_dir is not None:
            safe = _SAFE_ID.sub("_", device_id).strip("_") or "device"
            self.path = state_dir / "devices" / f"{safe}.stats.json"
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = _read_nofollow(self.path)
            if len(data) > MAX_FILE_BYTES:
                raise ValueError("too large for a statistics file")
            raw = json.loads(data.decode("utf-8"))
            counters = raw["counters"]
            if not isinstance(counters, dict) or not all(
                isinstance(v, int) for v in counters.values()
            ):
                raise ValueError("counters must be integers")
            self._counters = {str(k): int(v) for k, v in counters.items()}
            self._online_s_base = float(raw.get("online_s", 0.0))
        except FileNotFoundError:
            return
        except (_NotAFile, ValueError, KeyError, TypeError):
            self.path.replace(self.path.with_suffix(".corrupt"))
            self._counters = {}

    def increment(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + by

    def get(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def mark_online(self, online: bool) -> None:
        """Track hours online (UnifiedPOS HoursPoweredCount analogue)."""
        with self._lock:
            now = time.monotonic()
            if online and self._online_since is None:
                self._online_since = now
            elif not online and self._online_since is not None:
                self._online_s_base += now - self._online_since
                self._online_since = None

    def snapshot(self) -> dict[str, int | float]:
        with self._lock:
            online_s = self._online_s_base
            if self._online_since is not None:
                online_s += time.monotonic() - self._online_since
            out: dict[str, int | float] = dict(sorted(self._counters.items()))
            out["HoursOnlineCount"] = round(online_s / 3600.0, 4)
            return out

    def save(self, *, force: bool = False) -> None:
        """Persist atomically (at most every ``min_save_interval_s`` unless ``force``)."""
        if self.path is None:
            return
        now = time.monotonic()
        if (
            not force
            and self._last_save is not None
            and now - self._last_save < self.min_save_interval_s
        ):
            return
        self._last_save = now
        snap = self.snapshot()
        online_s = float(snap.pop("HoursOnlineCount")) * 3600.0
        doc: Mapping[str, object] = {
            "device": self.device_id,
            "counters": snap,
            "online_s": online_s,
        }
        _make_dir(self.path.parent)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
        try:
            try:
                os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away
                with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as fh:
                    json.dump(doc, fh, indent=1, sort_keys=True)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)  # replaces a link there, never writes through it
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
