"""The dashboard's storage on both backends: schema version 8 lands in any order, the
absolute session limit, the Secure cookie behind a TLS proxy, and the chart's band."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from posedge.backoffice.dashboard.chart import poisson_quantile
from posedge.backoffice.dashboard.sessions import ABSOLUTE_TIMEOUT_S, TOUCH_EVERY_S, SessionStore
from posedge.backoffice.dashboard.staff import StaffAccounts
from posedge.backoffice.dashboard.tables import SCHEMA_VERSION_DASHBOARD
from posedge.backoffice.server import BackofficeServer
from posedge.backoffice.store import BackofficeStore

from .support import PASSWORD, csrf_of

TABLES = ("staff_users", "staff_sessions", "staff_login_failures", "alert_acks")


def test_version_8_runs_late_on_a_database_that_skipped_it(db_target: Path | str) -> None:
    """A database whose recorded version is past 8 without having run it (versions
    developed in parallel) gets the dashboard's tables on its next start, data kept."""
    with BackofficeStore(db_target) as store:
        StaffAccounts(store).add("alice", PASSWORD)
        with store.transaction() as tx:
            for table in TABLES[1:]:
                tx.execute(f"DROP TABLE {table}")
            tx.execute("DELETE FROM schema_migrations WHERE version = ?",
                       (SCHEMA_VERSION_DASHBOARD,))  # fmt: skip
    with BackofficeStore(db_target) as store:
        with store.transaction() as tx:
            assert all(tx.table_exists(table) for table in TABLES)
            ran = {int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations").rows}
        assert SCHEMA_VERSION_DASHBOARD in ran
        assert StaffAccounts(store).authenticate("alice", PASSWORD)  # kept


def test_a_session_ends_after_the_absolute_limit_even_when_used(db_target: Path | str) -> None:
    with BackofficeStore(db_target) as store:
        StaffAccounts(store).add("alice", PASSWORD)
        now = [time.time()]
        sessions = SessionStore(store, clock=lambda: now[0])
        cookie, _ = sessions.create("alice")
        start = now[0]
        while now[0] < start + ABSOLUTE_TIMEOUT_S - TOUCH_EVERY_S * 10:
            now[0] += TOUCH_EVERY_S * 10  # used every 10 minutes: never idle
            assert sessions.lookup(cookie) is not None
        now[0] = start + ABSOLUTE_TIMEOUT_S + 1
        assert sessions.lookup(cookie) is None


def test_the_cookie_is_secure_behind_a_tls_proxy(server: BackofficeServer) -> None:
    """uvicorn trusts X-Forwarded-Proto from loopback (a TLS-terminating proxy there)."""
    with httpx.Client(base_url=server.url, follow_redirects=False,
                      headers={"x-forwarded-proto": "https"}) as client:  # fmt: skip
        form = client.get("/dashboard/login")
        login_cookie = form.headers["set-cookie"]
        assert "secure" in {part.strip().lower() for part in login_cookie.split(";")}
        # httpx keeps a Secure cookie for https only: send it as the browser would.
        reply = client.post("/dashboard/login", data={"csrf": csrf_of(form.text),
                            "username": "alice", "password": PASSWORD},
                            headers={"origin": server.url.replace("http://", "https://"),
                                     "cookie": login_cookie.split(";")[0]})  # fmt: skip
        assert reply.status_code == 303, reply.text
    cookie = next(v for k, v in reply.headers.multi_items()
                  if k == "set-cookie" and v.startswith("posedge_session="))  # fmt: skip
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_the_band_is_the_central_90_percent_of_a_poisson_count() -> None:
    assert poisson_quantile(0.0, 0.05) == poisson_quantile(0.0, 0.95) == 0
    assert (poisson_quantile(10.0, 0.05), poisson_quantile(10.0, 0.95)) == (5, 15)
    assert (poisson_quantile(1.0, 0.05), poisson_quantile(1.0, 0.95)) == (0, 3)
    low, high = poisson_quantile(2000.0, 0.05), poisson_quantile(2000.0, 0.95)
    assert 1920 <= low <= 1930 and 2070 <= high <= 2080  # far out: normal approximation
