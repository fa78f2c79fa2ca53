"""Stateless replicas: three ``posedge simulate backoffice`` processes on one PostgreSQL
database, behind a round-robin proxy, each injecting faults (replies dropped after commit,
connection resets, 503s). Terminals upload through the proxy with the real sync service,
so consecutive batches of one terminal land on different replicas, some twice, some after
a lost reply; authorizations and reversals of one attempt arrive concurrently at different
replicas. The result must be what one fault-free server holds for the same traffic:
the same events, byte for byte, and the same money.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from posedge.agent.config import SyncConfig
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService
from posedge.backoffice import AuthorizationPolicy, BackofficeConfig, BackofficeStore
from posedge.simulator.backoffice import BackofficeServer
from posedge.simulator.pgserver import PostgresServer
from posedge.simulator.proxy import ProxyServer

from .helpers import authorization, batch, chain, events_url, reversal

POSEDGE = Path(sys.executable).parent / "posedge"
TERMINALS = [f"lane{i}" for i in range(1, 5)]
EVENTS_PER_TERMINAL = 240
SALES_PER_TERMINAL = 30
DECLINE_ENDING = "51"
SYNC: dict[str, Any] = {
    "backoff_initial": "10ms",
    "backoff_cap": "100ms",
    "retry_after_cap": "100ms",
    "permanent_retry": "100ms",
    "read_timeout": "5s",
    "batch_events": 16,
}
FAULTS = ["--drop-reply-rate", "0.15", "--reset-rate", "0.05", "--status-503-rate", "0.1",
          "--retry-after", "0"]  # fmt: skip


def start_replica(
    stack: ExitStack, url: str, seed: int, log: Path
) -> tuple[subprocess.Popen[str], str]:
    """A replica process, stopped (and its pipes closed) when ``stack`` closes."""
    log_file = stack.enter_context(log.open("w"))
    proc = subprocess.Popen(
        [str(POSEDGE), "simulate", "backoffice", "--db", url, "--listen", "127.0.0.1:0",
         "--log-level", "warning", "--fault-seed", str(seed),
         "--decline-amount-ending", DECLINE_ENDING, *FAULTS],
        stdout=subprocess.PIPE, stderr=log_file, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    stack.callback(proc.wait, 30)
    stack.callback(proc.terminate)
    line = proc.stdout.readline()
    found = re.search(r"listening on (http://\S+)", line)
    assert found, f"replica did not start: {line!r}: {log.read_text()[-2000:]}"
    return proc, found.group(1)


def fill(journal: Journal, terminal: str) -> None:
    for number in range(EVENTS_PER_TERMINAL):
        journal.append(
            "sale.created",
            {"amount": 100 + number, "currency": "EUR", "note": f"{terminal} ünïcode"},
            txn=f"{terminal}-s{number // 4}",
        )


def drain(journal: Journal, url: str, state_dir: Path, terminal: str) -> None:
    config = SyncConfig.model_validate(SYNC)
    client = BackofficeClient(url, terminal, config)
    try:
        service = SyncService(journal, client, config, state_dir=state_dir)
        report = service.drain(stop=threading.Event())
    finally:
        client.close()
    assert journal.acked_seq() == journal.head().seq, report


def post_until_answered(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> Any:
    """Like a terminal: the same request, same key, until a reply arrives that is final."""
    for _ in range(200):
        try:
            reply = client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            continue  # reset, or the reply was dropped after the commit
        if reply.status_code == 200:
            return reply.json()
        assert reply.status_code in (409, 503), reply.text  # in progress elsewhere, or a fault
    raise AssertionError(f"{path} {key}: never answered")


def money_traffic(url: str, terminal: str) -> dict[str, Any]:
    """Each sale authorized by three concurrent senders; every fifth also reversed while
    its authorizations are in flight; every seventh authorized again (a retry)."""
    replies: dict[str, list[Any]] = {}
    with httpx.Client(base_url=url, timeout=10.0) as client, ThreadPoolExecutor(6) as pool:
        for n in range(SALES_PER_TERMINAL):
            txn = f"{terminal}-s{n}"
            amount = 1000 + n * 100 + (51 if n % 6 == 0 else 0)
            body = authorization(txn, amount=amount, terminal=terminal)
            jobs = [
                pool.submit(post_until_answered, client, "/v1/authorizations", body,
                            body["attempt"])
                for _ in range(3)
            ]  # fmt: skip
            if n % 5 == 0:
                rev = reversal(txn, terminal=terminal, amount=amount)
                jobs.append(
                    pool.submit(post_until_answered, client, "/v1/reversals", rev, rev["reversal"])
                )
            replies[txn] = [job.result() for job in jobs]
            if n % 7 == 0:
                again = post_until_answered(client, "/v1/authorizations", body, body["attempt"])
                replies[txn].append(again)
    return replies


def test_three_faulty_replicas_hold_what_one_server_holds(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url("replicas")
    with ExitStack() as stack:
        # Started together: their migrations race on the empty database.
        with ThreadPoolExecutor(3) as pool:
            started = list(pool.map(
                lambda i: start_replica(stack, url, 100 + i, tmp_path / f"replica{i}.log"),
                range(3),
            ))  # fmt: skip
        replicas = [replica_url for _, replica_url in started]
        proxy = stack.enter_context(ProxyServer(replicas))
        reference = stack.enter_context(
            BackofficeServer(
                tmp_path / "reference.sqlite3",
                config=BackofficeConfig(
                    policy=AuthorizationPolicy(decline_amount_endings=[DECLINE_ENDING])
                ),
            )
        )
        journals = {}
        for terminal in TERMINALS:
            journal = stack.enter_context(Journal.open(tmp_path / terminal))
            fill(journal, terminal)
            journals[terminal] = journal

        with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
            # Out of order: a later batch first is refused whole (nothing of it is stored).
            late = batch(chain(8, start=41, salt="x"), terminal=TERMINALS[0])
            gap = None
            while gap is None:
                try:
                    gap = client.post(events_url(TERMINALS[0]), json=late)
                except httpx.TransportError:
                    continue
                if gap.status_code == 503:
                    gap = None
            assert gap.status_code == 409 and gap.json()["type"].endswith("sequence-gap")

        with ThreadPoolExecutor(len(TERMINALS) * 2) as pool:
            uploads = [
                pool.submit(drain, journals[t], proxy.url, tmp_path / t / "via-proxy", t)
                for t in TERMINALS
            ]
            money = {t: pool.submit(money_traffic, proxy.url, t) for t in TERMINALS}
            for job in uploads:
                job.result()
            replies = {t: job.result() for t, job in money.items()}
        # Duplicates after the fact: every batch again, through the proxy.
        with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
            for terminal in TERMINALS:
                events = [e.as_dict() for e in journals[terminal].iter_events()]
                for start in range(0, len(events), 40):
                    post_until_answered(
                        client, events_url(terminal),
                        batch(events[start : start + 40], terminal=terminal),
                        f"{terminal}:dup-{start}",
                    )  # fmt: skip
        # Every replica served, and the faults happened: replies lost after commit, resets.
        assert min(proxy.app.counts) > 100, proxy.app.counts
        assert proxy.app.upstream_failures > 20, proxy.app.upstream_failures

        with httpx.Client(base_url=reference.url, timeout=10.0) as client:
            for terminal in TERMINALS:
                events = [e.as_dict() for e in journals[terminal].iter_events()]
                for start in range(0, len(events), 50):
                    part = batch(events[start : start + 50], terminal=terminal)
                    assert client.post(events_url(terminal), json=part).status_code == 200
        for terminal in TERMINALS:
            for answers in replies[terminal].values():
                if any("reversed" in a for a in answers):
                    continue
                # Every sender of an attempt got the same decision, on whatever replica.
                assert len({(a["outcome"], a["auth_code"]) for a in answers}) == 1, answers
        ref_money = {t: money_traffic(reference.url, t) for t in TERMINALS}
        assert ref_money  # the reference saw the same logical traffic

        for proc, _ in started:
            proc.terminate()
        with BackofficeStore(url, readonly=True) as store:
            assert reference.store is not None
            for terminal in TERMINALS:
                held = store.events(terminal)
                assert held == reference.store.events(terminal)
                assert [e["seq"] for e in held] == list(range(1, EVENTS_PER_TERMINAL + 1))
                assert store.head(terminal) == reference.store.head(terminal)
                assert store.held_integrity(terminal) == reference.store.held_integrity(terminal)
                # The money: identical captured amounts per sale, and every reversed attempt
                # captured nothing, whatever the race between it and its authorizations.
                assert store.captured(terminal) == reference.store.captured(terminal)
                reversed_txns = {r["txn"] for r in store.reversals(terminal)}
                assert reversed_txns == {f"{terminal}-s{n}" for n in range(0, 30, 5)}
                assert not reversed_txns & set(store.captured(terminal))
                declined = {f"{terminal}-s{n}" for n in range(0, 30, 6)}
                assert not declined & set(store.captured(terminal))
                assert len(store.captured(terminal)) == SALES_PER_TERMINAL - len(
                    reversed_txns | declined
                )


def test_replicas_agree_on_one_attempt_under_contention(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Many senders of one attempt at once across replicas: one decision, stored once."""
    url = postgres.url("contention")
    with ExitStack() as stack:
        urls = []
        for i in range(3):
            _, replica_url = start_replica(stack, url, 7 + i, tmp_path / f"r{i}.log")
            urls.append(replica_url)
        proxy = stack.enter_context(ProxyServer(urls))
        body = authorization("hot-1", amount=4242, terminal="lane1")
        barrier = threading.Barrier(12)

        def send(_: int) -> Any:
            with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
                barrier.wait()
                return post_until_answered(client, "/v1/authorizations", body, body["attempt"])

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(send, range(12)))
        assert len({(a["outcome"], a["auth_code"]) for a in answers}) == 1
        with BackofficeStore(url, readonly=True) as store:
            rows = store.authorizations("lane1")
            assert [r["idem_key"] for r in rows] == [body["attempt"]]
            assert store.captured("lane1") == {"hot-1": 4242}
        assert min(proxy.app.counts) >= 1, proxy.app.counts
