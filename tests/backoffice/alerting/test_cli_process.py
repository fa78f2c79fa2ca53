"""``posedge backoffice serve`` and ``posedge backoffice alerts`` as real processes: nothing
is lost when the server is SIGKILLed mid-delivery, and the commands' output and errors —
on both backends."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.backoffice.alerting import signing
from posedge.backoffice.alerting.engine import EVALUATION_LOCK
from posedge.backoffice.alerting.outbox import pending
from posedge.backoffice.db import lock_key
from posedge.backoffice.registry import TerminalRegistry
from posedge.backoffice.store import BackofficeStore

from .conftest import Receiver
from .support import Till, sim_terminal

POSEDGE = Path(sys.executable).with_name("posedge")
START_TIMEOUT_S = 30.0
TERMINALS = ("S1-lane01", "S1-lane02", "S2-lane01")


def posedge(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([str(POSEDGE), *args], capture_output=True, text=True, timeout=120,
                          check=False, env=env)  # fmt: skip


class Serve:
    """``posedge backoffice serve`` with a fast alert loop, in a child process."""

    def __init__(self, db: Path | str, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(POSEDGE), "backoffice", "serve", "--db", str(db), "--listen", "127.0.0.1:0",
             "--alert-interval", "0.3", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self.log,
        )  # fmt: skip
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while b"\n" not in line:
            ready, _, _ = select.select(
                [self.proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                raise AssertionError("the back office did not announce its URL in time")
            data = os.read(self.proc.stdout.fileno(), 4096)
            if not data:
                raise AssertionError("the back office exited before announcing its URL")
            line += data
        match = re.search(r"http://127\.0\.0\.1:\d+", line.decode())
        assert match, line
        return match.group()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.kill()
            server.close()


def upload_config_changes(url: str) -> None:
    """Each terminal's journal starts with a configuration change (an anomaly alert)."""
    now = time.time()
    with httpx.Client(base_url=url, timeout=10) as client:
        for terminal in TERMINALS:
            till = Till(sim_terminal(terminal))
            till.add(now - 5, "agent.started", None, {"version": "0.1.0"})
            change = {"changed": ["sales.offline.max_amount"], "restart_required": False}
            till.add(now - 4, "config.changed", None, change)
            events = till.pending
            reply = client.post(f"/v1/terminals/{terminal}/events", json={
                "terminal": terminal, "first_seq": 1, "last_seq": len(events),
                "events": events})  # fmt: skip
            assert reply.status_code == 200, reply.text


