"""Delivery from the outbox to real HTTP receivers on loopback: signed webhooks the
receiver verifies, retries with backoff, Alertmanager's API format — on both backends."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from posedge.backoffice.alerting import signing
from posedge.backoffice.alerting.config import AlertConfig
from posedge.backoffice.alerting.engine import evaluate
from posedge.backoffice.alerting.outbox import backoff_s, deliver_due, pending
from posedge.backoffice.alerting.receivers import ReceiverError, Receivers
from posedge.backoffice.silence import SilenceSignal
from posedge.backoffice.store import BackofficeStore

from .conftest import Clock, Receiver


def lane_dead(store: BackofficeStore, now: float) -> list[SilenceSignal]:
    return [SilenceSignal("terminal_not_alive", "S1-lane01", "S1", True, 900.0, 180.0,
                          "S1-lane01: no heartbeat for 900 s")]  # fmt: skip


def fire(store: BackofficeStore, clock: Clock) -> None:
    evaluate(store, signals=lane_dead)
    clock.now += 60
    evaluate(store, signals=lane_dead)


def test_a_signed_webhook_is_verified_by_the_receiver(
    store: BackofficeStore, clock: Clock, receiver: Receiver
) -> None:
    hook = Receivers(store).add("hook", "webhook", receiver.url + "/posedge")
    assert hook.secret is not None and hook.secret.startswith("whsec_")
    fire(store, clock)
    done = deliver_due(store)
    assert len(done.delivered) == 1 and pending(store) == []
    (got,) = receiver.requests
    assert got.path == "/posedge" and got.headers["content-type"] == "application/json"
    header = got.headers["posedge-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert signing.verify(hook.secret, header, got.body, now=clock.now) == int(clock.now)
    body = got.json()
    assert got.headers["posedge-notification-id"] == body["id"] == done.delivered[0]
    assert body["alerts"][0]["fingerprint"] == "terminal_not_alive/S1-lane01"
    with pytest.raises(signing.SignatureError, match="no v1 signature matches"):
        signing.verify(hook.secret, header, got.body.replace(b"S1", b"S2"), now=clock.now)
    with pytest.raises(signing.SignatureError, match="no v1 signature matches"):
        signing.verify("whsec_" + "x" * 40, header, got.body, now=clock.now)
    with pytest.raises(signing.SignatureError, match="more than 300s from now"):
        signing.verify(hook.secret, header, got.body, now=clock.now + 301)
    assert hook.secret not in json.dumps([r.public_document() for r in Receivers(store).list()])


def test_failed_deliveries_are_retried_with_growing_backoff(
    store: BackofficeStore, clock: Clock, receiver: Receiver
) -> None:
    Receivers(store).add("hook", "webhook", receiver.url)
    config = AlertConfig(retry_base_s=10, retry_cap_s=25)
    fire(store, clock)
    receiver.statuses = [500, 503, 502]
    waits = []
    for _attempt in range(3):
        assert len(deliver_due(store, config).failed) == 1
        (row,) = pending(store)
        waits.append(row["next_attempt_at"] - clock.now)
        assert deliver_due(store, config).failed == []  # not due yet: nothing sent
        clock.now = row["next_attempt_at"]
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 12.5 <= waits[2] <= 25
    assert row["attempts"] == 3 and row["last_error"].startswith("HTTP 502")
    assert len(deliver_due(store, config).delivered) == 1 and pending(store) == []
    ids = {r.json()["id"] for r in receiver.requests}
    assert len(receiver.requests) == 4 and len(ids) == 1  # the same notification, once ok
    assert [r.headers["x-answer"] for r in receiver.requests] == ["500", "503", "502", "200"]


def test_an_unreachable_receiver_keeps_its_notifications(
    store: BackofficeStore, clock: Clock
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    Receivers(store).add("hook", "webhook", f"http://127.0.0.1:{port}/x")
    fire(store, clock)
    assert len(deliver_due(store).failed) == 1
    (row,) = pending(store)
    assert row["last_error"].startswith("ConnectError") and row["attempts"] == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    config = AlertConfig(retry_base_s=2, retry_cap_s=600)
    draws = [backoff_s(n, config) for n in range(1, 12) for _ in range(20)]
    assert min(draws[:20]) >= 1 and max(draws[:20]) <= 2
    assert all(300 <= d <= 600 for d in draws[-20:])
    assert len(set(draws[:20])) > 1  # jitter


def test_bad_receivers_are_refused_with_the_reason(store: BackofficeStore) -> None:
    receivers = Receivers(store)
    for url, reason in [
        ("ftp://example.com/x", "scheme must be http or https"),
        ("http:///nohost", "names no host"),
        ("https://example.com:99999/", "not a URL"),
        ("https://exa mple.com/", "white space"),
    ]:
        with pytest.raises(ReceiverError, match=reason):
            receivers.add("hook", "webhook", url)
    with pytest.raises(ReceiverError, match="receiver name"):
        receivers.add("no spaces", "webhook", "https://example.com/")
    receivers.add("hook", "webhook", "https://example.com/")
    with pytest.raises(ReceiverError, match="exists already"):
        receivers.add("hook", "webhook", "https://example.com/2")
    with pytest.raises(ReceiverError, match="no receiver 'other'; receivers: hook"):
        receivers.remove("other")
    assert [r.url for r in receivers.list()] == ["https://example.com/"]


# -- Alertmanager -------------------------------------------------------------------------------

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_postable_alerts(body: Any) -> None:
    """Alertmanager's OpenAPI ``postableAlerts``: an array of alerts with ``labels``
    (required, string map, valid label names, non-empty values), ``annotations`` (string
    map), ``startsAt``/``endsAt`` (date-time) and ``generatorURL`` (uri)."""
    assert isinstance(body, list) and body
    for alert in body:
        assert set(alert) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        labels = alert["labels"]
        assert isinstance(labels, dict) and labels.get("alertname")
        for name, value in labels.items():
            assert LABEL_NAME.match(name) and isinstance(value, str) and value
        assert all(isinstance(v, str) for v in alert.get("annotations", {}).values())
        for key in ("startsAt", "endsAt"):
            assert datetime.fromisoformat(alert[key].replace("Z", "+00:00")).tzinfo
        url = urlsplit(alert["generatorURL"])
        assert url.scheme in ("http", "https") and url.netloc


def test_alertmanager_gets_its_api_format(
    store: BackofficeStore, clock: Clock, receiver: Receiver
) -> None:
    Receivers(store).add("am", "alertmanager", receiver.url)
    config = AlertConfig(alertmanager_resend_s=60)
    fire(store, clock)
    deliver_due(store, config)
    (got,) = receiver.requests
    assert got.path == "/api/v2/alerts" and "posedge-signature" not in got.headers
    body = got.json()
    check_postable_alerts(body)
    (alert,) = body
    assert alert["labels"] == {"alertname": "terminal_not_alive", "store": "S1",
                               "terminal": "S1-lane01", "severity": "critical",
                               "source": "posedge"}  # fmt: skip
    assert alert["annotations"]["summary"] == "S1-lane01: no heartbeat for 900 s"
    starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).timestamp()
    ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
    assert starts == clock.now and ends == clock.now + 240  # four resend intervals ahead
    clock.now += 60  # firing alerts are re-sent before Alertmanager would expire them
    evaluate(store, config=config, signals=lane_dead)
    deliver_due(store, config)
    assert len(receiver.requests) == 2
    clock.now += 400  # the lane is back: resolved once keep_firing_for passed
    evaluate(store, config=config, signals=lambda s, n: [])
    clock.now += 300
    evaluate(store, config=config, signals=lambda s, n: [])
    deliver_due(store, config)
    resolved = receiver.requests[-1].json()
    check_postable_alerts(resolved)
    ended = datetime.fromisoformat(resolved[0]["endsAt"].replace("Z", "+00:00")).timestamp()
    assert ended == clock.now


def test_nothing_due_costs_no_http_client(
    store: BackofficeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop asks every second; with nothing due it must not build an httpx client (one
    loads the CA store: ~30 ms of CPU a second for an idle back office)."""
    import posedge.backoffice.alerting.outbox as outbox

    Receivers(store).add("hook", "webhook", "http://127.0.0.1:9/hook")

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("an http client was built with nothing to deliver")

    monkeypatch.setattr(outbox.httpx, "Client", no_client)
    done = deliver_due(store, AlertConfig())
    assert done.delivered == [] and done.failed == [] and done.skipped == 0
