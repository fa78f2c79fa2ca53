"""ApiServer: socket mode, stale and live sockets, loopback rule; token file; default paths."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

from posedge.agent.api import (
    ApiServer,
    check_listen_address,
    create_app,
    load_or_create_token,
    resolve_api_paths,
)
from posedge.agent.api.server import ApiSocketInUse
from posedge.agent.config import ApiConfig, Config
from posedge.agent.errors import ConfigError

from .conftest import AUTH, CURRENCIES, TOKEN, BackgroundApi
from .fakes import FakeEngine


def health(path: Path) -> int:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://t") as c:
        return c.get("/v1/health").status_code


def test_socket_is_mode_0660_and_removed_on_stop(socket_path: Path) -> None:
    with BackgroundApi(FakeEngine(), socket_path):
        info = socket_path.stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert health(socket_path) == 200
    assert not socket_path.exists()


def test_a_stale_socket_from_a_crash_is_replaced(socket_path: Path) -> None:
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(socket_path))
    crashed.close()  # the file stays, nobody listens: what SIGKILL leaves behind
    assert socket_path.exists()
    with BackgroundApi(FakeEngine(), socket_path):
        assert health(socket_path) == 200


def test_a_live_socket_is_refused_and_left_alone(socket_path: Path) -> None:
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(socket_path))
    live.listen(1)
    try:
        server = ApiServer(
            create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES), socket_path
        )
        with pytest.raises(ApiSocketInUse, match="another process is listening"):
            asyncio.run(server.start())
        assert socket_path.exists()
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(socket_path))  # still the other process's socket
        probe.close()
    finally:
        live.close()


def test_a_regular_file_in_the_way_is_not_deleted(socket_path: Path) -> None:
    socket_path.write_text("not a socket")
    server = ApiServer(create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES), socket_path)
    with pytest.raises(ConfigError, match="not a socket"):
        asyncio.run(server.start())
    assert socket_path.read_text() == "not a socket"


def test_too_long_socket_path_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / ("s" * 120)
    server = ApiServer(create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES), path)
    with pytest.raises(ConfigError, match=r"api\.socket"):
        asyncio.run(server.start())


@pytest.mark.parametrize("listen", ["10.1.2.3:8765", "0.0.0.0:0", "[::]:8765", "192.168.1.5:80"])
def test_non_loopback_tcp_is_refused_unless_allowed(listen: str, socket_path: Path) -> None:
    app = create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES)
    with pytest.raises(ConfigError) as refused:
        ApiServer(app, socket_path, tcp=listen)
    assert "api.listen" in str(refused.value) and "--api-listen" in str(refused.value)
    assert "allow_non_loopback" in str(refused.value)
    assert check_listen_address(listen, allow_non_loopback=True)[1] == int(listen.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:8765", ("127.0.0.1", 8765)), ("[::1]:0", ("::1", 0)), ("localhost:9", None)],
)
def test_loopback_addresses_are_accepted(listen: str, expected: tuple[str, int] | None) -> None:
    host, port = check_listen_address(listen)
    assert expected is None or (host, port) == expected


@pytest.mark.parametrize("listen", ["8765", "127.0.0.1:", "127.0.0.1:99999", ":80"])
def test_malformed_listen_addresses(listen: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        check_listen_address(listen)


def test_tcp_port_zero_reports_the_bound_port(socket_path: Path) -> None:
    with BackgroundApi(FakeEngine(), socket_path, tcp="127.0.0.1:0") as api:
        port = api.server.tcp_port
        assert port and port > 0
        reply = httpx.get(f"http://127.0.0.1:{port}/v1/status", headers=AUTH, timeout=5)
        assert reply.status_code == 200


def test_tcp_only_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = create_app(FakeEngine(), token=TOKEN, currencies=CURRENCIES)
        server = ApiServer(app, None, tcp="127.0.0.1:0")
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.tcp_url or "", timeout=5) as client:
                assert (await client.get("/v1/health")).status_code == 200
        finally:
            await server.stop()
        assert not server.running

    asyncio.run(scenario())


def test_token_file_is_created_0600_once_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = load_or_create_token(ApiConfig(), state)
    path = state / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32 and path.read_text().strip() == token
    assert load_or_create_token(Config(), state) == token
    assert [p.name for p in state.iterdir()] == ["api-token"]  # no temporary left


def test_token_file_from_config(tmp_path: Path) -> None:
    path = tmp_path / "till-token"
    path.write_text("s3cret-token\n")
    os.chmod(path, 0o600)
    assert (
        load_or_create_token(ApiConfig(token_file=str(path)), tmp_path / "state") == "s3cret-token"
    )
    assert not (tmp_path / "state" / "api-token").exists()
    path.write_text("   \n")
    with pytest.raises(ConfigError, match=r"api\.token_file") as bad:
        load_or_create_token(ApiConfig(token_file=str(path)), tmp_path)
    assert "s3cret" not in str(bad.value)
    with pytest.raises(ConfigError, match=r"api\.token_file"):
        load_or_create_token(ApiConfig(token_file=str(tmp_path / "missing")), tmp_path)


def test_empty_or_spaced_tokens_are_refused_by_create_app() -> None:
    for token in ("", " padded ", "t\xe9"):
        with pytest.raises(ValueError):
            create_app(FakeEngine(), token=token, currencies=CURRENCIES)


def test_default_paths(tmp_path: Path) -> None:
    state = tmp_path / "state"
    paths = resolve_api_paths(Config(), state, env={})
    assert paths.socket == state / "api.sock"
    assert paths.token_file == state / "api-token"
    assert paths.listen is None
    run = resolve_api_paths(ApiConfig(), state, env={"RUNTIME_DIRECTORY": "/run/posedge:/run/x"})
    assert run.socket == Path("/run/posedge/api.sock")
    explicit = ApiConfig(socket="/tmp/till.sock", token_file="/etc/t", listen="127.0.0.1:8765")
    paths = resolve_api_paths(explicit, state, env={"RUNTIME_DIRECTORY": "/run/posedge"})
    assert paths.socket == Path("/tmp/till.sock")
    assert paths.token_file == Path("/etc/t") and paths.listen == "127.0.0.1:8765"
