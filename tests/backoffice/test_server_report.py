"""Restart on the same port and database, the report (counts, silence), and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
from click.testing import CliRunner

from posedge.agent.cli import cli as posedge_cli
from posedge.simulator.backoffice import BackofficeServer, BackofficeStore, report_document

from .helpers import batch, chain, events_url, heartbeat


def cli_group() -> click.Group:
    return posedge_cli


def test_restart_on_the_same_port_keeps_the_data(db_target: Path | str) -> None:
    events = chain(20)
    with BackofficeServer(db_target) as bo:
        assert bo.port != 0 and bo.url.endswith(f":{bo.port}")
        port = bo.port
        with httpx.Client(base_url=bo.url, timeout=5.0) as c:
            c.post(events_url(), json=batch(events[:10]))
            bo.restart()
            assert bo.port == port
            assert c.post(events_url(), json=batch(events[5:])).json()["acked_seq"] == 20
        bo.stop()
        with httpx.Client(timeout=1.0) as c:
            try:
                c.get(f"{bo.url}/healthz")
                raise AssertionError("the stopped back office still answers")
            except httpx.ConnectError:
                pass
    with (
        BackofficeServer(db_target, port=port) as again,
        httpx.Client(base_url=again.url, timeout=5.0) as c,
    ):
        assert c.get(f"{events_url()}/head").json()["acked_seq"] == 20


def seed_db(path: Path | str) -> None:
    """Two terminals: one busy and healthy, one that went quiet."""
    now = time.time()
    with BackofficeStore(path) as store, BackofficeServer(path, store=store) as bo:
        events = chain(10)
        with httpx.Client(base_url=bo.url, timeout=5.0) as c:
            c.post(events_url(), json=batch(events[:6]))
            c.post(events_url(), json=batch(events[:6]))  # 6 duplicates
            c.post(events_url(), json=batch(events[8:]))  # gap
            c.post(events_url(), json=batch(chain(2, start=7, prev="c" * 64)))  # chain mismatch
            c.post(events_url(), json=batch(chain(3, salt="x")))  # conflict
            c.post(events_url("quiet"), json=batch(chain(2), "quiet"))
        store.record_heartbeat("lane1", heartbeat(head_seq=10, backlog=4), 60, now=now - 30)
        store.record_heartbeat("quiet", heartbeat("quiet", 2), 60, now=now - 181)


def test_report_counts_and_silence(db_target: Path | str) -> None:
    db = db_target
    seed_db(db)
    with BackofficeStore(db, readonly=True) as store:
        doc = report_document(store)
    lane1, quiet = doc["terminals"]
    assert lane1 == lane1 | {
        "terminal": "lane1",
        "events_held": 6,
        "first_seq": 1,
        "last_seq": 6,
        "missing_seqs": 0,
        "chain_breaks_held": 0,
        "gaps_rejected": 1,
        "chain_mismatches_rejected": 1,
        "duplicates_absorbed": 6,
        "conflicts": 1,
        "reported_backlog": 4,
        "reported_head_seq": 10,
        "reported_head_matches_held": False,
        "silent": False,
    }
    assert 29 < lane1["last_heartbeat_age_s"] < 60
    assert quiet["silent"] is True and quiet["reported_head_matches_held"] is True
    assert doc["silent"] == ["quiet"] and doc["problems"] == ["lane1"]


def test_report_cli_json_and_table(db_target: Path | str, tmp_path: Path) -> None:
    db = db_target
    seed_db(db)
    runner = CliRunner()
    result = runner.invoke(cli_group(), ["backoffice", "report", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [t["terminal"] for t in doc["terminals"]] == ["lane1", "quiet"]
    assert doc["db"] == str(db)
    result = runner.invoke(cli_group(), ["backoffice", "report", "--db", str(db)])
    assert result.exit_code == 0
    assert "SILENT" in result.output and "lane1" in result.output
    result = runner.invoke(cli_group(), ["backoffice", "report", "--db", str(tmp_path / "no")])
    assert result.exit_code == 2 and "no back office database" in result.output


def test_serve_rejects_bad_flags_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "bo.sqlite3")
    for command, args, message in (
        (["backoffice", "serve"], ["--listen", "nowhere"], "HOST:PORT"),
        (["simulate", "backoffice"], ["--listen", "nowhere"], "HOST:PORT"),
        (["simulate", "backoffice"], ["--error-rate", "1.5"], "--error-rate"),
        (["simulate", "backoffice"], ["--down-mode", "sideways"], "--down-mode"),
        (["backoffice", "serve"], ["--error-rate", "0.5"], "No such option"),
    ):
        result = runner.invoke(cli_group(), [*command, "--db", db, *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("lane1 = 'short'")
    result = runner.invoke(
        cli_group(), ["backoffice", "serve", "--db", db, "--tokens", str(tokens)]
    )
    assert result.exit_code == 2 and "at least" in result.output


def test_serve_as_a_process_until_sigterm(db_target: Path | str) -> None:
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "posedge"),
            "simulate",
            "backoffice",
            "--db",
            str(db_target),
            "--listen",
            "127.0.0.1:0",
            "--status-429-rate",
            "1",
            "--fault-endpoint",
            "heartbeat",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        with httpx.Client(base_url=url, timeout=5.0) as c:
            assert c.get("/healthz").json()["open_mode"] is True
            reply = c.post("/v1/terminals/lane1/heartbeat", json=heartbeat())
            assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "OPEN MODE" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
