"""The journal's files: never through a symbolic link, explicit modes whatever the umask.

Issue 11 item 4: ``device.key`` is opened with ``O_NOFOLLOW`` (a link is refused with a
configuration error naming it) and created 0600; ``journal.db`` is created 0640 (SQLite
gives its -wal and -shm files the database's mode) and a symlinked one is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.errors import ConfigError
from posedge.agent.journal import Journal
from posedge.agent.journal.chain import KEY_BYTES, KEY_FILE_NAME, load_device_key
from posedge.agent.statedir import UnsafeFile


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---- device.key ---------------------------------------------------------------------------
def test_a_symlinked_device_key_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.key"
    elsewhere.write_bytes(os.urandom(KEY_BYTES))
    os.chmod(elsewhere, 0o644)
    (state / KEY_FILE_NAME).symlink_to(elsewhere)
    for create in (False, True):
        with pytest.raises(UnsafeFile, match="symbolic link") as caught:
            load_device_key(state, create=create)
        assert str(state / KEY_FILE_NAME) in str(caught.value)
        assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2
    assert mode_of(elsewhere) == 0o644  # not chmod-ed through the link


def test_a_dangling_symlinked_device_key_is_not_created_through(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "planted.key"
    (state / KEY_FILE_NAME).symlink_to(target)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        Journal.open(state)
    assert not target.exists()
    assert (state / KEY_FILE_NAME).is_symlink()


@pytest.mark.parametrize("mask", [0o777, 0o000])
def test_the_device_key_is_created_0600_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with umask(mask):
        key = load_device_key(state, create=True)
    assert mode_of(state / KEY_FILE_NAME) == 0o600
    assert load_device_key(state, create=False) == key


def test_a_group_readable_device_key_is_made_private_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = load_device_key(state, create=True)
    os.chmod(state / KEY_FILE_NAME, 0o644)
    assert load_device_key(state, create=False) == key
    assert mode_of(state / KEY_FILE_NAME) == 0o600
