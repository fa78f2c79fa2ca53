"""``posedge run --backoffice URL``: the agent talks to a back office the test runs itself.

The daemon runs as a real subprocess (``daemon_support.Daemon``); the back
office is the reference one in this process (``BackofficeServer``), reached
over real HTTP on loopback. With ``--simulate`` the printer and reader are
simulated but no embedded back office starts: nothing named
``backoffice.sqlite3`` appears in the state directory, and the sale's
authorization and events land in the test's back office.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.journal import Journal
from posedge.simulator.backoffice import BackofficeServer

from .daemon_support import POSEDGE, Daemon, create_sale, wait_final, wait_until

TERMINAL = "ext-bo-1"
UNREACHABLE = "http://127.0.0.1:9"
"""A sync.url nothing listens on (the discard port): used where --backoffice must win."""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    server = BackofficeServer(tmp_path / "bo.sqlite3").start()
    try:
        yield server
    finally:
        server.close()


def write_config(path: Path, *, sync_url: str | None = None, max_count: int = 100) -> Path:
    text = f'[terminal]\nid = "{TERMINAL}"\n[offline]\nmax_count = {max_count}\n'
    text += '[sync]\nbackoff_initial = "50ms"\nbackoff_cap = "500ms"\n'
    if sync_url is not None:
        text += f'url = "{sync_url}"\n'
    path.write_text(text)
    return path


def held(backoffice: BackofficeServer) -> int:
    assert backoffice.store is not None
    return backoffice.store.head(TERMINAL)[0]


def authorized_txns(backoffice: BackofficeServer) -> set[str]:
    assert backoffice.store is not None
    return {row["txn"] for row in backoffice.store.authorizations(TERMINAL)}


def journal_head(state_dir: Path) -> int:
    with Journal.open(state_dir, readonly=True) as journal:
        return int(journal.stats()["head_seq"])


def sell_through(daemon: Daemon, backoffice: BackofficeServer) -> dict[str, Any]:
    """One approved sale; its authorization is in ``backoffice``, and its events follow."""
    with daemon.client() as http:
        sale = wait_final(http, create_sale(http, amount=1500)["id"])
    assert sale["state"] == "approved", sale
    assert sale["id"] in authorized_txns(backoffice)
    return sale


def reload(daemon: Daemon) -> None:
    """SIGHUP, then RELOADING=1 followed by READY=1 again."""
    mark = len(daemon.notify.messages)
    daemon.signal(signal.SIGHUP)
    assert daemon.notify.wait_for(lambda m: m.get("RELOADING") == "1", 10.0, mark) is not None
    assert daemon.notify.wait_for(lambda m: m.get("READY") == "1", 10.0, mark + 1) is not None


def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0, "".join(daemon.stderr_lines[-20:])


def test_simulate_with_an_external_backoffice(
    state_dir: Path, tmp_path: Path, backoffice: BackofficeServer
) -> None:
    # sync.url in the file names a dead address: --backoffice overrides it.
    config = write_config(tmp_path / "posedge.toml", sync_url=UNREACHABLE)
    args = ["--backoffice", backoffice.url + "/", "--card-delay", "0.05"]
    with Daemon(state_dir, config=config, args=args) as daemon:
        daemon.wait_ready()
        assert daemon.where["backoffice"] == backoffice.url
        assert daemon.where["simulate"] is True
        sell_through(daemon, backoffice)
        # Everything the agent journals reaches the test's back office.
        assert wait_until(lambda: held(backoffice) == journal_head(state_dir))
        with daemon.client() as http:
            refused = http.post("/v1/simulator/backoffice", json={"power": "off"})
            assert refused.status_code == 409, refused.text
            assert "external" in refused.json()["detail"]
            # The simulated devices are still steerable.
            assert http.post("/v1/simulator/printer", json={"fault": "clear"}).status_code == 200

        # A reload keeps the back office: the file's sync.url is not applied; only the
        # offline change counts as changed.
        write_config(config, sync_url=UNREACHABLE, max_count=50)
        reload(daemon)

        def config_changed() -> list[dict[str, Any]]:
            with Journal.open(state_dir, readonly=True) as journal:
                return [e.payload for e in journal.iter_events() if e.type == "config.changed"]

        assert wait_until(lambda: bool(config_changed()))
        assert config_changed() == [{"changed": ["offline"], "restart_required": []}]
        sell_through(daemon, backoffice)
        assert wait_until(lambda: held(backoffice) == journal_head(state_dir))
        stop(daemon)
    assert not (state_dir / "backoffice.sqlite3").exists()
    assert not any(p.name.startswith("backoffice") for p in state_dir.iterdir())


def test_simulate_honours_sync_url_from_the_configuration(
    state_dir: Path, tmp_path: Path, backoffice: BackofficeServer
) -> None:
    config = write_config(tmp_path / "posedge.toml", sync_url=backoffice.url)
    with Daemon(state_dir, config=config, args=["--card-delay", "0.05"]) as daemon:
        daemon.wait_ready()
        assert daemon.where["backoffice"] == backoffice.url
        sell_through(daemon, backoffice)
        stop(daemon)
    assert not (state_dir / "backoffice.sqlite3").exists()


def test_simulate_without_a_backoffice_still_embeds_one(state_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "posedge.toml")
    with Daemon(state_dir, config=config, args=["--card-delay", "0.05"]) as daemon:
        daemon.wait_ready()
        assert daemon.where["backoffice"].startswith("http://127.0.0.1:")
        with daemon.client() as http:
            assert wait_final(http, create_sale(http)["id"])["state"] == "approved"
        stop(daemon)
    assert (state_dir / "backoffice.sqlite3").exists()


def test_backoffice_without_simulate_overrides_sync_url(
    state_dir: Path, tmp_path: Path, backoffice: BackofficeServer
) -> None:
    """No devices configured: no sales, but the journal syncs to --backoffice."""
    config = write_config(tmp_path / "posedge.toml", sync_url=UNREACHABLE)
    args = ["--backoffice", backoffice.url]
    with Daemon(state_dir, config=config, simulate=False, args=args) as daemon:
        daemon.wait_ready()
        assert daemon.where["backoffice"] == backoffice.url
        assert daemon.where["simulate"] is False
        assert wait_until(lambda: held(backoffice) == journal_head(state_dir) > 0)
        with daemon.client() as http:
            assert http.post("/v1/simulator/backoffice", json={}).status_code == 404
        stop(daemon)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://bo.example.com", "not an http(s) URL with a host"),
        ("http://", "not an http(s) URL with a host"),
        ("bo.example.com:8080", "not an http(s) URL with a host"),
        ("https://bo.example.com:99999", "not a URL"),
        ("https://bo.example.com/?x=1", "base URL only"),
    ],
)
def test_a_bad_backoffice_url_is_a_usage_error(state_dir: Path, url: str, why: str) -> None:
    result = subprocess.run(
        [str(POSEDGE), "--state-dir", str(state_dir), "run", "--simulate", "--backoffice", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'--backoffice'" in result.stderr and why in result.stderr, result.stderr
    assert not state_dir.exists(), "a usage error touches nothing"
