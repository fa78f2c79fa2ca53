"""Delivering the outbox (table alert_outbox): every notification reaches its receiver,
across crashes, restarts and replicas.

A notification is written in the same transaction as the alert states that caused it
(:mod:`.engine`); it is deleted never, marked ``delivered_at`` when its receiver answered
2xx. :func:`deliver_due` takes the due ones (``next_attempt_at`` passed), claims each by
moving its ``next_attempt_at`` a lease ahead (a conditional UPDATE: one replica wins; a
replica that dies mid-delivery leaves a claim that expires), POSTs it, and records the
outcome: delivered, or the next attempt after an exponential backoff with jitter
(``retry_base_s · 2^(attempts-1)``, capped at ``retry_cap_s``, drawn from its upper half).
A receiver may so get a notification twice (it answered, we died before recording it):
each carries its id (``Posedge-Notification-Id`` and ``id`` in the body) to dedupe by.

Webhook requests are signed (:mod:`.signing`); Alertmanager requests are plain JSON.
Errors are logged with the receiver name, the notification id and the HTTP status or
error class — never the secret or the body.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..store import BackofficeStore
from . import signing
from .config import AlertConfig
from .receivers import Receiver, Receivers

log = logging.getLogger("posedge.backoffice.alerts")
BATCH = 100
USER_AGENT = "posedge-backoffice-alerts/1"
_RNG = random.Random()


@dataclass
class Delivery:
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: int = 0


def backoff_s(attempts: int, config: AlertConfig, rng: random.Random | None = None) -> float:
    """The wait after the ``attempts``-th failed attempt (>= 1): exponential, capped,
    jittered over its upper half (so retries of many notifications spread out)."""
    ceiling = min(config.retry_cap_s, config.retry_base_s * 2.0 ** min(attempts - 1, 40))
    return ceiling / 2 + (rng or _RNG).uniform(0, ceiling / 2)


def pending(store: BackofficeStore) -> list[dict[str, Any]]:
    """Undelivered notifications: id, receiver, attempts, next attempt, last error."""
    rows = store.db.execute(
        "SELECT id, receiver, attempts, next_attempt_at, last_error, created_at"
        " FROM alert_outbox WHERE delivered_at IS NULL ORDER BY created_at, id"
    ).rows
    keys = ("id", "receiver", "attempts", "next_attempt_at", "last_error", "created_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _claim(store: BackofficeStore, nid: str, was: float, until: float) -> bool:
    with store.transaction() as tx:
        return (
            tx.execute(
                "UPDATE alert_outbox SET next_attempt_at = ? WHERE id = ? AND next_attempt_at = ?"
                " AND delivered_at IS NULL",
                (until, nid, was),
            ).rowcount
            == 1
        )


def deliver_due(
    store: BackofficeStore,
    config: AlertConfig | None = None,
    now: float | None = None,
    client: httpx.Client | None = None,
    clock: Callable[[], float] | None = None,
) -> Delivery:
    """Send every due notification once (each its own claim); returns what happened."""
    config = config or AlertConfig()
    clock = clock or store.clock
    now = clock() if now is None else now
    rows = store.db.execute(
        "SELECT id, receiver, body, attempts, next_attempt_at FROM alert_outbox"
        " WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?",
        (now, BATCH),
    ).rows
    result = Delivery()
    if not rows:
        # The loop asks every second: nothing due costs one indexed read, not a client
        # (an httpx client loads the CA store, ~30 ms of CPU).
        return result
    receivers = {r.name: r for r in Receivers(store).list()}
    own = client is None
    http = client or httpx.Client(timeout=config.delivery_timeout_s, follow_redirects=False)
    try:
        for nid, name, body, attempts, was in rows:
            receiver = receivers.get(str(name))
            if receiver is None:
                result.skipped += 1  # removed meanwhile (remove drops its rows)
                continue
            if not _claim(store, str(nid), float(was), now + config.delivery_lease_s):
                result.skipped += 1  # another replica has it
                continue
            error = post(http, receiver, str(nid), str(body).encode(), clock())
            done = clock()
            with store.transaction() as tx:
                if error is None:
                    tx.execute(
                        "UPDATE alert_outbox SET delivered_at = ?, attempts = attempts + 1,"
                        " last_error = NULL WHERE id = ?",
                        (done, nid),
                    )
                else:
                    tries = int(attempts) + 1
                    tx.execute(
                        "UPDATE alert_outbox SET attempts = ?, next_attempt_at = ?,"
                        " last_error = ? WHERE id = ?",
                        (tries, done + backoff_s(tries, config), error[:500], nid),
                    )
            if error is None:
                result.delivered.append(str(nid))
            else:
                result.failed.append(str(nid))
                log.warning(
                    "alert notification not delivered; retrying later",
                    extra={"receiver": receiver.name, "notification": nid, "error": error,
                           "attempts": int(attempts) + 1},
                )  # fmt: skip
    finally:
        if own:
            http.close()
    return result


def post(http: httpx.Client, receiver: Receiver, nid: str, body: bytes, now: float) -> str | None:
    """POST one notification; None when the receiver took it (2xx), else why not."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if receiver.kind == "webhook":
        headers[signing.ID_HEADER] = nid
        if receiver.secret:
            headers[signing.SIGNATURE_HEADER] = signing.header(receiver.secret, int(now), body)
    try:
        reply = http.post(receiver.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    if 200 <= reply.status_code < 300:
        return None
    return f"HTTP {reply.status_code}: {reply.text[:200]}"


def wait_delivered(
    store: BackofficeStore, deadline_s: float, config: AlertConfig | None = None
) -> list[dict[str, Any]]:
    """Deliver until nothing is due or ``deadline_s`` passed; returns what is left."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        deliver_due(store, config)
        left = pending(store)
        if not left:
            return []
        soonest = min(float(p["next_attempt_at"]) for p in left)
        time.sleep(min(0.5, max(0.01, soonest - store.clock())))
    return pending(store)