def wait_for(condition: Any, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_nothing_is_lost_when_the_server_is_killed_mid_delivery(
    db_target: Path | str, tmp_path: Path, receiver: Receiver, servers: list[Serve]
) -> None:
    receiver.hold = threading.Event()  # the first delivery hangs until the server is dead
    first = Serve(db_target, tmp_path / "serve.log")
    servers.append(first)
    added = posedge("--json", "backoffice", "alerts", "receivers", "add", "hook", "--url",
                    receiver.url + "/hook", "--db", str(db_target))  # fmt: skip
    assert added.returncode == 0, added.stderr
    secret = json.loads(added.stdout)["secret"]
    upload_config_changes(first.url)
    assert receiver.arrived.wait(30), "no delivery was attempted"
    first.kill()  # mid-delivery: the request is in flight, nothing recorded as delivered
    receiver.hold.set()
    wait_for(lambda: receiver.requests, 10, "the held request to be recorded")
    in_flight = receiver.requests[0].json()["id"]
    with BackofficeStore(db_target) as store:
        assert in_flight in {p["id"] for p in pending(store)}
    servers.append(Serve(db_target, tmp_path / "serve.log"))
    with BackofficeStore(db_target) as store:

        def all_delivered() -> bool:
            ids = {str(r[0]) for r in store.db.execute("SELECT id FROM alert_outbox").rows}
            got = {r.json()["id"] for r in receiver.ok()}
            stores = {r.json()["group"]["store"] for r in receiver.ok()}
            return ids <= got and stores == {"S1", "S2"} and not pending(store)

        wait_for(all_delivered, 60, "every notification delivered after the restart")
    # The one in flight when the server died was sent again: the receiver dedupes by id.
    assert [r.json()["id"] for r in receiver.requests].count(in_flight) == 2
    for request in receiver.ok():
        signing.verify(secret, request.headers["posedge-signature"], request.body, time.time())
        assert request.headers["posedge-notification-id"] == request.json()["id"]
    stores = sorted(r.json()["group"]["store"] for r in receiver.ok())
    assert set(stores) == {"S1", "S2"}
    # Uploads may span evaluation rounds (a notification per change); the latest of a
    # store's carries all its open alerts.
    s1 = max((r.json() for r in receiver.ok() if r.json()["group"]["store"] == "S1"),
             key=lambda body: body["generated_at"])  # fmt: skip
    assert sorted(a["fingerprint"] for a in s1["alerts"]) == [
        "config_changed/S1-lane01", "config_changed/S1-lane02"
    ]  # fmt: skip


def test_the_alerts_commands(db_target: Path | str, tmp_path: Path) -> None:
    db = str(db_target)
    with BackofficeStore(db_target) as store:  # three enrolled terminals with events
        now = time.time()
        for terminal in TERMINALS:
            long_id = terminal + "-with-a-long-terminal-id"
            TerminalRegistry(store).add(long_id, terminal[:2], terminal[3:])
            till = Till(sim_terminal(long_id))
            till.add(now - 4, "config.changed", None, {"changed": ["printer.url"]})
            till.upload(store)
    added = posedge("--json", "backoffice", "alerts", "receivers", "add", "am", "--kind",
                    "alertmanager", "--url", "http://127.0.0.1:9/", "--db", db)  # fmt: skip
    assert added.returncode == 0, added.stderr
    evaluated = posedge("backoffice", "alerts", "evaluate", "--db", db, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    doc = json.loads(evaluated.stdout)
    assert doc["new_flags"] == 3 and doc["notifications"] == 2 and doc["failed"] == 2
    listed = posedge("--json", "backoffice", "alerts", "--db", db, "--state", "firing")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)["alerts"]
    assert [a["alertname"] for a in alerts] == ["config_changed"] * 3
    by_store = posedge("--json", "backoffice", "alerts", "--db", db, "--store", "S2")
    assert [a["terminal"] for a in json.loads(by_store.stdout)["alerts"]] == [
        "S2-lane01-with-a-long-terminal-id"
    ]
    for columns in (70, 200):  # narrow: a block per alert; wide: a row per alert
        shown = posedge("backoffice", "alerts", "--db", db, columns=columns)
        assert shown.returncode == 0, shown.stderr
        for terminal in TERMINALS:
            row = next(line for line in shown.stdout.splitlines() if terminal in line)
            assert terminal + "-with-a-long-terminal-id" in row  # never cut
            assert columns == 70 or ("firing" in row and "printer.url" in row)
    receivers = posedge("--json", "backoffice", "alerts", "receivers", "list", "--db", db)
    (receiver,) = json.loads(receivers.stdout)["receivers"]
    assert receiver["name"] == "am" and receiver["undelivered"] == 2
    for args, message in [
        (["--store", "NOPE"], "no store 'NOPE'"),
        (["--state", "sleeping"], "'sleeping' is not one of"),
        (["receivers", "add", "x", "--url", "ftp://example.com/"], "scheme must be http"),
        (["receivers", "add", "am", "--url", "http://example.com/"], "exists already"),
        (["receivers", "remove", "nope"], "no receiver 'nope'; receivers: am"),
    ]:
        bad = posedge("backoffice", "alerts", *args, "--db", db)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in " ".join(bad.stderr.split()), bad.stderr
    bad_calendar = tmp_path / "calendars.toml"
    bad_calendar.write_text(
        '[stores.S1]\ntimezone = "Mars/Olympus"\nhours = "mon-sun 08:00-20:00"\n'
    )
    refused = posedge("backoffice", "alerts", "evaluate", "--calendars", str(bad_calendar),
                      "--db", db)  # fmt: skip
    assert refused.returncode == 2 and "Mars/Olympus" in refused.stderr, refused.stderr
    missing = posedge("backoffice", "alerts", "--db", str(Path(db).parent / "nope.sqlite3")) if (
        not db.startswith("postgresql")) else None  # fmt: skip
    if missing is not None:
        assert missing.returncode == 2 and "no back office database" in missing.stderr
    removed = posedge("backoffice", "alerts", "receivers", "remove", "am", "--db", db)
    assert removed.returncode == 0 and "2 undelivered notifications dropped" in removed.stdout


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite's queue instead
def test_evaluate_while_another_replica_evaluates_says_nothing_was_done(
    db_target: Path | str,
) -> None:
    db = str(db_target)
    with BackofficeStore(db_target) as store, store.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(EVALUATION_LOCK),))
        human = posedge("backoffice", "alerts", "evaluate", "--db", db)
        as_json = posedge("backoffice", "alerts", "evaluate", "--db", db, "--json")
    assert human.returncode == 0, human.stderr
    assert human.stdout.strip() == (
        "nothing done this round: another replica is evaluating; skipped"
    )
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["evaluated"] is False
