"""``posedge support-bundle`` beside a real running daemon (``posedge run --simulate`` as a
subprocess): the daemon's status and the doctor's report come from the daemon, the journal
it holds open for writing is read read-only, and the daemon keeps selling."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.e2e.daemon_support import Daemon, create_sale, wait_final

from .test_bundle import PAN_VISA, posedge, read_bundle


def test_bundle_while_the_daemon_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = tmp_path / "bundle.tar.gz"
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # no journalctl: the daemon's logs are in its own stderr here
    with Daemon(state) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            sale = create_sale(http, amount=1500)
            assert wait_final(http, sale["id"])["final"]
        done = posedge(
            "--state-dir", str(state), "--json", "support-bundle", "--output", str(out),
            env={"PATH": str(empty_path)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with daemon.client() as http:  # still selling after the bundle was taken
            later = create_sale(http, amount=1600)
            assert wait_final(http, later["id"])["final"]
        token = daemon.token
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
    bundle = read_bundle(out)
    status = bundle.json("daemon/status.json")
    assert status["accepting"] is True and "devices" in status
    doctor = bundle.json("doctor.json")["report"]
    running = next(c for c in doctor["checks"] if c["name"] == "daemon.running")
    assert running["status"] == "ok", running
    stats = bundle.json("journal/stats.json")
    assert stats["events"] >= 3 and bundle.json("journal/verify.json")["ok"] is True
    left = {e["item"]: e["reason"] for e in bundle.manifest["left_out"]}
    assert left["logs"].startswith("journalctl not found")
    assert "daemon status" not in left
    everything = bundle.stream
    assert token.encode() not in everything
    assert (state / "device.key").read_bytes().hex().encode() not in everything
    assert PAN_VISA.encode() not in everything
    hostname = socket.gethostname()
    assert bundle.mapping[bundle.json("system.json")["hostname"]] == hostname
    assert os.stat(out).st_mode & 0o077 == 0
