"""``posedge support-bundle`` end to end: a real state directory with secrets and card
numbers planted where they could leak from (configuration, log lines from a fake
journalctl on PATH, a device statistics file, a device dump, the daemon's status over
the real till API socket), the real command in a subprocess, and the bundle read back.

Nothing planted may come out in any encoding checked (raw, JSON-escaped, \\u escapes,
hex, base64); hosts and addresses get the same placeholder in every file and the
mapping file (kept next to the bundle) puts the originals back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from posedge.agent.api import ApiServer, create_app
from posedge.agent.diagnostics.obfuscate import PLACEHOLDER, deobfuscate
from posedge.agent.enrolment import key_pem
from posedge.agent.journal import Journal
from posedge.protocol.signing import new_device_key
from tests.agent.api.fakes import FakeEngine
from tests.agent.journal.helpers import POSEDGE_EXE, fill

T = TypeVar("T")


def posedge(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console command in a subprocess."""
    full_env = dict(os.environ)
    full_env.pop("POSEDGE_CONFIG", None)
    full_env.pop("POSEDGE_STATE_DIR", None)
    full_env.update(env or {})
    return subprocess.run(
        [str(POSEDGE_EXE), *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=120, check=False,
    )  # fmt: skip


PAN_VISA = "4111111111111111"
PAN_MASTERCARD = "5555555555554444"
TRACK2 = f";{PAN_VISA}=25121010000000000000?"
TRACK1 = f"%B{PAN_VISA}^DOE/JOHN^25121010000000000000000?"
URL_PASSWORD = "hunter2-not-a-real-pass"
BACKOFFICE = "backoffice.example.com"
READER_HOST = "reader-7.shop.internal"
PRINTER_IP = "10.20.30.40"
IPV6 = "2001:db8::7"
EMAIL = "ops@example.com"
CLEAN_LINE = (
    f"sync to https://{BACKOFFICE}:8443/v1/events failed from {PRINTER_IP} via "
    f"[{IPV6}]:443; tell {EMAIL}; reader {READER_HOST} is fine"
)
"""A log line with no secret in it: after obfuscation and back it must be exactly this."""


@dataclass
class Site:
    """A terminal's state directory, configuration and planted secrets."""

    root: Path
    state: Path
    config: Path
    bin: Path
    socket: Path
    api_token: str
    sync_token: str
    device_key: bytes
    vault_key: bytes
    signing_pem: bytes
    log_lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def journalctl_args(self) -> list[str]:
        return (self.bin / "args").read_text().splitlines()

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def write_log_lines(self) -> None:
        lines = "".join(json.dumps(entry) + "\n" for entry in self.log_lines)
        (self.bin / "lines").write_text(lines)

    def bundle(self, out: Path, *args: str, env: dict[str, str] | None = None) -> Any:
        return posedge(
            "--state-dir", str(self.state), "--config", str(self.config), "--json",
            "support-bundle", "--output", str(out), *args, env=env or self.env(),
        )  # fmt: skip

    def secret_texts(self) -> dict[str, str]:
        """Every planted secret and card number as text: none may appear in a bundle."""
        seed = self.signing_pem.split(b"\n")[1]
        return {
            "api token": self.api_token,
            "sync token": self.sync_token,
            "url password": URL_PASSWORD,
            "visa": PAN_VISA,
            "mastercard": PAN_MASTERCARD,
            "visa grouped": "4111 1111 1111 1111",
            "mastercard grouped": "5555 5555 5555 4444",
            "track 2 body": TRACK2[1:-1],
            "track 1 body": TRACK1[1:-1],
            "device key hex": self.device_key.hex(),
            "vault key hex": self.vault_key.hex(),
            "device key base64": base64.b64encode(self.device_key).decode(),
            "vault key base64": base64.b64encode(self.vault_key).decode(),
            "signing key pem line": seed.decode(),
        }


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_site(tmp_path: Path, *, api_socket: Path | None = None) -> Site:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with Journal.open(state) as jr:
        fill(jr, 5)
    api_token = secrets.token_urlsafe(32)
    sync_token = secrets.token_hex(24)
    vault_key = secrets.token_bytes(32)
    signing_pem = key_pem(new_device_key())
    _write_secret(state / "api-token", api_token.encode() + b"\n")
    _write_secret(state / "sync-token", sync_token.encode() + b"\n")
    _write_secret(state / "vault.key", vault_key)
    _write_secret(state / "signing.key", signing_pem)
    (state / "devices").mkdir(mode=0o750)
    (state / "devices" / "printer.stats.json").write_text(
        json.dumps(
            {
                "device": f"printer at {PRINTER_IP}, last card {PAN_VISA} {TRACK2}",
                "counters": {"GoodCardReadCount": 5, "Oops": int(PAN_MASTERCARD)},
                "online_s": 12.5,
            }
        )
    )
    (state / "dumps").mkdir(mode=0o700)
    (state / "dumps" / "devices-20261207T000000.000Z.json").write_text(
        json.dumps(
            {
                "host": socket.gethostname(),
                "reader": {"url": f"socket://{READER_HOST}:9101", "last_error": TRACK1},
            }
        )
    )
    sock = api_socket or Path(tempfile.mkdtemp(prefix="pb-", dir="/tmp")) / "api.sock"
    config = tmp_path / "posedge.toml"
    config.write_text(
        f"""
[terminal]
name = "lane four {PAN_VISA} {api_token}"
[sync]
url = "https://ops:{URL_PASSWORD}@{BACKOFFICE}:8443"
token_file = "{state / "sync-token"}"
connect_timeout = "0.2s"
read_timeout = "0.5s"
[printer]
url = "socket://{PRINTER_IP}:9100"
[reader]
url = "socket://{READER_HOST}:9101"
[sales]
merchant_name = "Shop 5555 5555 5555 4444 {EMAIL}"
[api]
socket = "{sock}"
"""
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    journalctl = bin_dir / "journalctl"
    journalctl.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {bin_dir / 'args'}\ncat {bin_dir / 'lines'}\n"
    )
    journalctl.chmod(0o755)
    site = Site(
        root=tmp_path, state=state, config=config, bin=bin_dir, socket=sock,
        api_token=api_token, sync_token=sync_token,
        device_key=(state / "device.key").read_bytes(), vault_key=vault_key,
        signing_pem=signing_pem,
    )  # fmt: skip
    arabic = PAN_MASTERCARD.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    site.log_lines = [
        {"MESSAGE": CLEAN_LINE, "__CURSOR": "s=1", "_HOSTNAME": socket.gethostname()},
        {"MESSAGE": f"swiped {PAN_VISA} raw {TRACK2}", "_CMDLINE": "posedge run"},
        {"MESSAGE": f"token {api_token} and {sync_token}", "PRIORITY": "3"},
        {"MESSAGE": list(f"bytes {PAN_MASTERCARD} {TRACK1}".encode()), "_PID": "42"},
        {"MESSAGE": f"other digits {arabic}", "_MACHINE_ID": "0123456789abcdef" * 2},
    ]
    site.write_log_lines()
    return site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    yield made
    shutil.rmtree(made.socket.parent, ignore_errors=True)  # the short socket directory


# ---- the daemon's status over the real till API socket -----------------------------------
class PlantedEngine(FakeEngine):
    """A status that carries what a buggy daemon might put there."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self.site = site

    def status(self) -> dict[str, Any]:
        return {
            "accepting": True,
            "devices": {"printer": {"url": f"socket://{PRINTER_IP}:9100", "error": PAN_VISA}},
            "backoffice": f"https://{BACKOFFICE}:8443",
            "note": f"sync token {self.site.sync_token}",
            "counter": int(PAN_MASTERCARD),
        }


class StatusServer:
    """The real ApiServer (uvicorn) on the site's socket, in a background loop."""

    def __init__(self, site: Site) -> None:
        app = create_app(PlantedEngine(site), token=site.api_token, currencies=["EUR"])
        self.server = ApiServer(app, site.socket)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> StatusServer:
        self.thread.start()
        self._run(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


# ---- reading a bundle back ---------------------------------------------------------------
@dataclass
class Bundle:
    path: Path
    names: list[str]
    members: dict[str, bytes]
    manifest: dict[str, Any]
    mapping: dict[str, str]
    stream: bytes
    """The whole uncompressed tar stream (member headers included)."""

    def json(self, name: str) -> Any:
        return json.loads(self.members[name])

    def text(self) -> str:
        return "\n".join(data.decode() for data in self.members.values())


def read_bundle(path: Path) -> Bundle:
    import gzip

    with tarfile.open(path, "r:gz") as tar:
        infos = tar.getmembers()
        members = {}
        for info in infos:
            handle = tar.extractfile(info)
            assert handle is not None
            members[info.name] = handle.read()
    mapping_file = path.with_name(path.name.removesuffix(".tar.gz") + ".mapping.json")
    mapping = json.loads(mapping_file.read_text())
    manifest = json.loads(members["manifest.json"])
    stream = gzip.decompress(path.read_bytes())
    return Bundle(path, [i.name for i in infos], members, manifest, mapping["placeholders"], stream)


def encodings(text: str) -> dict[str, bytes]:
    """The forms a leaked value could take in a bundle member."""
    raw = text.encode()
    return {
        "raw": raw,
        "JSON-escaped": json.dumps(text)[1:-1].encode(),
        "\\u-escaped": "".join(f"\\u{ord(c):04x}" for c in text).encode(),
        "hex": raw.hex().encode(),
        "base64": base64.b64encode(raw).rstrip(b"=")[:-2],
    }


def assert_nothing_leaks(bundle: Bundle, site: Site) -> None:
    haystacks = {"tar stream": bundle.stream, **bundle.members}
    for label, secret in site.secret_texts().items():
        for form, needle in encodings(secret).items():
            for where, data in haystacks.items():
                found = needle in data or needle.lower() in data.lower()
                assert not found, f"{label} ({form}) leaked into {where}"


# ---- tests -------------------------------------------------------------------------------
def test_bundle_holds_allowlisted_content_and_nothing_planted_leaks(site: Site) -> None:
    out = site.root / "out" / "bundle.tar.gz"
    out.parent.mkdir()
    with StatusServer(site):
        done = site.bundle(out, "--log-lines", "40", "--since", "2h")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["output"] == str(out)
    bundle = read_bundle(out)

    # files: 0600, manifest first, every member listed with its size and sha256
    for path in (out, Path(summary["mapping"])):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(summary["mapping"]).parent == out.parent
    assert bundle.names[0] == "manifest.json"
    listed = {m["name"]: m for m in bundle.manifest["members"]}
    assert set(listed) == set(bundle.names[1:])
    for name, entry in listed.items():
        data = bundle.members[name]
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert bundle.manifest["format_version"] == 1 and bundle.manifest["agent_version"]
    assert {
        "config.json", "doctor.json", "journal/stats.json", "journal/verify.json",
        "devices/printer.stats.json", "dumps/devices-20261207T000000.000Z.json",
        "logs/journal.jsonl", "daemon/status.json", "system.json",
    } <= set(listed)  # fmt: skip
    for name in bundle.names:  # never the journal, keys, tokens, enrolment or vault
        assert not any(bad in name for bad in ("journal.db", ".key", "token", "enrol", "vault"))
    left = {entry["item"]: entry["reason"] for entry in bundle.manifest["left_out"]}
    assert "never" in left["state dir: journal.db"] and "never" in left["state dir: device.key"]
    assert "never" in left["state dir: api-token"] and "never" in left["state dir: signing.key"]

    assert_nothing_leaks(bundle, site)

    # scrubbed, not dropped: the masked card number, the markers, the rest of the line
    logs = [json.loads(line) for line in bundle.members["logs/journal.jsonl"].splitlines()]
    messages = [entry["MESSAGE"] for entry in logs]
    assert "swiped 411111******1111 raw [track data removed]" in messages
    assert "token [secret removed] and [secret removed]" in messages
    assert "bytes 555555******4444 [track data removed]" in messages
    assert all(set(entry) <= {"MESSAGE", "PRIORITY", "_PID", "_HOSTNAME"} for entry in logs)
    args = site.journalctl_args
    assert args[:7] == ["-u", "posedge", "--no-pager", "-n", "40", "-o", "json"]
    assert args[7] == "--since" and args[8].endswith(" UTC")

    config = bundle.json("config.json")
    assert config["valid"] is True
    effective = config["effective"]
    assert effective["sync"]["token_file"] == str(site.state / "sync-token")  # paths kept
    name = "lane four 411111******1111 [secret-looking value removed]"
    assert effective["terminal"]["name"] == name
    assert "credentials-removed@" in effective["sync"]["url"]

    stats = bundle.json("devices/printer.stats.json")
    assert stats["counters"]["Oops"] == "555555******4444"
    status = bundle.json("daemon/status.json")
    assert status["note"] == "sync token [secret removed]"
    assert status["devices"]["printer"]["error"] == "411111******1111"

    doctor = bundle.json("doctor.json")  # posedge doctor's own report
    assert "journal.verify" in {check["name"] for check in doctor["report"]["checks"]}
    assert bundle.json("journal/verify.json")["ok"] is True
    assert bundle.json("journal/stats.json")["events"] == 5


def test_hosts_and_addresses_are_replaced_consistently_and_the_mapping_round_trips(
    site: Site,
) -> None:
    out = site.root / "bundle.tar.gz"
    with StatusServer(site):
        done = site.bundle(out)
    assert done.returncode == 0, done.stderr
    bundle = read_bundle(out)
    text = bundle.text()
    for original in (BACKOFFICE, READER_HOST, PRINTER_IP, IPV6, EMAIL):
        assert original not in text, f"{original} was not obfuscated"
    by_original = {original: key for key, original in bundle.mapping.items()}
    host, ip, email = by_original[BACKOFFICE], by_original[PRINTER_IP], by_original[EMAIL]
    assert PLACEHOLDER.fullmatch(host) and host.startswith("host-")
    assert ip.startswith("ip-") and email.startswith("email-")
    # the same placeholder in every file the original appeared in
    config = bundle.json("config.json")["effective"]
    status = bundle.json("daemon/status.json")
    stats = bundle.json("devices/printer.stats.json")
    assert config["sync"]["url"] == f"https://credentials-removed@{host}:8443"
    assert config["printer"]["url"] == f"socket://{ip}:9100"
    assert status["backoffice"] == f"https://{host}:8443"
    assert status["devices"]["printer"]["url"] == f"socket://{ip}:9100"
    assert stats["device"].startswith(f"printer at {ip},")
    assert config["sales"]["merchant_name"].endswith(email)
    own = by_original[socket.gethostname()]
    assert bundle.json("system.json")["hostname"] == own
    assert bundle.json("dumps/devices-20261207T000000.000Z.json")["host"] == own
    # loopback and device URLs without a host stay as they are
    logs = [json.loads(line) for line in bundle.members["logs/journal.jsonl"].splitlines()]
    clean = next(entry for entry in logs if entry["MESSAGE"].startswith("sync to"))
    assert clean["_HOSTNAME"] == own
    # the mapping puts the originals back, exactly
    assert deobfuscate(clean["MESSAGE"], bundle.mapping) == CLEAN_LINE
    reply = site.root / "reply.txt"
    reply.write_text(f"Vendor: {host} refused {ip}; ask {email}. Also host-999.\n")
    mapping_file = out.with_name("bundle.mapping.json")
    done = posedge("support-bundle", "--deobfuscate", str(reply), "--mapping", str(mapping_file))
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == f"Vendor: {BACKOFFICE} refused {PRINTER_IP}; ask {EMAIL}. Also host-999.\n"
    )


@pytest.mark.parametrize(
    ("form", "leak"),
    [
        ("device.key (hex)", lambda s: s.device_key.hex()),
        ("device.key (hex)", lambda s: s.device_key.hex().upper()),
        ("vault.key (base64)", lambda s: base64.b64encode(b"x" + s.vault_key).decode()),
        # (base64 and URL-safe base64 are the same text when it has no +/ or -_: either)
        ("vault.key (base64", lambda s: base64.urlsafe_b64encode(b"ab" + s.vault_key).decode()),
        ("api-token (base64)", lambda s: base64.b64encode(s.api_token.encode()).decode()),
        ("signing.key (base64)", lambda s: s.signing_pem.decode().split("\n")[1]),
    ],
    ids=["key-hex", "key-HEX", "vault-b64-shift1", "vault-b64url-shift2", "token-b64", "pem"],
)
def test_an_encoded_secret_in_a_log_line_refuses_the_bundle_and_leaves_nothing(
    site: Site, form: str, leak: Any
) -> None:
    secret_text = leak(site)
    site.log_lines.append({"MESSAGE": f"debug dump: {secret_text} end"})
    site.write_log_lines()
    out_dir = site.root / "out"
    out_dir.mkdir()
    done = site.bundle(out_dir / "bundle.tar.gz")
    assert done.returncode == 3, done.stderr
    message = json.loads(done.stdout)["error"]["message"] if done.stdout else done.stderr
    assert "refused" in message and "logs/journal.jsonl" in message and form in message
    assert secret_text not in done.stdout + done.stderr
    assert list(out_dir.iterdir()) == []  # no bundle, no mapping, no temporary file


def test_works_without_a_daemon_or_journalctl_and_says_what_it_left_out(site: Site) -> None:
    empty_path = site.root / "nothing-on-path"
    empty_path.mkdir()
    out = site.root / "bundle.tar.gz"
    done = site.bundle(out, env={"PATH": str(empty_path)})
    assert done.returncode == 0, done.stderr
    bundle = read_bundle(out)
    left = {entry["item"]: entry["reason"] for entry in bundle.manifest["left_out"]}
    assert left["logs"].startswith("journalctl not found")
    assert left["daemon status"].startswith("the daemon is not running")
    assert "logs/journal.jsonl" not in bundle.members
    assert "daemon/status.json" not in bundle.members
    assert_nothing_leaks(bundle, site)


def test_a_failing_journalctl_is_recorded_not_fatal(site: Site) -> None:
    (site.bin / "journalctl").write_text("#!/bin/sh\necho 'Failed to open journal' >&2\nexit 1\n")
    out = site.root / "bundle.tar.gz"
    done = site.bundle(out)
    assert done.returncode == 0, done.stderr
    left = {e["item"]: e["reason"] for e in read_bundle(out).manifest["left_out"]}
    assert left["logs"] == "journalctl failed (exit 1): Failed to open journal"


def test_an_invalid_default_configuration_is_reported_inside_the_bundle(site: Site) -> None:
    """Not named with --config (here $POSEDGE_CONFIG; on a terminal /etc/posedge/posedge.toml):
    a bundle is most wanted when the configuration is broken, so its error goes in."""
    site.config.write_text(f'[printer]\nbaudrate = 1234\n[terminal]\nname = "{PAN_VISA}"\n')
    out = site.root / "bundle.tar.gz"
    done = posedge(
        "--state-dir", str(site.state), "--json", "support-bundle", "--output", str(out),
        env={**site.env(), "POSEDGE_CONFIG": str(site.config)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bundle = read_bundle(out)
    config = bundle.json("config.json")
    assert config["valid"] is False and "printer.baudrate = 1234" in config["error"]
    left = {entry["item"]: entry["reason"] for entry in bundle.manifest["left_out"]}
    assert "invalid" in left["configuration"]
    assert_nothing_leaks(bundle, site)


def test_a_bad_config_named_with_the_option_is_a_usage_error(site: Site) -> None:
    """Like every command (issue 13 item 8): a --config named explicitly must be valid."""
    site.config.write_text("[printer]\nbaudrate = 1234\n")
    done = site.bundle(site.root / "b.tar.gz")
    assert done.returncode == 2
    assert "printer.baudrate = 1234" in json.loads(done.stdout)["error"]["message"]
    assert not (site.root / "b.tar.gz").exists()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("missing/dir/b.tar.gz", "does not exist"),
        ("a-file/b.tar.gz", "does not exist"),
        ("/proc/posedge-bundle.tar.gz", "cannot write"),
        ("existing.tar.gz", "already exists"),
        ("existing-map.tar.gz", "already exists"),
    ],
)
def test_an_unusable_output_is_a_usage_error_and_touches_nothing(
    site: Site, where: str, expected: str
) -> None:
    (site.root / "a-file").write_text("x")
    (site.root / "existing.tar.gz").write_text("keep me")
    (site.root / "existing-map.mapping.json").write_text("keep me too")
    before = sorted(p.name for p in site.root.iterdir())
    done = site.bundle(site.root / where if not where.startswith("/") else Path(where))
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == 2 and expected in error["message"]
    assert sorted(p.name for p in site.root.iterdir()) == before
    assert (site.root / "existing.tar.gz").read_text() == "keep me"
    assert (site.root / "existing-map.mapping.json").read_text() == "keep me too"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--since", "soon"], "--since"),
        (["--log-lines", "0"], "--log-lines"),
        (["--mapping", "{config}"], "--deobfuscate and --mapping go together"),
        (["--deobfuscate", "{config}", "--mapping", "{config}"], "not a support bundle mapping"),
    ],
)
def test_bad_options_are_usage_errors(site: Site, args: list[str], expected: str) -> None:
    argv = [a.format(config=site.config) for a in args]
    done = site.bundle(site.root / "b.tar.gz", *argv)
    assert done.returncode == 2
    assert expected in json.loads(done.stdout)["error"]["message"]
    assert not (site.root / "b.tar.gz").exists()


def test_a_missing_config_file_is_a_usage_error(site: Site) -> None:
    site.config.unlink()
    done = site.bundle(site.root / "b.tar.gz")
    assert done.returncode == 2
    assert "does not exist" in json.loads(done.stdout)["error"]["message"]
    assert not (site.root / "b.tar.gz").exists()


def test_default_output_is_a_timestamped_file_in_the_working_directory(site: Site) -> None:
    work = site.root / "work"
    work.mkdir()
    done = posedge(
        "--state-dir", str(site.state), "--config", str(site.config), "support-bundle",
        env=site.env(), cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in work.iterdir())
    assert len(names) == 2 and names[0].startswith("posedge-support-")
    assert names[0].endswith(".mapping.json") and names[1].endswith(".tar.gz")
    assert "support bundle written:" in done.stdout and "do not send it" in done.stdout
