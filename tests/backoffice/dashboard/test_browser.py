"""The dashboard in a real browser (headless Chromium, Selenium): a real ``posedge backoffice
serve``, a fleet from ``posedge simulate fleet`` with one lane made silent, a staff login;
find the silent lane by its state and by search, open its page, acknowledge its alert —
no console error (CSP violations are console errors) on any page, screenshots kept in
``test-artifacts/dashboard/`` (see browser.py)."""

from __future__ import annotations

import datetime
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from .browser import Page, artifacts_dir, find_chromium, start_chromium
from .support import PASSWORD, heartbeat

POSEDGE = Path(sys.executable).with_name("posedge")
START_TIMEOUT_S = 30.0
SILENT = "store001-lane02"
FINGERPRINT = f"lane_not_selling/{SILENT}"
TERMINALS = [f"store00{s}-lane0{n}" for s in (1, 2) for n in (1, 2, 3)]

pytestmark = pytest.mark.slow


def posedge(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(POSEDGE), *args], input=stdin, capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, f"posedge {' '.join(args)}: {result.stderr[-2000:]}"
    return result


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``posedge backoffice serve`` on a SQLite file, its URL read from its announcement."""
    db = tmp_path / "bo.sqlite3"
    log = (tmp_path / "serve.log").open("ab")
    proc = subprocess.Popen(
        [str(POSEDGE), "backoffice", "serve", "--db", str(db), "--listen", "127.0.0.1:0",
         "--alert-interval", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline, line = time.monotonic() + START_TIMEOUT_S, b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
            assert ready, "the back office did not announce its URL in time"
            data = os.read(proc.stdout.fileno(), 4096)
            assert data, "the back office exited before announcing its URL"
            line += data
        found = re.search(r"http://127\.0\.0\.1:\d+", line.decode())
        assert found, line
        yield found.group(), db
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def daytime_zone(now: datetime.datetime) -> str:
    """A fixed-offset zone whose local time is 20:00 at ``now`` (to the hour). The silence
    test weighs at most the last 12 open hours: in this zone they are the stores' day,
    whatever time the test runs. In the night's quiet hours the same silence is weaker
    evidence and may rightly stay below the alarm threshold."""
    offset = (20 - now.astimezone(datetime.UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset  # Etc zones span UTC-12..UTC+14
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: inverted


def silent_fleet(url: str, db: Path) -> None:
    """A week of 6 lanes replayed by the fleet simulator, store001-lane02 silent for the
    last day; a heartbeat from each terminal now; one alert evaluation."""
    zone = daytime_zone(datetime.datetime.now(datetime.UTC))
    posedge("--json", "simulate", "fleet", "--terminals", "6", "--stores", "2", "--backoffice",
            url, "--speed", "max", "--duration", "1w", "--heartbeat-interval", "0", "--hours",
            "around-the-clock", "--timezone", zone, "--seed", "7",
            "--fault", f"silent:{SILENT}@+6d")  # fmt: skip
    with httpx.Client(base_url=url, timeout=30) as client:
        for terminal in TERMINALS:
            heartbeat(client, terminal)
    posedge("backoffice", "alerts", "evaluate", "--db", str(db))
    listed = json.loads(posedge("--json", "backoffice", "alerts", "--db", str(db)).stdout)
    states = {a["fingerprint"]: a["state"] for a in listed["alerts"]}
    assert states.get(FINGERPRINT) in ("pending", "firing"), states
    posedge("backoffice", "staff", "add", "alice", "--db", str(db), stdin=PASSWORD + "\n")


def test_find_the_silent_lane_and_acknowledge_its_alert(
    serve: tuple[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    find_chromium()  # skip (or fail under CI=true) before any work
    url, db = serve
    silent_fleet(url, db)
    artifacts = artifacts_dir(request.node.name)
    driver = start_chromium(tmp_path / "chromium-profile")
    page = Page(driver, artifacts)
    try:
        driver.get(f"{url}/dashboard/")
        page.wait(lambda d: "/dashboard/login" in d.current_url, "the login page")
        page.checked("login")
        driver.find_element(By.ID, "username").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        page.wait(lambda d: d.find_elements(By.ID, "fleet"), "the overview")
        assert len(driver.find_elements(By.CSS_SELECTOR, "a.lane")) == 6
        page.checked("overview")

        # Filter by state: the select submits itself (dashboard.js, the CSP allows it).
        Select(driver.find_element(By.ID, "state")).select_by_value("silent")
        page.wait(lambda d: "state=silent" in d.current_url, "the silent filter")
        lanes = driver.find_elements(By.CSS_SELECTOR, "a.lane")
        assert [lane.get_attribute("data-terminal") for lane in lanes] == [SILENT]
        assert "silent" in lanes[0].text  # a text label, not colour only
        page.checked("overview-silent")

        # Search by terminal id, all states.
        Select(driver.find_element(By.ID, "state")).select_by_value("")
        page.wait(lambda d: "state=&" in d.current_url, "all states")
        box = driver.find_element(By.ID, "q")
        box.clear()
        box.send_keys("LANE02")
        driver.find_element(By.ID, "apply").click()
        page.wait(lambda d: "q=LANE02" in d.current_url, "the search")
        found = {a.get_attribute("data-terminal") for a in
                 driver.find_elements(By.CSS_SELECTOR, "a.lane")}  # fmt: skip
        assert found == {SILENT, "store002-lane02"}
        page.checked("search")

        driver.find_element(By.CSS_SELECTOR, f'a.lane[data-terminal="{SILENT}"]').click()
        page.wait(lambda d: d.find_elements(By.ID, "chart"), "the terminal page")
        assert driver.find_element(By.TAG_NAME, "h1").text == f"Terminal {SILENT}"
        assert driver.find_element(By.ID, "state").text == "silent"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart rect.bar")) == 7 * 24
        assert driver.find_elements(By.CSS_SELECTOR, "#chart path.band")  # learned band
        page.checked("terminal")

        row = f'tr[data-fingerprint="{FINGERPRINT}"]'
        driver.find_element(By.CSS_SELECTOR, f"{row} button.ack-button").click()
        page.wait(lambda d: "by alice" in d.find_element(By.CSS_SELECTOR, f"{row} td.ack").text,
                  "the acknowledgement")  # fmt: skip
        assert f"/dashboard/terminals/{SILENT}" in driver.current_url
        page.checked("acknowledged")

        driver.get(f"{url}/dashboard/alerts")
        page.wait(lambda d: d.find_elements(By.ID, "alerts"), "the alerts page")
        assert "by alice" in driver.find_element(By.CSS_SELECTOR, row).text
        page.checked("alerts")
        driver.get(f"{url}/dashboard/reconciliation")
        page.wait(lambda d: d.find_elements(By.ID, "empty"), "the reconciliation page")
        page.checked("reconciliation")

        # The console check sees CSP violations: an injected inline script is refused.
        driver.execute_script(
            "const s = document.createElement('script');"
            "s.textContent = 'window.injected = true'; document.body.appendChild(s);"
        )
        assert driver.execute_script("return window.injected === undefined")
        refused = page.wait(lambda d: page.console_errors(), "the CSP violation report")
        assert any("Content Security Policy" in message for message in refused), refused
    finally:
        driver.quit()
    listed = json.loads(posedge("--json", "backoffice", "alerts", "--db", str(db)).stdout)
    (alert,) = [a for a in listed["alerts"] if a["fingerprint"] == FINGERPRINT]
    assert alert["acknowledged_by"] == "alice"
    assert sorted(p.name for p in artifacts.iterdir())[0] == "01-login.png"
