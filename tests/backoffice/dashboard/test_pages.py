"""The dashboard's pages over real HTTP, on both backends: security headers everywhere,
pagination, filters and search over a fleet made through the sync protocol, escaping of
hostile names, the terminal page, acknowledgements seen by ``posedge backoffice alerts``,
and the reconciliation page's two states."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from posedge.backoffice.dashboard.fleet import STORES_PER_PAGE
from posedge.backoffice.dashboard.security import CONTENT_SECURITY_POLICY
from posedge.backoffice.registry import TerminalRegistry
from posedge.backoffice.server import BackofficeServer

from .support import config_change_alert, fleet, heartbeat, login

POSEDGE = Path(sys.executable).with_name("posedge")


def lanes_on(page: str) -> list[tuple[str, str]]:
    """(terminal, state) of every lane chip on an overview page."""
    return re.findall(r'data-terminal="([^"]+)" data-state="([^"]+)"', page)


def test_every_response_carries_the_security_headers(web: httpx.Client) -> None:
    login(web)
    for path, status in (("/dashboard/", 200), ("/dashboard/login", 200),
                         ("/dashboard/static/dashboard.css", 200),
                         ("/dashboard/static/dashboard.js", 200), ("/dashboard/nope", 404),
                         ("/dashboard/?state=nonsense", 400)):  # fmt: skip
        reply = web.get(path)
        assert reply.status_code == status, path
        assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert reply.headers["x-content-type-options"] == "nosniff", path
        assert reply.headers["referrer-policy"] == "same-origin", path
        assert reply.headers["x-frame-options"] == "DENY", path
    page = web.get("/dashboard/").text
    # Nothing inline for the CSP to allow: no <style>, no style=, no inline <script>, no on*=.
    assert "<style" not in page and "style=" not in page
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert re.search(r"\son[a-z]+=", page) is None


def test_overview_pages_filters_and_search(server: BackofficeServer, web: httpx.Client) -> None:
    stores = STORES_PER_PAGE * 2 + 3
    terminals = fleet(web, stores, 2)
    assert server.store is not None
    fingerprint = config_change_alert(server.store, "shop007-lane02")
    heartbeat(web, "shop007-lane02")  # alive: its state is its firing alert
    login(web)
    first = web.get("/dashboard/").text
    assert f"{len(terminals)} terminals in {stores} stores" in first and "page 1 of 3" in first
    assert len(lanes_on(first)) == STORES_PER_PAGE * 2
    seen = [t for page in (1, 2, 3)
            for t, _ in lanes_on(web.get("/dashboard/", params={"page": page}).text)]  # fmt: skip
    assert sorted(seen) == sorted(terminals)  # every terminal once, over the pages
    alerting = web.get("/dashboard/", params={"state": "alerting"}).text
    assert lanes_on(alerting) == [("shop007-lane02", "alerting")], fingerprint
    found = web.get("/dashboard/", params={"q": "SHOP012"}).text
    assert {t for t, _ in lanes_on(found)} == {"shop012-lane01", "shop012-lane02"}
    quiet = web.get("/dashboard/", params={"q": "shop03", "state": "quiet"}).text
    expected = {f"shop03{i}-lane0{n}" for i in range(10) for n in (1, 2)}
    assert {t for t, _ in lanes_on(quiet)} == expected
    assert {s for _, s in lanes_on(quiet)} == {"quiet"}
    wildcard = web.get("/dashboard/", params={"q": "%"}).text
    assert lanes_on(wildcard) == [] and "No terminal matches" in wildcard


@pytest.mark.parametrize(
    ("params", "message"),
    [({"state": "<b>"}, "is not one of"), ({"page": "two"}, "whole number"),
     ({"page": "0"}, "pages start at 1"), ({"page": "9"}, "there are 1 pages"),
     ({"q": "x" * 101}, "over 100 characters")],
)  # fmt: skip
def test_bad_overview_parameters_are_a_clear_400(
    web: httpx.Client, params: dict[str, str], message: str
) -> None:
    fleet(web, 1, 1)
    login(web)
    reply = web.get("/dashboard/", params=params)
    assert reply.status_code == 400 and message in reply.text
    assert "<b>" not in reply.text


def test_hostile_names_are_escaped_everywhere(server: BackofficeServer, web: httpx.Client) -> None:
    assert server.store is not None
    hostile_store = '<script>alert("store")</script>'
    hostile_lane = '"><img src=x onerror=alert(1)>'
    TerminalRegistry(server.store).add("evil-lane01", hostile_store, hostile_lane)
    heartbeat(
        web,
        "evil-lane01",
        agent_version="<svg onload=alert(2)>",
        devices={"<iframe>": {"state": "<b>jam</b>", "faults": ["<script>x</script>"]}},
    )
    fingerprint = config_change_alert(server.store, "evil-lane01")
    summary = '<script>alert("summary")</script>'
    server.store.db.execute("UPDATE alerts SET summary = ? WHERE fingerprint = ?",
                            (summary, fingerprint))  # fmt: skip
    login(web)
    pages = [web.get("/dashboard/").text,
             web.get("/dashboard/", params={"q": "<script>"}).text,
             web.get("/dashboard/terminals/evil-lane01").text,
             web.get("/dashboard/alerts").text,
             web.get("/dashboard/terminals/<script>alert(3)</script>").text]  # fmt: skip
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "<svg onload" not in page and "<iframe>" not in page and "<b>jam" not in page
    assert "&lt;script&gt;alert(&#34;store&#34;)&lt;/script&gt;" in pages[0]
    assert "&lt;svg onload=alert(2)&gt;" in pages[2]
    assert "&lt;script&gt;alert(&#34;summary&#34;)&lt;/script&gt;" in pages[3]


def test_the_terminal_page(server: BackofficeServer, web: httpx.Client) -> None:
    assert server.store is not None
    fleet(web, 1, 2)
    fingerprint = config_change_alert(server.store, "shop001-lane01")
    heartbeat(web, "shop001-lane01", unsynced_count=42, oldest_unsynced_age_s=300.0)
    login(web)
    page = web.get("/dashboard/terminals/shop001-lane01").text
    assert "Terminal shop001-lane01" in page and "lane01" in page
    assert page.count('class="bar"') == 7 * 24  # an hour per bar, 7 days
    assert re.search(r'<dd id="backlog">42</dd>', page)
    assert "printer" in page and "ready" in page  # devices from the heartbeat
    assert f'data-fingerprint="{fingerprint}"' in page and "Acknowledge" in page
    assert "No end-of-day close received" in page
    missing = web.get("/dashboard/terminals/shop009-lane01")
    assert missing.status_code == 404 and "no terminal" in missing.text


def test_an_acknowledgement_shows_in_the_alerts_command(
    server: BackofficeServer, web: httpx.Client, db_target: Path | str
) -> None:
    assert server.store is not None
    fingerprint = config_change_alert(server.store, "S1-lane01")
    other = config_change_alert(server.store, "S1-lane02")
    csrf = login(web)
    reply = web.post("/dashboard/alerts/ack", data={"fingerprint": fingerprint, "csrf": csrf})
    assert reply.status_code == 303
    listed = subprocess.run([str(POSEDGE), "--json", "backoffice", "alerts", "--db",
                             str(db_target)], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    by_fp = {a["fingerprint"]: a for a in json.loads(listed.stdout)["alerts"]}
    assert by_fp[fingerprint]["acknowledged_by"] == "alice"
    assert by_fp[fingerprint]["acknowledged_at"] is not None
    assert by_fp[other]["acknowledged_by"] is None
    human = subprocess.run([str(POSEDGE), "backoffice", "alerts", "--db", str(db_target)],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={"COLUMNS": "250", "PATH": ""})  # fmt: skip
    row = next(line for line in human.stdout.splitlines() if "S1-lane01" in line)
    assert "acknowledged by alice" in row
    unknown = web.post("/dashboard/alerts/ack", data={"fingerprint": "nope/x", "csrf": csrf})
    assert unknown.status_code == 409 and "no alert" in unknown.text


def test_reconciliation_page_without_and_with_closes(
    server: BackofficeServer, web: httpx.Client
) -> None:
    login(web)
    empty = web.get("/dashboard/reconciliation")
    assert empty.status_code == 200 and "No reconciliation data" in empty.text
    assert server.store is not None
    now = time.time()
    rows = [("S1-lane01", 40, "S1", "2026-12-05", 1, 40, "reconciled", 0, None, "[]"),
            ("S1-lane02", 35, "S1", "2026-12-05", 1, 35, "missing_seqs", 3, 7,
             '[{"kind": "missing_seqs", "detail": "seqs 7-9 <missing>"}]')]  # fmt: skip
    with server.store.transaction() as tx:
        tx.executemany(
            "INSERT INTO close_reconciliations (terminal, close_seq, store, business_day,"
            " seq_from, seq_to, state, missing_count, missing_from, differences,"
            " first_reconciled_at, reconciled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, now, now) for row in rows],
        )
    page = web.get("/dashboard/reconciliation").text
    assert "2026-12-05" in page and "resend from 7" in page
    assert "seqs 7-9 &lt;missing&gt;" in page
    day = re.search(r"<tr[^>]*><td><a href=\"\?day=2026-12-05\">.*?</tr>", page, re.S)
    assert day and re.findall(r"<td>(\d+)</td>", day.group()) == ["2", "1", "1", "1", "0", "0"]
    bad = web.get("/dashboard/reconciliation", params={"day": "yesterday"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
