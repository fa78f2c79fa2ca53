"""Card data and tokens never travel in cleartext (issue 11 item 3).

``sync.url`` and the ``--backoffice`` options (``run``, ``sync now``) refuse
``http://`` unless the host is loopback (127.0.0.0/8, ::1, localhost): a
configuration or usage error, exit 2, naming the key or option, the value and
what is allowed, with nothing stored touched. The till API has no TLS, so
``api.allow_non_loopback`` logs a structured warning on every start of the
real daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from posedge.agent.config import load_config
from posedge.agent.errors import ConfigError

from ..e2e.daemon_support import Daemon
from .journal.helpers import POSEDGE_EXE, posedge

CLEARTEXT = [
    "http://bo.example.com",
    "http://bo.example.com:8080/base",
    "http://10.1.2.3:8080",
    "http://0.0.0.0:8080",
    "http://[::ffff:127.0.0.1]:8080",
    "http://localhost.example.com",
    "http://127.0.0.1.nip.io",
    "HTTP://BO.EXAMPLE.COM",
]
ALLOWED = [
    "https://bo.example.com",
    "https://10.1.2.3:8443/base/",
    "http://127.0.0.1:8080",
    "http://127.8.9.10",
    "http://[::1]:9",
    "http://localhost:8080",
    "http://LOCALHOST",
]


@pytest.mark.parametrize("url", CLEARTEXT)
def test_cleartext_sync_url_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    config = tmp_path / "posedge.toml"
    config.write_text(f'[sync]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    message = str(caught.value)
    assert f"sync.url = {url!r}" in message, message
    assert "cleartext" in message and "https://" in message
    assert "127.0.0.0/8, ::1, localhost" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("url", ALLOWED)
def test_https_and_loopback_http_are_allowed(tmp_path: Path, url: str) -> None:
    config = tmp_path / "posedge.toml"
    config.write_text(f'[sync]\nurl = "{url}"\n')
    from posedge.agent.config import check_backoffice_url

    assert load_config(config, env={}).config.sync.url == url.rstrip("/")
    assert check_backoffice_url(url) == url.rstrip("/")


def test_an_environment_override_is_checked_too() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"POSEDGE_SYNC__URL": "http://10.0.0.5:8080"})
    assert "(from POSEDGE_SYNC__URL)" in str(caught.value)
    assert "cleartext" in str(caught.value)


def test_the_cli_refuses_a_cleartext_sync_url_before_touching_anything(tmp_path: Path) -> None:
    config = tmp_path / "posedge.toml"
    config.write_text('[sync]\nurl = "http://bo.example.com"\n')
    state = tmp_path / "state"
    for command in (("sync", "status"), ("sync", "now"), ("journal", "note", "x")):
        done = posedge("--state-dir", str(state), "--config", str(config), *command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "sync.url = 'http://bo.example.com'" in done.stderr, done.stderr
        assert "cleartext" in done.stderr
        assert not state.exists(), "a configuration error touches nothing"


@pytest.mark.parametrize("command", [("sync", "now"), ("run", "--simulate")], ids=" ".join)
def test_a_cleartext_backoffice_option_is_a_usage_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("POSEDGE_CONFIG", "NOTIFY_SOCKET")}
    done = subprocess.run(
        [str(POSEDGE_EXE), "--state-dir", str(state), *command,
         "--backoffice", "http://bo.example.com"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'--backoffice'" in done.stderr and "'http://bo.example.com'" in done.stderr
    assert "cleartext" in done.stderr and "https://" in done.stderr
    assert not state.exists(), "a usage error touches nothing"


def test_the_daemon_refuses_a_cleartext_sync_url(tmp_path: Path) -> None:
    config = tmp_path / "posedge.toml"
    config.write_text('[sync]\nurl = "http://bo.example.com"\n')
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("POSEDGE_CONFIG", "NOTIFY_SOCKET")}
    done = subprocess.run(
        [str(POSEDGE_EXE), "--state-dir", str(state), "--config", str(config), "run"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sync.url = 'http://bo.example.com'" in done.stderr
    assert not state.exists()


def test_the_daemon_warns_about_a_non_loopback_api_at_every_start(tmp_path: Path) -> None:
    """Through the real daemon: one structured warning on stderr per start, naming the risk."""
    config = tmp_path / "posedge.toml"
    config.write_text("[api]\nallow_non_loopback = true\n")
    state = tmp_path / "state"
    for _ in range(2):
        daemon = Daemon(state, config=config, args=["--api-listen", "0.0.0.0:0"])
        try:
            daemon.wait_ready()
            assert daemon.where["tcp"].startswith("http://0.0.0.0:")
            token = daemon.token
            daemon.signal(signal.SIGTERM)
            assert daemon.wait_exit() == 0
        finally:
            daemon.close()  # also collects the rest of stderr
        lines = [json.loads(line) for line in daemon.stderr_lines if line.startswith("{")]
        warnings = [
            line for line in lines if line["level"] == "warning" and "cleartext" in line["msg"]
        ]
        assert len(warnings) == 1, daemon.stderr_lines
        assert "bearer token" in warnings[0]["msg"] and "sale data" in warnings[0]["msg"]
        assert warnings[0]["logger"] == "posedge.api" and warnings[0]["tls"] is False
        assert token not in "".join(daemon.stderr_lines)
