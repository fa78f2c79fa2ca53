"""The [metrics] listener in ``posedge run``: a real daemon subprocess scraped over HTTP, and
the configuration errors that stop it (exit 2) before anything is touched."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.registry import CollectorRegistry

from posedge.agent.config import load_config
from posedge.agent.metrics import MetricsServer

from ...e2e.daemon_support import Daemon, create_sale, wait_final, wait_until
from ..journal.helpers import posedge
from .conftest import parse, value


def write_config(tmp_path: Path, metrics: str) -> Path:
    path = tmp_path / "posedge.toml"
    path.write_text(f'[log]\nlevel = "warning"\n\n[metrics]\n{metrics}\n')
    return path


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ('listen = "0.0.0.0:9464"', "metrics.listen = '0.0.0.0:9464': not a loopback address"),
        ('listen = "192.0.2.7:9464"', "set metrics.allow_non_loopback = true"),
        ('listen = "127.0.0.1"', "metrics.listen = '127.0.0.1': not HOST:PORT"),
        ('listen = "127.0.0.1:70000"', "not HOST:PORT; write e.g. 127.0.0.1:9464"),
        ('listen = "metrics.example:9464"', "'metrics.example' is not an IP address"),
        ("listen = 9464", "metrics.listen = 9464: Input should be a valid string"),
        ('listen = "127.0.0.1:9464"\nport = 1', "unknown key metrics.port"),
        ('allow_non_loopback = "yes"', "metrics.allow_non_loopback = 'yes'"),
    ],
)
def test_a_bad_metrics_section_is_exit_2_before_anything_is_touched(
    tmp_path: Path, metrics: str, expected: str
) -> None:
    state = tmp_path / "state"
    result = posedge("--state-dir", str(state), "--config", str(write_config(tmp_path, metrics)),
                     "run", "--simulate")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr, result.stderr
    assert not (state / "journal.db").exists()


def test_a_non_loopback_address_with_the_allow_is_served_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, 'allow_non_loopback = true\nlisten = "0.0.0.0:0"')
    metrics = load_config(config, env={}).config.metrics
    assert metrics.listen == "0.0.0.0:0" and metrics.allow_non_loopback

    async def serve_once() -> int:
        server = MetricsServer(CollectorRegistry(), metrics.listen or "")
        await server.start()
        try:
            assert server.port is not None
            return server.port
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING, logger="posedge.metrics"):
        port = asyncio.run(serve_once())
    assert port > 0
    assert any("non-loopback" in record.getMessage() for record in caplog.records)


@pytest.fixture
def busy_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def test_a_port_in_use_is_exit_2_and_the_journal_is_never_opened(
    tmp_path: Path, busy_port: int
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path, f'listen = "127.0.0.1:{busy_port}"')
    result = posedge("--state-dir", str(state), "--config", str(config), "run", "--simulate")
    assert result.returncode == 2, result.stderr
    assert f"metrics.listen = '127.0.0.1:{busy_port}': cannot listen there" in result.stderr
    assert "Address already in use" in result.stderr
    assert not (state / "journal.db").exists()


def test_the_daemon_serves_metrics_that_follow_its_sales(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'listen = "127.0.0.1:0"')
    with Daemon(tmp_path / "state", config=config, args=["--card-delay", "0.05"]) as daemon:
        daemon.wait_ready()
        url = daemon.where["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        with httpx.Client(timeout=10.0) as scraper, daemon.client() as till:
            response = scraper.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            families, samples = parse(response.text)
            assert families["posedge_build_info"].samples[0].value == 1
            assert value(samples, "posedge_sales_total", outcome="approved") == 0
            sale = create_sale(till, amount=4321)
            assert wait_final(till, sale["id"])["state"] == "approved"

            def counted() -> bool:
                now = parse(scraper.get(url).text)[1]
                return value(now, "posedge_sales_total", outcome="approved") == 1

            assert wait_until(counted, timeout_s=30)
            samples = parse(scraper.get(url).text)[1]
            assert value(samples, "posedge_sales_created_total") == 1
            assert value(samples, "posedge_journal_head_seq") > 1
            # The till API's bearer token is not needed, and the till's routes are not here.
            assert scraper.get(url.replace("/metrics", "/v1/status")).status_code == 404
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2.0)
