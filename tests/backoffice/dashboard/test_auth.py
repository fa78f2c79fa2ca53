"""Staff logins, sessions and CSRF over real HTTP, on both backends: who gets in, what a
terminal token and a staff session are each good for, and what a forged POST changes
(nothing)."""

from __future__ import annotations

import re
import time

import httpx

from posedge.backoffice.app import BackofficeConfig
from posedge.backoffice.dashboard.sessions import (
    IDLE_TIMEOUT_S,
    MAX_FAILURES_PER_USER,
    SessionStore,
)
from posedge.backoffice.dashboard.staff import StaffAccounts
from posedge.backoffice.server import BackofficeServer

from .support import PASSWORD, config_change_alert, csrf_of, login


def acks(server: BackofficeServer) -> list[tuple[str, str]]:
    assert server.store is not None
    rows = server.store.db.execute("SELECT fingerprint, acked_by FROM alert_acks").rows
    return [(str(r[0]), str(r[1])) for r in rows]


def test_pages_need_a_login_and_a_login_opens_them(web: httpx.Client) -> None:
    for path in ("/dashboard/", "/dashboard/alerts", "/dashboard/reconciliation",
                 "/dashboard/terminals/S1-lane01"):  # fmt: skip
        reply = web.get(path)
        assert reply.status_code == 303, path
        assert reply.headers["location"].startswith("/dashboard/login?next=")
    form = web.get("/dashboard/login")
    reply = web.post("/dashboard/login", data={
        "csrf": csrf_of(form.text), "username": "alice", "password": PASSWORD,
        "next": "/dashboard/alerts"})  # fmt: skip
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/alerts"
    cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie"
                  and v.startswith("posedge_session="))  # fmt: skip
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= attributes
    assert "secure" not in attributes  # plain HTTP here; Secure when served over TLS
    page = web.get("/dashboard/alerts")
    assert page.status_code == 200 and "alice" in page.text


def test_a_wrong_password_or_unknown_user_is_refused_alike(web: httpx.Client) -> None:
    for user, password in (("alice", "not the password!"), ("mallory", PASSWORD)):
        form = web.get("/dashboard/login")
        reply = web.post("/dashboard/login", data={
            "csrf": csrf_of(form.text), "username": user, "password": password})  # fmt: skip
        assert reply.status_code == 401
        assert "wrong user name or password" in reply.text
        assert "posedge_session=" not in reply.headers.get("set-cookie", "")
    assert web.get("/dashboard/").status_code == 303


def test_failed_logins_are_rate_limited_per_user(
    server: BackofficeServer, web: httpx.Client
) -> None:
    for _ in range(MAX_FAILURES_PER_USER):
        form = web.get("/dashboard/login")
        wrong = {"csrf": csrf_of(form.text), "username": "alice", "password": "guess guess"}
        reply = web.post("/dashboard/login", data=wrong)
        assert reply.status_code == 401
    form = web.get("/dashboard/login")
    reply = web.post("/dashboard/login", data={
        "csrf": csrf_of(form.text), "username": "alice", "password": PASSWORD})  # fmt: skip
    assert reply.status_code == 429  # even the right password waits now
    assert 0 < int(reply.headers["retry-after"]) <= 15 * 60
    assert "too many failed logins" in reply.text
    assert web.get("/dashboard/").status_code == 303


def test_a_login_without_the_forms_token_is_refused(web: httpx.Client) -> None:
    web.get("/dashboard/login")
    reply = web.post("/dashboard/login", data={"username": "alice", "password": PASSWORD})
    assert reply.status_code == 403
    forged = web.post("/dashboard/login", data={
        "csrf": "x" * 43, "username": "alice", "password": PASSWORD})  # fmt: skip
    assert forged.status_code == 403
    assert web.get("/dashboard/").status_code == 303


