"""The journal's files: never through a symbolic link, explicit modes whatever the umask.

Issue 11 item 4: ``device.key`` is opened with ``O_NOFOLLOW`` (a link is refused with a
configuration error naming it) and created 0600; ``journal.db`` is created 0640 (SQLite
gives its -wal and -shm files the database's mode) and a symlinked one is refused.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.errors import ConfigError
from posedge.agent.journal import JOURNAL_FILE_NAME, Journal, JournalError
from posedge.agent.journal.chain import KEY_BYTES, KEY_FILE_NAME, load_device_key
from posedge.agent.journal.store import PAGE_SIZE
from posedge.agent.statedir import UnsafeFile

from .helpers import fill


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


# ---- journal.db ---------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o000, 0o077])
def test_a_new_journal_and_its_wal_are_0640_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    state = tmp_path / "state"
    db = state / JOURNAL_FILE_NAME
    with umask(mask):
        with Journal.open(state) as jr:
            fill(jr, 3)
            wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
            assert wal.exists() and shm.exists()
            assert (mode_of(db), mode_of(wal), mode_of(shm)) == (0o640, 0o640, 0o640)
        with Journal.open(state) as jr:  # reopening an existing journal changes nothing
            fill(jr, 1)
            assert mode_of(db) == 0o640 and mode_of(wal) == 0o640
    assert mode_of(state / KEY_FILE_NAME) == 0o600


def test_a_new_journal_still_gets_the_small_page_size(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 1)
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    finally:
        conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_symlinked_journal_is_refused(tmp_path: Path, readonly: bool) -> None:
    real = tmp_path / "real"
    with Journal.open(real) as jr:
        fill(jr, 2)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / JOURNAL_FILE_NAME).symlink_to(real / JOURNAL_FILE_NAME)
    os.link(real / KEY_FILE_NAME, state / KEY_FILE_NAME)
    before = (real / JOURNAL_FILE_NAME).read_bytes()
    with pytest.raises(UnsafeFile, match="symbolic link") as caught:
        Journal.open(state, readonly=readonly)
    assert str(state / JOURNAL_FILE_NAME) in str(caught.value) and caught.value.exit_code == 2
    assert (real / JOURNAL_FILE_NAME).read_bytes() == before
    assert sorted(p.name for p in state.iterdir()) == sorted([JOURNAL_FILE_NAME, KEY_FILE_NAME])


@pytest.mark.parametrize("readonly", [False, True])
def test_a_dangling_symlinked_journal_is_not_created_through(
    tmp_path: Path, readonly: bool
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "planted.db"
    (state / JOURNAL_FILE_NAME).symlink_to(target)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        Journal.open(state, readonly=readonly)
    assert not target.exists()
    assert [p.name for p in state.iterdir()] == [JOURNAL_FILE_NAME]


def test_a_read_only_open_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with pytest.raises(JournalError, match="no journal"):
        Journal.open(state, readonly=True)
    assert list(state.iterdir()) == []
