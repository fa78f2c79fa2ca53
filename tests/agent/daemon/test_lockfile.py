"""The state-dir lock: one daemon per state dir, named holder, nothing left by a crash."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posedge.agent.daemon import LOCK_FILE_NAME, DaemonAlreadyRunning, StateDirLock
from posedge.agent.errors import ConfigError
from posedge.agent.statedir import UnsafeFile

TRY_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from posedge.agent.daemon import StateDirLock, DaemonAlreadyRunning
    try:
        StateDirLock.for_state_dir(Path(sys.argv[1])).acquire()
    except DaemonAlreadyRunning as exc:
        print(exc.exit_code, exc.pid)
        print(exc)
        sys.exit(exc.exit_code)
    print("acquired")
    """
)

HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from posedge.agent.daemon import StateDirLock
    lock = StateDirLock.for_state_dir(Path(sys.argv[1]))
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until killed
    """
)


def test_a_second_daemon_in_another_process_gets_a_clear_error(tmp_path: Path) -> None:
    with StateDirLock.for_state_dir(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
        result = subprocess.run(
            [sys.executable, "-c", TRY_LOCK, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2, result.stderr
    first, message = result.stdout.splitlines()[:2]
    assert first == f"2 {os.getpid()}"
    assert f"pid {os.getpid()}" in message and str(tmp_path / LOCK_FILE_NAME) in message
    assert "systemctl stop posedge" in message


def test_a_second_locker_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    with StateDirLock.for_state_dir(tmp_path), pytest.raises(DaemonAlreadyRunning) as info:
        StateDirLock.for_state_dir(tmp_path).acquire()
    assert info.value.pid == os.getpid()
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_sigkill_of_the_holder_leaves_the_lock_reacquirable(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DaemonAlreadyRunning) as info:
            StateDirLock.for_state_dir(tmp_path).acquire()
        assert info.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
    assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{holder.pid}\n"  # stale file remains
    lock = StateDirLock.for_state_dir(tmp_path)
    lock.acquire()
    try:
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_release_keeps_an_empty_file_and_allows_relocking(tmp_path: Path) -> None:
    lock = StateDirLock.for_state_dir(tmp_path / "state")
    lock.acquire()
    lock.acquire()  # idempotent
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / LOCK_FILE_NAME).stat().st_mode & 0o777 == 0o600
    lock.release()
    lock.release()
    assert (tmp_path / "state" / LOCK_FILE_NAME).read_text() == ""
    assert lock.holder_pid() is None
    with StateDirLock.for_state_dir(tmp_path / "state"):
        pass


def test_an_unusable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ConfigError, match="cannot open the daemon lock file"):
        StateDirLock.for_state_dir(not_a_dir).acquire()


def test_a_symlinked_lock_file_is_refused_and_its_target_not_truncated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "precious"
    victim.write_text("keep me\n")
    (state / LOCK_FILE_NAME).symlink_to(victim)
    with pytest.raises(UnsafeFile, match="symbolic link") as caught:
        StateDirLock.for_state_dir(state).acquire()
    assert str(state / LOCK_FILE_NAME) in str(caught.value) and caught.value.exit_code == 2
    assert victim.read_text() == "keep me\n"
    # A dangling link is not created through either.
    victim.unlink()
    with pytest.raises(UnsafeFile, match="symbolic link"):
        StateDirLock.for_state_dir(state).acquire()
    assert not victim.exists()
    assert StateDirLock.for_state_dir(state).holder_pid() is None


@pytest.mark.parametrize("mask", [0o777, 0o000])
def test_the_lock_file_is_0600_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    """0600: flock(2) needs only an open descriptor, so anyone who could open the file, even
    read-only, could hold the lock and keep the daemon from starting."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    old = os.umask(mask)
    try:
        with StateDirLock.for_state_dir(state):
            assert stat.S_IMODE(os.lstat(state / LOCK_FILE_NAME).st_mode) == 0o600
    finally:
        os.umask(old)
    os.chmod(state / LOCK_FILE_NAME, 0o644)  # an old or hand-made one is made private again
    with StateDirLock.for_state_dir(state):
        assert stat.S_IMODE(os.lstat(state / LOCK_FILE_NAME).st_mode) == 0o600
