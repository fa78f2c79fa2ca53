"""``posedge backoffice serve --calendars FILE`` as a real process: the alert loop gets the
store calendars (a sale while the store is closed is an ``outside_hours`` alert), SIGHUP
reads the file again, a bad file is refused at start (exit 2, naming file and key) and
ignored on reload (the calendars in use stay) — on both backends."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from posedge.backoffice.store import BackofficeStore

from .support import Till, sim_terminal

POSEDGE = Path(sys.executable).with_name("posedge")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TERMINAL = "S1-lane01"


def posedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(POSEDGE), *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def write_calendar(path: Path, hours: str) -> None:
    path.write_text(f'[stores.S1]\ntimezone = "UTC"\nhours = "{hours}"\n')


def closed_today() -> str:
    """Hours open only yesterday (UTC): the store is closed all of today."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).weekday()
    return f"{DAYS[yesterday]} 00:00-24:00"


def wait_for(condition: Any, deadline_s: float, what: str) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serve(db_target: Path | str, tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(calendars: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
        log = tmp_path / "serve.log"
        logs.append(log.open("ab"))
        proc = subprocess.Popen(
            [str(POSEDGE), "backoffice", "serve", "--db", str(db_target), "--listen",
             "127.0.0.1:0", "--alert-interval", "0.3", "--calendars", str(calendars),
             "--log-level", "info"],
            stdout=subprocess.PIPE, stderr=logs[-1],
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        line = b""
        deadline = time.monotonic() + 30
        while b"\n" not in line:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            assert ready, "the back office did not announce its URL in time"
            data = os.read(proc.stdout.fileno(), 4096)
            assert data, f"serve exited: {log.read_text()}"
            line += data
        match = re.search(r"http://127\.0\.0\.1:\d+", line.decode())
        assert match, line
        return proc, match.group(), log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
    for handle in logs:
        handle.close()


def scanned_to(db_target: Path | str, seq: int) -> bool:
    """The alert loop's anomaly scan has read the terminal's events through ``seq``."""
    with BackofficeStore(db_target) as store:
        row = store.db.execute(
            "SELECT last_seq FROM anomaly_cursors WHERE terminal = ?", (TERMINAL,)
        ).fetchone()
    return row is not None and int(row[0]) >= seq


def alert_names(db_target: Path | str) -> list[str]:
    listed = posedge("--json", "backoffice", "alerts", "--db", str(db_target))
    assert listed.returncode == 0, listed.stderr
    return [a["fingerprint"] for a in json.loads(listed.stdout)["alerts"]]


def test_serve_uses_the_calendars_and_reloads_them_on_sighup(
    db_target: Path | str, tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    calendars = tmp_path / "calendars.toml"
    write_calendar(calendars, "mon-sun 00:00-24:00")
    proc, url, log = serve(calendars)
    till = Till(sim_terminal(TERMINAL))
    client = httpx.Client(base_url=url, timeout=10)
    request.addfinalizer(client.close)

    def sale() -> int:
        first = till.seq + 1
        till.sale(time.time() - 20)
        events, till.pending = till.pending, []
        body = {"terminal": TERMINAL, "first_seq": first, "last_seq": till.seq, "events": events}
        reply = client.post(f"/v1/terminals/{TERMINAL}/events", json=body)
        assert reply.status_code == 200, reply.text
        return till.seq

    # Open all day: a sale now is no anomaly.
    seq = sale()
    wait_for(lambda: scanned_to(db_target, seq), 30, "the alert loop to scan the sale")
    assert "outside_hours/S1-lane01" not in alert_names(db_target)
    # The operator closes the store today and sends SIGHUP: the next sale is outside hours.
    write_calendar(calendars, closed_today())
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "calendars reloaded" in log.read_text(), 30, "the reload")
    seq = sale()
    wait_for(lambda: "outside_hours/S1-lane01" in alert_names(db_target), 30,
             "an outside_hours alert")  # fmt: skip
    # A broken file on SIGHUP: logged with file, store and key; the server goes on with the
    # calendars it had, and keeps evaluating with them.
    calendars.write_text('[stores.S1]\ntimezone = "UTC"\nhours = "mon 25:00-26:00"\n')
    proc.send_signal(signal.SIGHUP)
    text = wait_for(lambda: "calendars not reloaded" in log.read_text() and log.read_text(), 30,
                    "the refused reload")  # fmt: skip
    assert f"{calendars}: stores.S1.hours (mon): '25:00' is not a time of day" in text
    assert proc.poll() is None
    seq = sale()
    wait_for(lambda: scanned_to(db_target, seq), 30, "the scan after a refused reload")
    listed = posedge("--json", "backoffice", "alerts", "--db", str(db_target))
    (alert,) = [a for a in json.loads(listed.stdout)["alerts"] if a["alertname"] == "outside_hours"]
    assert len(alert["details"]["flags"]) == 2  # still judged closed: the old calendars


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('[stores.S1]\ntimezone = "UTC"\nhours = "mon 25:00-26:00"\n',
         "stores.S1.hours (mon): '25:00' is not a time of day"),
        ('[stores.S1]\ntimezone = "Mars/Olympus"\nhours = "mon-sun 08:00-20:00"\n',
         "stores.S1.timezone"),
        ("[stores.S1\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_calendars_file_is_refused_at_start(
    db_target: Path | str, tmp_path: Path, content: str, says: str
) -> None:
    bad = tmp_path / "calendars.toml"
    bad.write_text(content)
    done = posedge("backoffice", "serve", "--db", str(db_target), "--listen", "127.0.0.1:0",
                   "--calendars", str(bad))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert str(bad) in done.stderr and says in done.stderr and "--calendars" in done.stderr
    missing = posedge("backoffice", "serve", "--db", str(db_target), "--listen", "127.0.0.1:0",
                      "--calendars", str(tmp_path / "nowhere.toml"))  # fmt: skip
    assert missing.returncode == 2 and "cannot read the calendar file" in missing.stderr
