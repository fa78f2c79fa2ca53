"""The generated terminal id file: never through a symbolic link, mode 0640 whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from posedge.agent.errors import ConfigError
from posedge.agent.sync.terminal import TERMINAL_ID_RE, terminal_id


def test_generated_once_and_kept(tmp_path: Path) -> None:
    first = terminal_id(None, tmp_path)
    assert TERMINAL_ID_RE.match(first)
    assert terminal_id(None, tmp_path) == first
    assert terminal_id("configured-1", tmp_path) == "configured-1"
    assert [p.name for p in tmp_path.iterdir()] == ["terminal-id"]  # no temp file left


def test_created_with_mode_0640_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        terminal_id(None, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "terminal-id").stat().st_mode) == 0o640


def test_a_symlinked_terminal_id_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text("term-someone-else\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "terminal-id").symlink_to(planted)
    with pytest.raises(ConfigError, match="symbolic link") as caught:
        terminal_id(None, state)
    assert str(state / "terminal-id") in str(caught.value)


def test_a_dangling_symlink_is_not_created_through(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "would-be-created"
    (state / "terminal-id").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        terminal_id(None, state)
    assert not target.exists()
