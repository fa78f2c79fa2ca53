"""Every fault class as an httpx client sees it, and the admin API that injects them."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer, FaultPlan

from .helpers import authorization, batch, chain, events_url

PROBLEM = "https://posedge.dev/problems/"
HEAD = f"{events_url()}/head"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def faulty(db_target: Path | str, clock: FakeClock) -> Iterator[BackofficeServer]:
    plan = FaultPlan(seed=7, clock=clock)
    with BackofficeServer(db_target, config=BackofficeConfig(), faults=plan) as server:
        yield server


@pytest.fixture
def fclient(faulty: BackofficeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty.url, timeout=5.0) as c:
        yield c


def test_error_for_the_next_request_only(faulty: BackofficeServer, fclient: httpx.Client) -> None:
    faulty.faults.add({"kind": "error", "count": 1})
    reply = fclient.get(HEAD)
    assert reply.status_code == 500
    assert reply.json()["type"] == PROBLEM + "internal"
    assert fclient.get(HEAD).status_code == 200


def test_error_rate_is_a_fraction_of_requests(
    faulty: BackofficeServer, fclient: httpx.Client
) -> None:
    faulty.faults.add({"kind": "error", "rate": 0.5, "endpoint": "head"})
    statuses = [fclient.get(HEAD).status_code for _ in range(40)]
    assert 5 < statuses.count(500) < 35 and statuses.count(200) == 40 - statuses.count(500)
    assert fclient.get("/healthz").status_code == 200  # never faulted


def test_latency_is_added(faulty: BackofficeServer, fclient: httpx.Client) -> None:
    faulty.faults.add({"kind": "latency", "latency_s": 0.3, "count": 1})
    started = time.monotonic()
    assert fclient.get(HEAD).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    fclient.get(HEAD)
    assert time.monotonic() - started < 0.3


def test_429_with_retry_after_seconds(faulty: BackofficeServer, fclient: httpx.Client) -> None:
    faulty.faults.add({"kind": "status_429", "count": 1, "retry_after_s": 7})
    reply = fclient.get(HEAD)
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "7"
    assert reply.json()["type"] == PROBLEM + "rate-limited"
    assert reply.json()["retry_after_s"] == 7


def test_503_with_retry_after_as_http_date(faulty: BackofficeServer, fclient: httpx.Client) -> None:
    faulty.faults.add(
        {"kind": "status_503", "count": 1, "retry_after_s": 120, "retry_after_form": "date"}
    )
    reply = fclient.get(HEAD)
    assert reply.status_code == 503
    when = email.utils.parsedate_to_datetime(reply.headers["retry-after"])
    assert 100 < when.timestamp() - time.time() <= 121


def test_connection_reset_without_a_response(
    faulty: BackofficeServer, fclient: httpx.Client
) -> None:
    faulty.faults.add({"kind": "reset", "count": 1, "endpoint": "events"})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        fclient.post(events_url(), json=batch(chain(3)))
    assert fclient.get(HEAD).json()["acked_seq"] == 0  # not processed
    assert fclient.post(events_url(), json=batch(chain(3))).status_code == 200


def test_down_window_refuses_until_it_ends(
    faulty: BackofficeServer, fclient: httpx.Client, clock: FakeClock
) -> None:
    faulty.faults.add({"kind": "down", "duration_s": 30})
    for _ in range(3):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            fclient.get(HEAD)
    clock.now += 31
    assert fclient.get(HEAD).status_code == 200
    faulty.faults.add({"kind": "down", "duration_s": 30, "down_mode": "503"})
    clock.now += 10
    reply = fclient.get(HEAD)
    assert reply.status_code == 503 and reply.headers["retry-after"] == "20"
    clock.now += 21
    assert fclient.get(HEAD).status_code == 200


def test_commit_then_drop_the_reply(faulty: BackofficeServer, fclient: httpx.Client) -> None:
    events = chain(5)
    faulty.faults.add({"kind": "drop_reply", "count": 1})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        fclient.post(events_url(), json=batch(events))
    assert fclient.get(HEAD).json()["acked_seq"] == 5  # stored although the client saw a failure
    replay = fclient.post(events_url(), json=batch(events))
    assert replay.json()["duplicates"] == 5
    faulty.faults.add({"kind": "drop_reply", "count": 1, "endpoint": "authorizations"})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        fclient.post(
            "/v1/authorizations", json=authorization(), headers={"Idempotency-Key": "s-1:online"}
        )
    assert faulty.store is not None
    assert faulty.store.authorizations("lane1")[0]["outcome"] == "approved"


def test_admin_api_adds_lists_and_clears_faults(fclient: httpx.Client) -> None:
    reply = fclient.post("/admin/faults", json={"kind": "error", "count": 2, "endpoint": "head"})
    assert reply.status_code == 200
    assert reply.json()["faults"] == [
        {
            "kind": "error",
            "endpoint": "head",
            "count": 2,
            "latency_s": 0.0,
            "retry_after_s": 1.0,
            "retry_after_form": "seconds",
            "down_mode": "reset",
            "remaining": 2,
        }
    ]
    assert fclient.get(HEAD).status_code == 500
    assert fclient.get("/admin/faults").json()["faults"][0]["remaining"] == 1
    reply = fclient.post("/admin/faults", json={"replace": True, "rules": [{"kind": "reset"}]})
    assert [f["kind"] for f in reply.json()["faults"]] == ["reset"]
    assert fclient.delete("/admin/faults").json() == {"faults": []}
    bad = fclient.post("/admin/faults", json={"kind": "down"})
    assert bad.status_code == 422 and "duration_s" in bad.json()["detail"]
    bad = fclient.post("/admin/faults", json={"kind": "error", "rate": 2})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "rate"