def test_a_terminal_token_never_opens_the_dashboard(db_target: str) -> None:
    token = "t0" * 32
    config = BackofficeConfig(tokens={"S1-lane01": token})
    with BackofficeServer(db_target, config=config) as bo:
        assert bo.store is not None
        StaffAccounts(bo.store).add("alice", PASSWORD)
        with httpx.Client(base_url=bo.url, follow_redirects=False) as terminal:
            terminal.headers["authorization"] = f"Bearer {token}"
            assert terminal.get("/v1/terminals/S1-lane01/events/head").status_code == 200
            for path in ("/dashboard/", "/dashboard/alerts"):
                assert terminal.get(path).status_code == 303  # to the login page
        with httpx.Client(base_url=bo.url, follow_redirects=False) as browser:
            login(browser)
            assert browser.get("/dashboard/").status_code == 200
            # ... and a staff session never authenticates the sync protocol.
            head = browser.get("/v1/terminals/S1-lane01/events/head")
            assert head.status_code == 401
            beat = browser.post("/v1/terminals/S1-lane01/heartbeat",
                                json={"terminal": "S1-lane01", "sent_at": "x"})  # fmt: skip
            assert beat.status_code == 401


def test_logout_ends_the_session_everywhere(server: BackofficeServer, web: httpx.Client) -> None:
    csrf = login(web)
    stolen = web.cookies.get("posedge_session")
    assert web.post("/dashboard/logout", data={"csrf": "wrong"}).status_code == 403
    assert web.get("/dashboard/").status_code == 200  # a forged logout did nothing
    reply = web.post("/dashboard/logout", data={"csrf": csrf})
    assert reply.status_code == 303
    with httpx.Client(base_url=server.url, follow_redirects=False) as other:
        other.cookies.set("posedge_session", str(stolen), path="/dashboard")
        assert other.get("/dashboard/").status_code == 303


def test_sessions_expire_when_idle_and_when_the_user_goes(server: BackofficeServer) -> None:
    assert server.store is not None
    now = [time.time()]
    sessions = SessionStore(server.store, clock=lambda: now[0])
    cookie, _ = sessions.create("alice")
    assert sessions.lookup(cookie) is not None
    now[0] += IDLE_TIMEOUT_S - 5
    assert sessions.lookup(cookie) is not None  # used: its idle clock restarts
    now[0] += IDLE_TIMEOUT_S - 5
    assert sessions.lookup(cookie) is not None
    now[0] += IDLE_TIMEOUT_S + 1
    assert sessions.lookup(cookie) is None
    cookie, _ = sessions.create("alice")
    StaffAccounts(server.store).set_password("alice", "another long password")
    assert sessions.lookup(cookie) is None  # a new password ends every session
    # The database keeps neither the cookie nor the password.
    rows = server.store.db.execute("SELECT * FROM staff_sessions").rows
    rows += server.store.db.execute("SELECT * FROM staff_users").rows
    assert cookie not in repr(rows) and "another long password" not in repr(rows)


def test_acknowledge_needs_the_sessions_csrf_token(
    server: BackofficeServer, web: httpx.Client
) -> None:
    assert server.store is not None
    fingerprint = config_change_alert(server.store, "S1-lane01")
    csrf = login(web)
    for data in ({"fingerprint": fingerprint},
                 {"fingerprint": fingerprint, "csrf": "forged" * 7}):  # fmt: skip
        reply = web.post("/dashboard/alerts/ack", data=data)
        assert reply.status_code == 403 and "CSRF" in reply.text
    cross = web.post("/dashboard/alerts/ack", data={"fingerprint": fingerprint, "csrf": csrf},
                     headers={"origin": "http://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    as_json = web.post("/dashboard/alerts/ack", json={"fingerprint": fingerprint, "csrf": csrf})
    assert as_json.status_code == 400
    assert acks(server) == []
    with httpx.Client(base_url=server.url, follow_redirects=False) as anonymous:
        reply = anonymous.post("/dashboard/alerts/ack", data={"fingerprint": fingerprint,
                                                               "csrf": csrf})  # fmt: skip
        assert reply.status_code == 403
    assert acks(server) == []
    reply = web.post("/dashboard/alerts/ack", data={"fingerprint": fingerprint, "csrf": csrf,
                                                     "next": "/dashboard/alerts"})  # fmt: skip
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/alerts"
    assert acks(server) == [(fingerprint, "alice")]
    page = web.get("/dashboard/alerts").text
    row = re.search(rf'data-fingerprint="{re.escape(fingerprint)}".*?</tr>', page, re.S)
    assert row and "by alice" in row.group()


def test_an_off_site_next_is_not_followed(web: httpx.Client) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/dashboard/..//evil"):
        form = web.get("/dashboard/login", params={"next": target})
        reply = web.post("/dashboard/login", data={
            "csrf": csrf_of(form.text), "username": "alice", "password": PASSWORD,
            "next": target})  # fmt: skip
        assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/"
