"""Enrolment and signed history at the back office (issue 12 item 5), over real HTTP.

A real back office (uvicorn on loopback) with its registry, on SQLite and on
PostgreSQL (the ``bo`` and ``db_target`` fixtures of conftest.py). Terminals are
added through the registry (or the real ``posedge backoffice terminals`` CLI),
enrol with their one-time code and upload batches signed by their device key.
The attack tests hold a stolen bearer token and try to inject or rewrite
history with no signature, a forged one, or one taken from another terminal:
each is refused with the documented problem type and nothing is stored.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posedge.backoffice import BackofficeConfig, BackofficeServer, BackofficeStore
from posedge.backoffice.registry import TerminalRegistry, code_hash, token_hash
from posedge.backoffice.schema import SCHEMA_VERSION
from posedge.protocol.problems import PROBLEM_BASE
from posedge.protocol.signing import (
    new_device_key,
    public_key_text,
    rotation_message,
    sign_batch,
    sign_message,
)

from ..e2e.daemon_support import wait_until
from .backends import Databases
from .helpers import authorization, batch, chain, heartbeat, reversal

POSEDGE = Path(sys.executable).parent / "posedge"


@dataclass
class Enrolled:
    terminal: str
    key: Ed25519PrivateKey
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def registry(bo: BackofficeServer) -> TerminalRegistry:
    assert bo.store is not None
    return TerminalRegistry(bo.store)


def kind(reply: httpx.Response) -> str:
    doc = reply.json()
    assert reply.headers["content-type"].startswith("application/problem+json"), doc
    return str(doc["type"]).removeprefix(PROBLEM_BASE)


def enrol(client: httpx.Client, code: str, key: Ed25519PrivateKey) -> httpx.Response:
    return client.post("/v1/enrol", json={"code": code, "public_key": public_key_text(key)})


def add_and_enrol(bo: BackofficeServer, client: httpx.Client, terminal: str) -> Enrolled:
    _, code = registry(bo).add(terminal, terminal.split("-")[0], "1")
    key = new_device_key()
    reply = enrol(client, code, key)
    assert reply.status_code == 200, reply.text
    return Enrolled(terminal, key, reply.json()["token"])


def signed(
    events: list[dict[str, Any]], terminal: str, key: Ed25519PrivateKey | None
) -> dict[str, Any]:
    body = batch(events, terminal)
    if key is not None:
        body["signature"] = sign_batch(
            key, terminal, body["first_seq"], body["last_seq"], events[-1]["hash"]
        )
    return body


def held(bo: BackofficeServer, terminal: str) -> list[tuple[int, str]]:
    assert bo.store is not None
    return [(e["seq"], e["hash"]) for e in bo.store.events(terminal)]


def upload(
    client: httpx.Client, who: Enrolled, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or who.token}"}
    return client.post(f"/v1/terminals/{who.terminal}/events", json=body, headers=headers)


def rotate(
    client: httpx.Client,
    who: Enrolled,
    token: str,
    nonce: str,
    key: Ed25519PrivateKey | None = None,
) -> httpx.Response:
    signature = sign_message(key or who.key, rotation_message(who.terminal, nonce))
    return client.post(
        f"/v1/terminals/{who.terminal}/token",
        json={"nonce": nonce, "signature": signature},
        headers={"Authorization": f"Bearer {token}"},
    )


# ---- enrolment -------------------------------------------------------------------------------
def test_enrolment_registers_the_key_and_returns_the_token_once(
    bo: BackofficeServer, client: httpx.Client, databases: Databases
) -> None:
    _, code = registry(bo).add("0042-3", "0042", "3")
    key = new_device_key()
    reply = enrol(client, code, key)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert (doc["terminal"], doc["store"], doc["lane"]) == ("0042-3", "0042", "3")
    record = registry(bo).get("0042-3")
    assert record is not None and record.enrolled and not record.revoked
    assert record.public_key == public_key_text(key)
    assert record.token_hash == token_hash(doc["token"]) and record.code_used_at is not None
    # The token and the code are stored hashed only: their text is nowhere in the files.
    files = databases.files(bo.db)
    assert files
    for path in files:
        raw = path.read_bytes()
        assert doc["token"].encode() not in raw and code.encode() not in raw, path
    # The token works at once, signing included.
    who = Enrolled("0042-3", key, doc["token"])
    assert upload(client, who, signed(chain(3), who.terminal, key)).status_code == 200
    assert [seq for seq, _ in held(bo, who.terminal)] == [1, 2, 3]


def test_a_code_is_typed_leniently_but_works_once(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    _, code = registry(bo).add("s1-1", "s1", "1")
    typed = code.replace("-", " ").lower()
    first = enrol(client, typed, new_device_key())
    assert first.status_code == 200, first.text
    again = enrol(client, code, new_device_key())
    assert again.status_code == 403 and kind(again) == "enrolment-code-used"
    assert "new one" in again.json()["detail"]
    # The second attempt changed nothing: the first key and token stay.
    record = registry(bo).get("s1-1")
    assert record is not None and record.token_hash == token_hash(first.json()["token"])


def test_unknown_and_expired_codes_are_refused(bo: BackofficeServer, client: httpx.Client) -> None:
    assert bo.store is not None
    unknown = enrol(client, "ABCD-EFGH-JKMN-PQRS", new_device_key())
    assert unknown.status_code == 403 and kind(unknown) == "enrolment-code-unknown"
    # A code issued 25 hours ago with the default 24 h lifetime (a registry whose clock is
    # a day behind writes it through its own connection, as `terminals add` would).
    with BackofficeStore(bo.db, clock=lambda: time.time() - 25 * 3600) as past:
        _, code = TerminalRegistry(past).add("old-1", "old", "1")
    expired = enrol(client, code, new_device_key())
    assert expired.status_code == 403 and kind(expired) == "enrolment-code-expired"
    record = registry(bo).get("old-1")
    assert record is not None and not record.enrolled and record.code_used_at is None


def test_bad_enrolment_bodies_are_specific_and_store_nothing(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    _, code = registry(bo).add("s2-1", "s2", "1")
    short_key = client.post("/v1/enrol", json={"code": code, "public_key": "abc"})
    assert short_key.status_code == 422 and kind(short_key) == "validation"
    assert short_key.json()["errors"][0]["field"] == "public_key"
    extra = client.post(
        "/v1/enrol",
        json={"code": code, "public_key": public_key_text(new_device_key()), "terminal": "x"},
    )
    assert extra.status_code == 422 and extra.json()["errors"][0]["field"] == "terminal"
    huge = client.post("/v1/enrol", content=b"{" + b" " * 5000 + b"}")
    assert huge.status_code == 413 and kind(huge) == "payload-too-large"
    record = registry(bo).get("s2-1")
    assert record is not None and record.code_used_at is None and not record.enrolled
    assert enrol(client, code, new_device_key()).status_code == 200  # the code still works


# ---- signed history --------------------------------------------------------------------------
def test_a_stolen_token_cannot_inject_or_rewrite_history(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    who = add_and_enrol(bo, client, "lane-a")
    events = chain(5)
    assert upload(client, who, signed(events[:3], who.terminal, who.key)).status_code == 200
    before = held(bo, who.terminal)
    thief_key = new_device_key()
    forged = chain(3, salt="forged")  # another history from seq 1
    appended = chain(2, start=4, prev=events[2]["hash"], salt="injected")
    attempts = {
        "no signature, new events": (signed(appended, who.terminal, None), "signature-required"),
        "thief's key, new events": (signed(appended, who.terminal, thief_key), "signature-invalid"),
        "thief's key, rewritten": (signed(forged, who.terminal, thief_key), "signature-invalid"),
        "no signature, rewritten": (signed(forged, who.terminal, None), "signature-required"),
    }
    for label, (body, expected) in attempts.items():
        reply = upload(client, who, body)
        assert reply.status_code in (401, 403), label
        assert kind(reply) == expected, label
        assert "nothing was stored" in reply.json()["detail"]
    # A genuine signature over other seqs or another last hash does not carry over.
    genuine = signed(events[3:], who.terminal, who.key)
    moved = {**signed(appended, who.terminal, None), "signature": genuine["signature"]}
    assert kind(upload(client, who, moved)) == "signature-invalid"
    assert held(bo, who.terminal) == before
    # A garbled signature is a validation error of the field, not a crash.
    garbled = {**genuine, "signature": "!" * 86}
    assert kind(upload(client, who, garbled)) == "validation"
    # The terminal itself goes on.
    assert upload(client, who, genuine).status_code == 200
    assert [seq for seq, _ in held(bo, who.terminal)] == [1, 2, 3, 4, 5]


def test_a_batch_signed_by_another_terminal_is_refused(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    a = add_and_enrol(bo, client, "lane-a")
    b = add_and_enrol(bo, client, "lane-b")
    events = chain(3)
    b_batch = signed(events, b.terminal, b.key)
    assert upload(client, b, b_batch).status_code == 200
    # B's genuine signed batch replayed as A's, with A's stolen token.
    replayed = {**b_batch, "terminal": a.terminal}
    reply = upload(client, a, replayed)
    assert reply.status_code == 403 and kind(reply) == "signature-invalid"
    # B's batch as is, under A's path: the body names B (422), and B's token is not A's (403).
    assert upload(client, a, b_batch).status_code == 422
    wrong = client.post(f"/v1/terminals/{a.terminal}/events", json=replayed, headers=b.auth)
    assert wrong.status_code == 403
    # A's own key signing for B's id does not work either.
    as_b = signed(chain(2, start=4, prev=events[-1]["hash"]), b.terminal, a.key)
    assert kind(upload(client, b, as_b)) == "signature-invalid"
    assert held(bo, a.terminal) == [] and len(held(bo, b.terminal)) == 3


def test_an_enrolled_terminal_needs_its_token_even_in_open_mode(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    who = add_and_enrol(bo, client, "lane-a")
    body = signed(chain(2), who.terminal, who.key)
    anonymous = client.post(f"/v1/terminals/{who.terminal}/events", json=body)
    assert anonymous.status_code == 401 and kind(anonymous) == "unauthorized"
    assert client.get(f"/v1/terminals/{who.terminal}/events/head").status_code == 401
    beat = client.post(f"/v1/terminals/{who.terminal}/heartbeat", json=heartbeat(who.terminal))
    assert beat.status_code == 401
    bad = upload(client, who, body, token="not-the-token-at-all")
    assert bad.status_code == 401
    key = {"Idempotency-Key": "s-1:online"}
    auth = client.post("/v1/authorizations", json=authorization(terminal=who.terminal), headers=key)
    assert auth.status_code == 401
    assert held(bo, who.terminal) == []
    # Terminals not in the registry are still accepted anonymously in open mode, unsigned.
    other = client.post("/v1/terminals/lane-open/events", json=batch(chain(2), "lane-open"))
    assert other.status_code == 200
    with_token = client.post(
        "/v1/authorizations", json=authorization(terminal=who.terminal), headers=key | who.auth
    )
    assert with_token.status_code == 200


def test_tokens_file_terminals_stay_unsigned_beside_enrolled_ones(db_target: Path | str) -> None:
    tokens = {"lane-legacy": "legacy-token-123", "lane-a": "file-token-of-a"}
    config = BackofficeConfig(tokens=tokens)
    with (
        BackofficeServer(db_target, config=config) as bo,
        httpx.Client(base_url=bo.url, timeout=5.0) as client,
    ):
        legacy = client.post(
            "/v1/terminals/lane-legacy/events",
            json=batch(chain(2), "lane-legacy"),
            headers={"Authorization": "Bearer legacy-token-123"},
        )
        assert legacy.status_code == 200, legacy.text
        who = add_and_enrol(bo, client, "lane-a")
        assert upload(client, who, signed(chain(2), who.terminal, who.key)).status_code == 200
        # Once enrolled, its tokens-file entry no longer counts.
        stale = upload(client, who, signed(chain(1, 3), who.terminal, who.key), "file-token-of-a")
        assert stale.status_code == 401 and "tokens file" in stale.json()["detail"]
        unknown = upload(client, who, signed(chain(1, 3), who.terminal, who.key), "nope-nope")
        assert unknown.status_code == 401
        assert len(held(bo, "lane-a")) == 2


# ---- revocation ------------------------------------------------------------------------------
def test_a_revoked_terminal_is_refused_everywhere(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    who = add_and_enrol(bo, client, "lane-a")
    events = chain(4)
    assert upload(client, who, signed(events[:2], who.terminal, who.key)).status_code == 200
    registry(bo).revoke(who.terminal)
    t = who.terminal
    replies = {
        "events": upload(client, who, signed(events[2:], t, who.key)),
        "head": client.get(f"/v1/terminals/{t}/events/head", headers=who.auth),
        "heartbeat": client.post(
            f"/v1/terminals/{t}/heartbeat", json=heartbeat(t), headers=who.auth
        ),
        "authorization": client.post(
            "/v1/authorizations",
            json=authorization(terminal=t),
            headers={"Idempotency-Key": "s-1:online"} | who.auth,
        ),
        "reversal": client.post(
            "/v1/reversals",
            json=reversal(terminal=t),
            headers={"Idempotency-Key": "s-1:online:reversal"} | who.auth,
        ),
        "rotation": rotate(client, who, who.token, "n" * 24),
        "anonymous events": client.post(f"/v1/terminals/{t}/events", json=batch(events[2:], t)),
    }
    for label, reply in replies.items():
        assert reply.status_code == 403, (label, reply.text)
        assert kind(reply) == "terminal-revoked", label
    assert len(held(bo, t)) == 2
    # An unused code of a terminal revoked before it enrolled is refused too.
    _, code = registry(bo).add("lane-b", "lane", "b")
    registry(bo).revoke("lane-b")
    late = enrol(client, code, new_device_key())
    assert late.status_code == 403 and kind(late) == "terminal-revoked"


# ---- token rotation --------------------------------------------------------------------------
def test_rotation_replaces_the_token(bo: BackofficeServer, client: httpx.Client) -> None:
    who = add_and_enrol(bo, client, "lane-a")
    events = chain(6)
    old = who.token
    first = rotate(client, who, old, "nonce-0000000001")
    assert first.status_code == 200, first.text
    assert first.json()["terminal"] == who.terminal
    lost = first.json()["token"]
    # The reply was "lost": the terminal still has the old token, which may rotate again
    # (and do nothing else).
    assert upload(client, who, signed(events[:2], who.terminal, who.key), old).status_code == 401
    second = rotate(client, who, old, "nonce-0000000002")
    assert second.status_code == 200, second.text
    new = second.json()["token"]
    assert len({old, lost, new}) == 3
    assert upload(client, who, signed(events[:2], who.terminal, who.key), lost).status_code == 401
    assert upload(client, who, signed(events[:2], who.terminal, who.key), new).status_code == 200
    # The new token was used: the old one no longer rotates either.
    assert rotate(client, who, old, "nonce-0000000003").status_code == 401
    # A nonce works once; a signature by another key, or over another nonce, does not work.
    who.token = new
    reused = rotate(client, who, new, "nonce-0000000002")
    assert reused.status_code == 409 and kind(reused) == "nonce-reused"
    thief = rotate(client, who, new, "nonce-0000000004", key=new_device_key())
    assert thief.status_code == 403 and kind(thief) == "signature-invalid"
    other_nonce = client.post(
        f"/v1/terminals/{who.terminal}/token",
        json={
            "nonce": "nonce-0000000005",
            "signature": sign_message(who.key, rotation_message(who.terminal, "nonce-other")),
        },
        headers=who.auth,
    )
    assert kind(other_nonce) == "signature-invalid"
    record = registry(bo).get(who.terminal)
    assert record is not None and record.token_hash == token_hash(new)
    # Tokens-file and open-mode terminals have nothing to rotate here.
    stranger = Enrolled("lane-open", new_device_key(), "whatever-token")
    assert rotate(client, stranger, "whatever-token", "nonce-0000000006").status_code == 401


def test_operator_rotate_token_forces_re_enrolment_with_a_new_key(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    who = add_and_enrol(bo, client, "lane-a")
    events = chain(4)
    assert upload(client, who, signed(events[:2], who.terminal, who.key)).status_code == 200
    _, code = registry(bo).new_code(who.terminal)
    refused = upload(client, who, signed(events[2:], who.terminal, who.key))
    assert refused.status_code == 401
    new_key = new_device_key()
    again = enrol(client, code, new_key)
    assert again.status_code == 200 and again.json()["terminal"] == who.terminal
    renewed = Enrolled(who.terminal, new_key, again.json()["token"])
    old_key_batch = signed(events[2:], who.terminal, who.key)
    assert kind(upload(client, renewed, old_key_batch)) == "signature-invalid"
    # The same history continues under the new key.
    assert upload(client, renewed, signed(events[2:], who.terminal, new_key)).status_code == 200
    assert [seq for seq, _ in held(bo, who.terminal)] == [1, 2, 3, 4]


# ---- storage ---------------------------------------------------------------------------------
def test_a_code_another_replica_spends_meanwhile_is_used(databases: Databases) -> None:
    """The race made certain: another replica has spent the code but not committed when
    this one reads it as unused; this one's UPDATE waits for that row and then finds the
    code used. (SQLite: BEGIN IMMEDIATE serialises the whole enrolment, no such window.)"""
    if databases.backend != "postgresql":
        pytest.skip("SQLite serialises enrolments whole (BEGIN IMMEDIATE)")
    import psycopg

    target = databases.new("race")
    assert isinstance(target, str)
    with BackofficeStore(target) as store, psycopg.connect(target) as other:
        registry = TerminalRegistry(store)
        _, code = registry.add("race-1", "race", "1")
        other.execute(  # the other replica, mid-enrolment: row locked, not committed
            "UPDATE terminal_registry SET code_used_at = 1, public_key = 'other'"
            " WHERE terminal = 'race-1'"
        )
        outcome: dict[str, str] = {}
        key = public_key_text(new_device_key())
        thread = threading.Thread(
            target=lambda: outcome.update(kind=registry.enrol(code, key).kind)
        )
        thread.start()
        with psycopg.connect(target, autocommit=True) as watch:

            def waiting_for_the_row() -> bool:
                row = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                return row is not None and row[0] >= 1

            assert wait_until(waiting_for_the_row, 10.0), "the enrolment never reached the row"
        other.commit()
        thread.join(10)
        assert outcome == {"kind": "used"}
        record = registry.get("race-1")
        assert record is not None and record.public_key == "other"


def test_a_code_is_spent_once_across_replicas(databases: Databases) -> None:
    """Two stores on one database (two replicas), eight enrolments of one code at once:
    exactly one registers its key."""
    target = databases.new("race")
    stores = [BackofficeStore(target), BackofficeStore(target)]
    try:
        _, code = TerminalRegistry(stores[0]).add("race-1", "race", "1")
        keys = [public_key_text(new_device_key()) for _ in range(8)]
        start = threading.Barrier(len(keys))
        kinds: list[str] = []

        def attempt(index: int) -> None:
            registry = TerminalRegistry(stores[index % 2])
            start.wait()
            kinds.append(registry.enrol(code, keys[index]).kind)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(keys))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(kinds) == ["ok"] + ["used"] * (len(keys) - 1)
        record = TerminalRegistry(stores[1]).get("race-1")
        assert record is not None and record.public_key in keys
    finally:
        for store in stores:
            store.close()


def test_a_version_2_database_gets_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "bo.sqlite3"
    BackofficeStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE terminal_registry")
    db.execute("DROP TABLE terminal_rotation_nonces")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()
    with BackofficeStore(path) as store:
        record, code = TerminalRegistry(store).add("s-1", "s", "1")
        assert record.code_hash == code_hash(code)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()


# ---- the operator's commands -----------------------------------------------------------------
def posedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POSEDGE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_terminals_commands_against_a_running_back_office(
    bo: BackofficeServer, client: httpx.Client
) -> None:
    db = str(bo.db)
    added = posedge("--json", "backoffice", "terminals", "add", "0042/3", "--db", db)
    assert added.returncode == 0, added.stderr
    doc = json.loads(added.stdout)
    assert doc["terminal"] == "0042-3" and doc["state"] == "awaiting enrolment"
    key = new_device_key()
    reply = enrol(client, doc["code"], key)  # the running server sees the new code at once
    assert reply.status_code == 200, reply.text
    listed = json.loads(posedge("--json", "backoffice", "terminals", "list", "--db", db).stdout)
    (row,) = listed["terminals"]
    assert row["state"] == "enrolled" and row["public_key"] == public_key_text(key)
    assert "token_hash" not in row and "code_hash" not in row
    human = posedge("backoffice", "terminals", "list", "--db", db)
    assert "0042-3" in human.stdout and "enrolled" in human.stdout
    who = Enrolled("0042-3", key, reply.json()["token"])
    rotated = posedge("--json", "backoffice", "terminals", "rotate-token", "0042-3", "--db", db)
    assert rotated.returncode == 0, rotated.stderr
    assert upload(client, who, signed(chain(1), who.terminal, key)).status_code == 401
    new_code = json.loads(rotated.stdout)["code"]
    assert new_code != doc["code"]
    revoked = posedge("backoffice", "terminals", "revoke", "0042-3", "--db", db)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert kind(enrol(client, new_code, new_device_key())) == "terminal-revoked"
    human_add = posedge(
        "backoffice", "terminals", "add", "s9/1", "--db", db, "--public-url", "https://bo.example"
    )
    assert "enrolment code:" in human_add.stdout
    assert "posedge enroll --backoffice https://bo.example --code " in human_add.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "0042", "--db", "{db}"], "is not STORE/LANE"),
        (["add", "a/b/c", "--db", "{db}"], "is not STORE/LANE"),
        (["add", "/3", "--db", "{db}"], "is not STORE/LANE"),
        (["add", "Zürich/1", "--db", "{db}"], "contains 'ü'"),
        (["add", "s/1", "--terminal-id", "-x", "--db", "{db}"], "start with a letter or a digit"),
        (["add", "s/1", "--terminal-id", "x" * 65, "--db", "{db}"], "65 characters"),
        (["add", "s/1", "--expires", "1s", "--db", "{db}"], "from 1m to 30d"),
        (["add", "s/1", "--expires", "soon", "--db", "{db}"], "is not a duration"),
        (["add", "s/1", "--db", "{missing}"], "no back office database"),
        (["revoke", "nobody", "--db", "{db}"], "no terminal nobody"),
        (["rotate-token", "nobody", "--db", "{db}"], "no terminal nobody"),
        (["add", "dup/1", "--db", "{db}"], "exists already"),
    ],
)
def test_bad_operator_input_is_a_specific_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "bo.sqlite3"
    with BackofficeStore(db) as store:
        TerminalRegistry(store).add("dup-1", "dup", "1")
    full = [a.format(db=db, missing=tmp_path / "none.sqlite3") for a in args]
    done = posedge("backoffice", "terminals", *full)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
