"""Helpers of the dashboard tests: staff logins through the real login form, fleets made
through the real sync protocol (heartbeats over HTTP), alerts from the real engine."""

from __future__ import annotations

import datetime
import html
import re
import time
from typing import Any

import httpx

from posedge.backoffice.alerting.engine import evaluate
from posedge.backoffice.store import BackofficeStore

from ..alerting.support import Till, sim_terminal

PASSWORD = "correct horse battery staple"
_CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = _CSRF_RE.search(page)
    assert found, "no CSRF field on the page"
    return html.unescape(found.group(1))


def login(client: httpx.Client, username: str = "alice", password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token (from the overview)."""
    form = client.get("/dashboard/login")
    assert form.status_code == 200, form.text
    reply = client.post(
        "/dashboard/login",
        data={"csrf": csrf_of(form.text), "username": username, "password": password,
              "next": "/dashboard/"},
    )  # fmt: skip
    assert reply.status_code == 303, reply.text
    overview = client.get("/dashboard/")
    assert overview.status_code == 200, overview.text
    return csrf_of(overview.text)


def heartbeat(client: httpx.Client, terminal: str, **extra: Any) -> None:
    """One heartbeat of ``terminal`` through the sync protocol."""
    head = client.get(f"/v1/terminals/{terminal}/events/head").json()
    body = {
        "terminal": terminal,
        "sent_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "journal_head": {"seq": head["acked_seq"], "hash": head["head_hash"]},
        "unsynced_count": 0,
        "devices": {"printer": {"state": "ready"}, "reader": {"state": "ready"}},
        **extra,
    }
    reply = client.post(f"/v1/terminals/{terminal}/heartbeat", json=body)
    assert reply.status_code == 200, reply.text


def fleet(client: httpx.Client, stores: int, lanes: int, prefix: str = "shop") -> list[str]:
    """``stores`` × ``lanes`` terminals ``{prefix}NNN-laneNN``, each alive (a heartbeat)."""
    terminals = [f"{prefix}{s:03d}-lane{n:02d}" for s in range(1, stores + 1)
                 for n in range(1, lanes + 1)]  # fmt: skip
    for terminal in terminals:
        heartbeat(client, terminal)
    return terminals


def config_change_alert(store: BackofficeStore, terminal: str) -> str:
    """A real ``config_changed`` alert for ``terminal`` (an uploaded ``config.changed`` event,
    one evaluation); its fingerprint."""
    till = Till(sim_terminal(terminal))
    till.add(time.time() - 5, "config.changed", None, {"changed": ["printer.url"]})
    till.upload(store)
    evaluate(store)
    return f"config_changed/{terminal}"
