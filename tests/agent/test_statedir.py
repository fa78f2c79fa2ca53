"""The state directory cannot be hijacked (issue 11 item 4).

A state or vault directory others could write, or that another user owns, is
refused before any command or the daemon opens the journal: exit 2, a message
naming the path and the fix, and the journal byte for byte untouched. A
symbolic link where a key, token or lock file belongs is refused the same way.
Files are opened without following links and created with explicit modes
whatever the umask (``posedge.agent.statedir``).

Tests run as root in pytest's 0700 temporary directories; "another user" is
uid 65534 (nobody), set with ``os.chown``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.journal import Journal

from .journal.helpers import POSEDGE_EXE, fill, posedge

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory with a journal of a few events, a device key, a vault and a token."""
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 5)
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert done.returncode == 0, done.stderr
    return state


def snapshot(state: Path) -> dict[str, bytes]:
    """Every file's bytes (the journal, its WAL, the keys)."""
    return {
        str(p.relative_to(state)): p.read_bytes()
        for p in sorted(state.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, f"{needle!r} not in:\n{done.stderr}"


COMMANDS = [
    ("journal", "note", "replaced the print head"),  # a writer
    ("journal", "verify"),  # a reader
    ("sync", "status"),
]


# ------------------------------------------------------------------ the state directory
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=oct)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_state_dir_others_can_write_is_refused(
    state: Path, mode: int, command: tuple[str, ...]
) -> None:
    before = snapshot(state)
    os.chmod(state, mode)
    done = posedge("--state-dir", str(state), *command)
    assert_refused(done, str(state), "writable by", f"chmod go-w {state}")
    assert snapshot(state) == before, "the journal and keys must stay untouched"
    assert stat.S_IMODE(state.stat().st_mode) == mode, "refused, not silently 'fixed'"


@needs_root
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_state_dir_owned_by_another_user_is_refused(
    state: Path, command: tuple[str, ...]
) -> None:
    before = snapshot(state)
    os.chown(state, NOBODY, NOBODY)
    done = posedge("--state-dir", str(state), *command)
    assert_refused(
        done, str(state), f"owned by uid {NOBODY} (nobody)", "chown root", "sudo -u nobody"
    )
    assert snapshot(state) == before


def test_the_daemon_refuses_an_insecure_state_dir(state: Path) -> None:
    """``posedge run`` refuses before it takes the lock or opens the journal."""
    before = snapshot(state)
    os.chmod(state, 0o777)
    env = {k: v for k, v in os.environ.items() if k not in ("POSEDGE_CONFIG", "NOTIFY_SOCKET")}
    done = subprocess.run(
        [str(POSEDGE_EXE), "--state-dir", str(state), "run", "--simulate"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert_refused(done, str(state), "chmod go-w")
    assert snapshot(state) == before
    assert not (state / "daemon.lock").exists()


def test_the_demo_refuses_an_insecure_state_dir(tmp_path: Path) -> None:
    """``posedge demo --state-dir D`` is held to the same rule (its own temporary
    directory, when none is given, is made safe by tempfile)."""
    state = tmp_path / "demo-state"
    state.mkdir()
    os.chmod(state, 0o777)
    done = posedge("--state-dir", str(state), "demo", "--sales", "6")
    assert_refused(done, str(state), "writable by group and others", f"chmod go-w {state}")
    assert list(state.iterdir()) == [], "nothing is created in a refused state directory"


def test_a_vault_dir_others_can_write_is_refused(state: Path) -> None:
    vault = state / "vault"
    vault.mkdir(mode=0o700)
    before = snapshot(state)
    os.chmod(vault, 0o777)
    done = posedge("--state-dir", str(state), "journal", "note", "x")
    assert_refused(done, str(vault), "card vault", f"chmod go-w {vault}")
    assert snapshot(state) == before


@needs_root
def test_a_vault_dir_owned_by_another_user_is_refused(state: Path) -> None:
    vault = state / "vault"
    vault.mkdir(mode=0o700)
    os.chown(vault, NOBODY, NOBODY)
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(vault), f"owned by uid {NOBODY}")


def test_a_vault_dir_that_is_a_symlink_is_refused(state: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (state / "vault").symlink_to(elsewhere)
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(state / "vault"), "symbolic link")


def test_a_parent_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    state = shared / "state"
    with Journal.open(state) as journal:
        fill(journal, 2)
    os.chmod(shared, 0o777)  # anyone could rename "state" away and put their own there
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(shared), "parent", f"chmod go-w {shared}")
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename what is ours
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert done.returncode == 0, done.stderr


def test_a_new_state_dir_is_checked_where_it_would_be_created(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    state = shared / "new" / "state"
    done = posedge("--state-dir", str(state), "journal", "note", "hello")
    assert_refused(done, str(shared))
    assert not (shared / "new").exists(), "a refused state dir is not created"
    os.chmod(shared, 0o755)
    done = posedge("--state-dir", str(state), "journal", "note", "hello")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_safe_state_dir_behind_a_symlink_is_accepted(state: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(state)
    done = posedge("--state-dir", str(link), "journal", "verify")
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ key, token and lock files
@pytest.mark.parametrize("name", ["device.key", "vault.key", "api-token", "terminal-id"])
def test_a_symlink_where_a_key_or_token_belongs_is_refused(
    state: Path, tmp_path: Path, name: str
) -> None:
    """E.g. device.key → a file elsewhere: refused naming the file, not followed."""
    target = state / name
    outside = tmp_path / f"outside-{name}"
    if target.exists():
        target.rename(outside)
    else:
        outside.write_bytes(b"term-planted\n" if name == "terminal-id" else os.urandom(32))
    target.symlink_to(outside)
    before = snapshot(state)
    outside_before = outside.read_bytes()
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(target), "symbolic link", "cp --remove-destination")
    assert snapshot(state) == before
    assert outside.read_bytes() == outside_before


def test_a_symlinked_daemon_lock_is_refused_before_it_could_truncate_the_target(
    state: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "daemon.lock").symlink_to(victim)
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(state / "daemon.lock"), "symbolic link")
    assert victim.read_text() == "precious\n"


def test_a_fifo_where_a_key_belongs_is_refused(state: Path) -> None:
    os.mkfifo(state / "api-token")
    done = posedge("--state-dir", str(state), "journal", "verify")
    assert_refused(done, str(state / "api-token"), "not a regular file")


# ------------------------------------------------------------------ the helpers themselves
@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_open_secret_nofollow_refuses_links_and_odd_files(tmp_path: Path) -> None:
    from posedge.agent.errors import ConfigError
    from posedge.agent.statedir import UnsafeFile, open_secret_nofollow, read_file_nofollow

    real = tmp_path / "real"
    real.write_bytes(b"secret")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafeFile, match="symbolic link") as caught:
        open_secret_nofollow(link, os.O_RDONLY, what="device key")
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2
    assert f"device key {link}" in str(caught.value)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):  # O_EXCL: a planted link is never created through
        open_secret_nofollow(dangling, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert not (tmp_path / "nowhere").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="not a regular file"):  # and it did not block
        open_secret_nofollow(fifo, os.O_RDONLY)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        open_secret_nofollow(tmp_path, os.O_RDONLY)
    with pytest.raises(FileNotFoundError):
        read_file_nofollow(tmp_path / "missing")
    assert read_file_nofollow(real) == b"secret"


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_created_files_get_their_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    from posedge.agent.statedir import open_secret_nofollow

    path = tmp_path / "file"
    with umask(0o777):
        fd = open_secret_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_state_dir_files_get_their_modes_whatever_the_umask(tmp_path: Path) -> None:
    """api-token and vault.key 0600, terminal-id 0640, even under umask 0777."""
    from posedge.agent.api.bearer import load_or_create_token
    from posedge.agent.config import Config
    from posedge.agent.sales.vault import CardVault
    from posedge.agent.sync.terminal import terminal_id

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with umask(0o777):
        load_or_create_token(Config(), state)
        CardVault(state)
        terminal_id(None, state)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
    assert modes == {"api-token": 0o600, "vault.key": 0o600, "terminal-id": 0o640}


def test_check_state_dir_reads_only(tmp_path: Path) -> None:
    from posedge.agent.statedir import check_state_dir

    missing = tmp_path / "a" / "b"
    check_state_dir(missing)
    assert not (tmp_path / "a").exists()
    check_state_dir(tmp_path)  # pytest's own 0700 directory passes
