"""The till API's exposure (issue 11 items 3, 4 and 7).

* the socket belongs to the till's own group (``posedge-till``), never to the group
  that owns the card reader and printer nodes;
* ``api.allow_non_loopback`` without TLS logs a structured warning naming the risk on
  every start;
* token files are never read through a symbolic link.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.api import ApiServer, create_app, load_or_create_token
from posedge.agent.api import server as server_module
from posedge.agent.config import ApiConfig, Config
from posedge.agent.errors import ConfigError
from posedge.agent.logs import configure_logging

from .conftest import CURRENCIES, TOKEN, BackgroundApi
from .fakes import FakeEngine


def existing_group() -> grp.struct_group:
    """A group other than ours to give the socket to (nogroup on Debian, nobody elsewhere)."""
    for name in ("nogroup", "nobody", "daemon"):
        with contextlib.suppress(KeyError):
            group = grp.getgrnam(name)
            if group.gr_gid != os.getegid():
                return group
    pytest.skip("no second group on this host")


# ------------------------------------------------------------------ socket group
@pytest.mark.skipif(os.geteuid() != 0, reason="chgrp to a group we are not in needs root")
def test_the_socket_belongs_to_the_tills_group(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = existing_group()
    monkeypatch.setattr(server_module, "SOCKET_GROUP", group.gr_name)
    with BackgroundApi(FakeEngine(), socket_path):
        info = socket_path.stat()
        assert info.st_gid == group.gr_gid
        assert stat.S_IMODE(info.st_mode) == 0o660


def test_the_default_socket_group_is_the_tills_not_the_devices() -> None:
    assert server_module.SOCKET_GROUP == "posedge-till"


def test_without_the_tills_group_the_socket_keeps_the_process_group(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SOCKET_GROUP", "no-such-group-posedge-test")
    with BackgroundApi(FakeEngine(), socket_path):
        assert socket_path.stat().st_gid == os.getegid()


# ------------------------------------------------------------------ non-loopback warning
@contextlib.contextmanager
def structured_log() -> Iterator[io.StringIO]:
    """The agent's real structured logging, into a buffer instead of stderr."""
    logger = logging.getLogger("posedge")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    buffer = io.StringIO()
    configure_logging("info", stream=buffer)
    try:
        yield buffer
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def warnings_in(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["level"] == "warning"]


async def start_and_stop(server: ApiServer) -> None:
    await server.start()
    await server.stop()


def test_allow_non_loopback_warns_on_every_start(socket_path: Path) -> None:
    app = create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES)
    with structured_log() as log:
        for _ in range(2):
            server = ApiServer(app, socket_path, "0.0.0.0:0", allow_non_loopback=True)
            asyncio.run(start_and_stop(server))
    found = [w for w in warnings_in(log) if "cleartext" in w["msg"]]
    assert len(found) == 2, log.getvalue()
    warning = found[0]
    assert warning["logger"] == "posedge.api"
    assert "bearer token" in warning["msg"] and "sale data" in warning["msg"]
    assert "api.allow_non_loopback" in warning["msg"] and "without TLS" in warning["msg"]
    assert warning["listen"] == "0.0.0.0:0" and warning["tls"] is False
    assert TOKEN not in log.getvalue()


def test_loopback_only_does_not_warn(socket_path: Path) -> None:
    app = create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES)
    with structured_log() as log:
        asyncio.run(start_and_stop(ApiServer(app, socket_path, "127.0.0.1:0")))
    assert not [w for w in warnings_in(log) if "cleartext" in w["msg"]], log.getvalue()


# ------------------------------------------------------------------ token files
def test_a_symlinked_api_token_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "someone-elses-token"
    elsewhere.write_text("planted-token\n")
    (state / "api-token").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link") as caught:
        load_or_create_token(Config(), state)
    assert str(state / "api-token") in str(caught.value)
    assert "planted-token" not in str(caught.value)
    assert elsewhere.read_text() == "planted-token\n"


def test_a_dangling_symlinked_api_token_is_not_created_through(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "created-through-the-link"
    (state / "api-token").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        load_or_create_token(Config(), state)
    assert not target.exists()


def test_a_symlinked_api_token_file_setting_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "token"
    real.write_text("a-token\n")
    link = tmp_path / "token-link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=r"api\.token_file") as caught:
        load_or_create_token(ApiConfig(token_file=str(link)), tmp_path)
    assert "symbolic link" in str(caught.value) and str(link) in str(caught.value)
    assert load_or_create_token(ApiConfig(token_file=str(real)), tmp_path) == "a-token"
