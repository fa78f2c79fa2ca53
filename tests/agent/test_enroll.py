"""``posedge enroll`` and ``posedge token rotate`` against the real back office (issue 12 item 5).

The real console command in a subprocess, the reference back office on
loopback (its registry in SQLite), the real journal; one test runs the real
daemon (``run --simulate`` against the enrolled back office) through a token
rotation. Signed uploads go through the real SyncService (``sync now`` and the
daemon), and the back office refuses unsigned ones for an enrolled terminal,
so an upload that arrives proves the signature.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from posedge.agent.daemon.lockfile import StateDirLock
from posedge.agent.journal import Journal
from posedge.backoffice import BackofficeServer, BackofficeStore
from posedge.backoffice.registry import TerminalRegistry, token_hash
from posedge.protocol.signing import public_key_text

from ..e2e.daemon_support import Daemon, create_sale, wait_final, wait_until
from .journal.helpers import fill, posedge

UNREACHABLE = "http://127.0.0.1:9"
FAST_SYNC = (
    '[sync]\nbackoff_initial = "20ms"\nbackoff_cap = "200ms"\npermanent_retry = "200ms"\n'
    'read_timeout = "5s"\n'
)
FILES = ("signing.key", "sync-token", "enrolment.json", ".signing.key.pending")


@pytest.fixture
def bo(tmp_path: Path) -> Iterator[BackofficeServer]:
    with BackofficeServer(tmp_path / "bo.sqlite3") as server:
        yield server


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posedge.toml"
    path.write_text(FAST_SYNC)
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def registry(bo: BackofficeServer) -> TerminalRegistry:
    assert bo.store is not None
    return TerminalRegistry(bo.store)


def new_code(bo: BackofficeServer, terminal: str = "0042-3") -> str:
    _, code = registry(bo).add(terminal, terminal.split("-")[0], terminal.split("-")[1])
    return code


def cli(state: Path, config: Path, *args: str) -> tuple[int, str, str]:
    done = posedge("--state-dir", str(state), "--config", str(config), *args)
    return done.returncode, done.stdout, done.stderr


def enroll(state: Path, config: Path, url: str, code: str, *more: str) -> tuple[int, str, str]:
    return cli(state, config, "--json", "enroll", "--backoffice", url, "--code", code, *more)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def held(bo: BackofficeServer, terminal: str) -> int:
    assert bo.store is not None
    return bo.store.head(terminal)[0]


def token_works(bo: BackofficeServer, terminal: str, token: str) -> bool:
    reply = httpx.get(
        f"{bo.url}/v1/terminals/{terminal}/events/head",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert reply.status_code in (200, 401), reply.text
    return reply.status_code == 200


def test_enrol_then_sync_uploads_signed_history(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    code = new_code(bo)
    rc, out, err = enroll(state, config, bo.url, code)
    assert rc == 0, out + err
    doc = json.loads(out)
    assert (doc["terminal"], doc["store"], doc["lane"]) == ("0042-3", "0042", "3")
    assert doc["backoffice"] == bo.url and doc["warning"] is None
    token = (state / "sync-token").read_text().strip()
    assert token not in out + err, "the token was printed"
    # The files: the key private (0600, Ed25519 PKCS#8 PEM, its public half registered),
    # the token private (0600, the one the back office holds hashed), the record 0640.
    key_file, token_file = Path(doc["signing_key_file"]), Path(doc["token_file"])
    assert (key_file, token_file) == (state / "signing.key", state / "sync-token")
    assert mode(key_file) == 0o600 and mode(token_file) == 0o600
    assert mode(state / "enrolment.json") == 0o640
    assert not (state / ".signing.key.pending").exists()
    key = load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    record = registry(bo).get("0042-3")
    assert record is not None and record.public_key == public_key_text(key) == doc["public_key"]
    assert record.token_hash == token_hash(token)
    # The enrolment is journaled (public key only), and reaches the back office with the rest.
    with Journal.open(state) as journal:
        (enrolled,) = [e for e in journal.iter_events() if e.type == "terminal.enrolled"]
        assert enrolled.payload["terminal"] == "0042-3"
        assert enrolled.payload["public_key"] == doc["public_key"]
        assert token not in json.dumps(enrolled.payload)
        # The agent uses the enrolment without any configuration: terminal id, URL, token, key.
        fill(journal, 25)
        head = journal.head().seq
    rc, out, err = cli(state, config, "--json", "sync", "now")
    assert rc == 0, out + err
    assert json.loads(out)["terminal"] == "0042-3"
    assert held(bo, "0042-3") == head
    rc, out, _ = cli(state, config, "--json", "sync", "status")
    assert json.loads(out)["terminal"] == "0042-3" and json.loads(out)["backoffice"] == bo.url
    # Without its key the same terminal's uploads are refused: nothing more is stored.
    key_file.rename(state / "signing.key.away")
    with Journal.open(state) as journal:
        fill(journal, 3)
    rc, out, err = cli(state, config, "--json", "sync", "now")
    assert rc == 3, out + err
    assert "signature-required" in json.loads(out)["errors"][-1]
    assert held(bo, "0042-3") == head


@pytest.mark.parametrize("case", ["unknown", "used", "expired"])
def test_a_refused_code_says_what_to_do_and_writes_nothing(
    bo: BackofficeServer, config: Path, state: Path, tmp_path: Path, case: str
) -> None:
    if case == "unknown":
        code, expected = "ABCD-EFGH-JKMN-PQRS", "no such code"
    elif case == "used":
        code, expected = new_code(bo), "used already"
        assert enroll(tmp_path / "other", config, bo.url, code)[0] == 0
    else:
        with BackofficeStore(bo.db, clock=lambda: time.time() - 25 * 3600) as past:
            _, code = TerminalRegistry(past).add("old-1", "old", "1")
        expected = "expired"
    rc, out, err = enroll(state, config, bo.url, code)
    assert rc == 2, out + err
    message = " ".join(err.split())
    assert f"enrolment-code-{case}" in message and expected in message, message
    assert "what to do:" in message and "posedge backoffice terminals" in message
    assert not any((state / name).exists() for name in FILES)


def test_bad_input_and_an_unreachable_back_office(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    code = new_code(bo)
    rc, _, err = enroll(state, config, UNREACHABLE, code)
    assert rc == 4, err
    assert not any((state / name).exists() for name in FILES)
    rc, _, err = enroll(state, config, bo.url, "short")
    assert rc == 2 and "8 to 64" in err
    rc, _, err = enroll(state, config, "http://example.com", code)
    assert rc == 2 and "cleartext" in err
    rc, _, err = cli(state, config, "enroll", "--code", code)
    assert rc == 2 and "--backoffice URL" in err
    # The code was never spent.
    assert enroll(state, config, bo.url, code)[0] == 0


def test_enrolled_twice_needs_force_and_force_re_keys(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    assert enroll(state, config, bo.url, new_code(bo))[0] == 0
    first_key = (state / "signing.key").read_bytes()
    first_token = (state / "sync-token").read_text().strip()
    _, again = registry(bo).new_code("0042-3")
    rc, _, err = enroll(state, config, bo.url, again)
    assert rc == 2
    message = " ".join(err.split())
    assert "already enrolled as terminal 0042-3" in message
    assert str(state / "signing.key") in message and "--force" in message
    assert (state / "signing.key").read_bytes() == first_key
    rc, out, err = enroll(state, config, bo.url, again, "--force")
    assert rc == 0, out + err
    assert (state / "signing.key").read_bytes() != first_key
    new_token = (state / "sync-token").read_text().strip()
    assert not token_works(bo, "0042-3", first_token)
    assert token_works(bo, "0042-3", new_token)


def test_enrolment_is_refused_while_the_daemon_runs(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    code = new_code(bo)
    state.mkdir(mode=0o700)
    with StateDirLock.for_state_dir(state):
        rc, _, err = enroll(state, config, bo.url, code)
    assert rc == 2
    assert f"pid {os.getpid()}" in err and "stop it first" in err
    assert enroll(state, config, bo.url, code)[0] == 0  # the lock is gone: the code still works


def test_a_configured_terminal_id_must_be_the_enrolled_one(
    bo: BackofficeServer, state: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[terminal]\nid = "lane-9"\n' + FAST_SYNC)
    rc, out, err = enroll(state, other, bo.url, new_code(bo))
    assert rc == 0, err
    assert "terminal.id" in json.loads(out)["warning"]
    rc, _, err = cli(state, other, "sync", "now")
    assert rc == 2
    assert "enrolled as '0042-3'" in " ".join(err.split())


def test_token_rotate_replaces_the_token_file(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    assert enroll(state, config, bo.url, new_code(bo))[0] == 0
    old = (state / "sync-token").read_text().strip()
    rc, out, err = cli(state, config, "--json", "token", "rotate")
    assert rc == 0, out + err
    doc = json.loads(out)
    new = (state / "sync-token").read_text().strip()
    assert new != old and new not in out + err and mode(state / "sync-token") == 0o600
    assert doc["reloaded_pid"] is None and "no daemon" in doc["note"]
    assert doc["warning"] is None
    assert token_works(bo, "0042-3", new) and not token_works(bo, "0042-3", old)
    with Journal.open(state, readonly=True) as journal:
        rotated = [e.payload for e in journal.iter_events() if e.type == "token.rotated"]
    assert rotated == [{"terminal": "0042-3", "backoffice": bo.url}]
    # Revoked: the rotation is refused with what to do, and the token file stays.
    registry(bo).revoke("0042-3")
    rc, _, err = cli(state, config, "token", "rotate")
    assert rc == 2
    assert "terminal-revoked" in err and "what to do:" in err
    assert (state / "sync-token").read_text().strip() == new


def test_token_rotate_needs_an_enrolment(config: Path, state: Path) -> None:
    rc, _, err = cli(state, config, "token", "rotate")
    assert rc == 2 and "not enrolled" in err and "posedge enroll" in err


def test_the_daemon_signs_its_uploads_and_reloads_a_rotated_token(
    bo: BackofficeServer, config: Path, state: Path
) -> None:
    assert enroll(state, config, bo.url, new_code(bo))[0] == 0
    old = (state / "sync-token").read_text().strip()

    def journal_head() -> int:
        with Journal.open(state, readonly=True) as journal:
            return journal.head().seq

    with Daemon(state, config=config) as daemon:  # run --simulate: the enrolled back office
        daemon.wait_ready()
        assert daemon.where["backoffice"] == bo.url
        with daemon.client() as http:
            assert wait_final(http, create_sale(http, amount=1200)["id"])["final"]
            first = journal_head()
            assert wait_until(lambda: held(bo, "0042-3") >= first), "signed upload never arrived"
            reloads = len(daemon.notify.messages)
            rc, out, err = cli(state, config, "--json", "token", "rotate")
            assert rc == 0, out + err
            assert json.loads(out)["reloaded_pid"] == daemon.proc.pid
            assert daemon.notify.wait_for(lambda m: m.get("READY") == "1", 30, after=reloads)
            assert not token_works(bo, "0042-3", old)
            assert wait_final(http, create_sale(http, amount=1300)["id"])["final"]
            second = journal_head()
            assert second > first
            assert wait_until(lambda: held(bo, "0042-3") >= second), (
                "the daemon did not upload with the rotated token"
            )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
