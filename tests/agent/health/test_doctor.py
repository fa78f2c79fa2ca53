"""``posedge doctor`` without a daemon: the real console script in a subprocess, simulated
devices (``sim://`` with faults), a real journal file, a real back office over loopback.

What must hold: one line per check with ``✓ ! ✗ -`` and a ``fix:`` under every non-OK one;
exit 0 / 3 / 4 / 2 as documented; ``--json`` is one document whose exit code is the
process's; ``--nagios`` one plugin line with Nagios codes; nothing stored is changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.config import Config
from posedge.agent.health.doctor import DOCTOR, DaemonProbe
from posedge.agent.health.model import HealthContext
from posedge.agent.journal import Journal
from posedge.backoffice.app import BackofficeConfig
from posedge.simulator.backoffice import BackofficeServer

POSEDGE = Path(sys.executable).parent / "posedge"
TERMINAL = "doctor-lane-1"
GOOD_TOKEN = "doctor-good-token-0123456789"
SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}


def doctor(state_dir: Path, config: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(POSEDGE), "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    return subprocess.run(
        [*argv, "doctor", *args], capture_output=True, text=True, env=env, timeout=60
    )


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def devices_config(tmp_path: Path, printer_faults: str = "") -> Path:
    query = f"?faults={printer_faults}" if printer_faults else ""
    return write_config(
        tmp_path / "posedge.toml",
        f'[printer]\nurl = "sim://printer{query}"\npoll_timeout = "300ms"\n'
        '[reader]\nurl = "sim://reader"\nack_timeout = "200ms"\n',
    )


def check_lines(stdout: str) -> dict[str, tuple[str, str, str | None]]:
    """name → (symbol, summary, fix) from the human output."""
    found: dict[str, tuple[str, str, str | None]] = {}
    last = None
    for line in stdout.splitlines():
        if line.startswith("  fix: ") and last is not None:
            symbol, summary, _ = found[last]
            found[last] = (symbol, summary, line.removeprefix("  fix: "))
        elif line[:1] in SYMBOLS.values() and line[1:2] == " ":
            name, _, summary = line[2:].partition(" ")
            found[name] = (line[0], summary.strip(), None)
            last = name
    return found


# ---- devices, summary line, exit 3 ---------------------------------------------------------
def test_paper_end_on_a_simulated_printer_is_a_failure_with_its_fix(
    tmp_path: Path, state_dir: Path
) -> None:
    done = doctor(state_dir, devices_config(tmp_path, "paper_out"), "printer", "reader")
    assert done.returncode == 3, done.stderr
    lines = check_lines(done.stdout)
    symbol, summary, fix = lines["printer.paper"]
    assert symbol == "✗" and "paper" in summary
    assert fix and "paper roll" in fix
    assert lines["printer.online"][0] == "✓"
    assert lines["reader.present"][0] == "✓"
    for name, (symbol, _, fix) in lines.items():  # a fix under every non-OK line, none else
        assert (fix is not None) == (symbol in "!✗"), name
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{sum(s == '✓' for s, _, _ in lines.values())} ok, 0 warnings, ")
    assert "1 failed" in last and "no daemon" in last


def test_a_healthy_printer_passes_and_the_doctor_exits_0(tmp_path: Path, state_dir: Path) -> None:
    done = doctor(state_dir, devices_config(tmp_path), "printer")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {symbol for symbol, _, _ in check_lines(done.stdout).values()} == {"✓"}


def test_without_a_daemon_daemon_running_fails_and_watchdog_is_skipped(
    tmp_path: Path, state_dir: Path
) -> None:
    done = doctor(state_dir, devices_config(tmp_path), "daemon")
    assert done.returncode == 3
    lines = check_lines(done.stdout)
    assert lines["daemon.running"][0] == "✗" and "no daemon" in lines["daemon.running"][1]
    assert "systemctl start posedge" in (lines["daemon.running"][2] or "")
    assert lines["daemon.watchdog"][0] == "-"


# ---- --json ---------------------------------------------------------------------------------
def test_json_is_one_document_with_checks_summary_and_the_exit_code(
    tmp_path: Path, state_dir: Path
) -> None:
    done = doctor(state_dir, devices_config(tmp_path, "paper_near_end"), "--json")
    doc = json.loads(done.stdout)  # exactly one document, nothing else on stdout
    assert set(doc) == {"mode", "daemon_pid", "checks", "summary", "exit_code"}
    assert doc["mode"] == "local" and doc["daemon_pid"] is None
    assert doc["exit_code"] == done.returncode == 3  # daemon.running fails without a daemon
    names = [c["name"] for c in doc["checks"]]
    assert names[: len(DOCTOR.names())] == DOCTOR.names()
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "summary", "fix", "value", "details", "source"}
        assert check["status"] in SYMBOLS
        assert (check["fix"] is not None) == (check["status"] in ("warn", "fail"))
        assert check["source"] in ("doctor", "local")
    statuses = [c["status"] for c in doc["checks"]]
    assert doc["summary"] == {s: statuses.count(s) for s in SYMBOLS}
    paper = next(c for c in doc["checks"] if c["name"] == "printer.paper")
    assert paper["status"] == "warn" and paper["fix"]


# ---- --nagios -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("faults", "code", "state"),
    [("", 0, "OK"), ("paper_near_end", 1, "WARNING"), ("paper_out", 2, "CRITICAL")],
)
def test_nagios_prints_one_plugin_line_with_nagios_exit_codes(
    tmp_path: Path, state_dir: Path, faults: str, code: int, state: str
) -> None:
    done = doctor(state_dir, devices_config(tmp_path, faults), "--nagios", "printer")
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    text, _, perf = lines[0].partition(" | ")
    assert text.startswith(f"POSEDGE {state} - ")
    counts = dict(item.split("=") for item in perf.split())
    assert set(counts) == {"ok", "warn", "crit"}
    assert int(counts["warn"]) == (code == 1) and int(counts["crit"]) == (code == 2)
    if code == 2:
        assert "1 failed: printer.paper" in text
    if code == 1:
        assert "1 warning: printer.paper" in text


def test_nagios_is_unknown_when_the_doctor_cannot_run(tmp_path: Path, state_dir: Path) -> None:
    done = doctor(state_dir, None, "--nagios", "no.such.check")
    assert done.returncode == 3
    assert done.stdout.startswith("POSEDGE UNKNOWN - no check named 'no.such.check'")
    missing = doctor(state_dir, tmp_path / "missing.toml", "--nagios")
    assert missing.returncode == 3 and missing.stdout.startswith("POSEDGE UNKNOWN - ")


# ---- --list-checks, names -------------------------------------------------------------------
def test_list_checks_names_and_describes_every_check(state_dir: Path) -> None:
    done = doctor(state_dir, None, "--list-checks")
    assert done.returncode == 0
    listed = dict(line.split(None, 1) for line in done.stdout.splitlines())
    for spec in DOCTOR.specs():
        assert listed[spec.name] == spec.description
    assert "printer.paper" in listed and "journal.verify" in listed
    doc = json.loads(doctor(state_dir, None, "--json", "--list-checks", "daemon").stdout)
    assert [c["name"] for c in doc["checks"]] == ["daemon.running", "daemon.watchdog"]
    assert not (state_dir / "journal.db").exists()


def test_an_unknown_check_name_is_exit_2_listing_the_known_ones(state_dir: Path) -> None:
    done = doctor(state_dir, None, "printer.paper", "printer.papr")
    assert done.returncode == 2
    assert "no check named 'printer.papr'" in done.stderr
    assert "known checks: daemon.running, daemon.watchdog" in done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in state_dir.iterdir()) == []  # nothing was opened or made


def test_nagios_and_json_together_are_a_usage_error(state_dir: Path) -> None:
    done = doctor(state_dir, None, "--nagios", "--json")
    assert done.returncode == 2 and "choose one" in done.stderr


# ---- the journal ----------------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_journal_verify_passes_then_fails_on_a_modified_event_and_changes_nothing(
    state_dir: Path,
) -> None:
    with Journal.open(state_dir) as journal:
        for number in range(20):
            journal.append("test.event", {"n": number})
    done = doctor(state_dir, None, "journal.verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 events verified, head seq 20" in done.stdout
    db = state_dir / "journal.db"
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("""UPDATE events SET payload = '{"n":99}' WHERE seq = 7""")
    conn.commit()
    conn.close()
    before = _digest(db)
    done = doctor(state_dir, None, "--json", "journal.verify", "journal.integrity")
    assert done.returncode == 3
    check, integrity = json.loads(done.stdout)["checks"]
    assert check["status"] == "fail" and "seq 7" in check["summary"]
    assert "do not delete" in check["fix"]
    # journal.integrity reports that same walk instead of walking the chain again
    assert integrity["status"] == "fail" and integrity["fix"] == check["fix"]
    assert integrity["summary"] == f"verified just now by journal.verify: {check['summary']}"
    assert _digest(db) == before


# ---- the back office ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backoffice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackofficeServer]:
    config = BackofficeConfig(tokens={TERMINAL: GOOD_TOKEN})
    db = tmp_path_factory.mktemp("bo") / "bo.sqlite3"
    server = BackofficeServer(db, config=config).start()
    try:
        yield server
    finally:
        server.close()


def backoffice_config(tmp_path: Path, url: str, token: str) -> Path:
    token_file = tmp_path / "sync-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return write_config(
        tmp_path / "posedge.toml",
        f'[terminal]\nid = "{TERMINAL}"\n[sync]\nurl = "{url}"\ntoken_file = "{token_file}"\n'
        'connect_timeout = "2s"\n',
    )


def _backoffice_check(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    (check,) = json.loads(done.stdout)["checks"]
    assert check["name"] == "backoffice.link"
    return dict(check)


def test_backoffice_reachable_and_token_accepted(
    tmp_path: Path, state_dir: Path, backoffice: BackofficeServer
) -> None:
    config = backoffice_config(tmp_path, backoffice.url, GOOD_TOKEN)
    done = doctor(state_dir, config, "--json", "backoffice.link")
    check = _backoffice_check(done)
    assert done.returncode == 0, check
    assert check["status"] == "ok" and "accepted" in check["summary"]
    assert check["details"]["terminal"] == TERMINAL
    assert GOOD_TOKEN not in done.stdout + done.stderr


def test_a_refused_token_is_a_failure_exit_3_not_unreachable(
    tmp_path: Path, state_dir: Path, backoffice: BackofficeServer
) -> None:
    config = backoffice_config(tmp_path, backoffice.url, "an-old-token-0123456789")
    done = doctor(state_dir, config, "--json", "backoffice.link")
    check = _backoffice_check(done)
    assert done.returncode == 3, check
    assert check["status"] == "fail" and "401" in check["summary"]
    assert "token" in check["fix"]
    assert "an-old-token" not in done.stdout + done.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_backoffice_down_is_exit_4_naming_the_tcp_layer(tmp_path: Path, state_dir: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    done = doctor(state_dir, backoffice_config(tmp_path, url, GOOD_TOKEN), "backoffice.link")
    assert done.returncode == 4, done.stdout + done.stderr
    symbol, summary, fix = check_lines(done.stdout)["backoffice.link"]
    assert symbol == "✗" and summary.startswith("TCP: cannot connect to 127.0.0.1:")
    assert fix and "listens" in fix


def test_a_tls_failure_is_named_as_tls(
    tmp_path: Path, state_dir: Path, backoffice: BackofficeServer
) -> None:
    plain = backoffice.url.replace("http://", "https://")  # HTTPS to a plain-HTTP port
    done = doctor(state_dir, backoffice_config(tmp_path, plain, GOOD_TOKEN), "backoffice.link")
    assert done.returncode == 4, done.stdout + done.stderr
    symbol, summary, fix = check_lines(done.stdout)["backoffice.link"]
    assert symbol == "✗" and summary.startswith("TLS: the handshake with 127.0.0.1 failed")
    assert fix and "HTTPS" in fix


def test_a_name_that_does_not_resolve_is_named_as_dns(tmp_path: Path, state_dir: Path) -> None:
    url = "https://backoffice.posedge-test.invalid"  # .invalid never resolves (RFC 2606)
    done = doctor(state_dir, backoffice_config(tmp_path, url, GOOD_TOKEN), "backoffice.link")
    assert done.returncode == 4, done.stdout + done.stderr
    symbol, summary, _ = check_lines(done.stdout)["backoffice.link"]
    assert symbol == "✗"
    assert summary.startswith("DNS: cannot resolve backoffice.posedge-test.invalid")


def test_unreachable_wins_over_failed(tmp_path: Path, state_dir: Path) -> None:
    """A failed device check and an unreachable back office: exit 4 (fix the peer first)."""
    config = backoffice_config(tmp_path, f"http://127.0.0.1:{_closed_port()}", GOOD_TOKEN)
    config.write_text(config.read_text() + '[printer]\nurl = "sim://printer?faults=paper_out"\n')
    done = doctor(state_dir, config, "--json", "backoffice", "printer.paper")
    doc = json.loads(done.stdout)
    assert [c["status"] for c in doc["checks"]] == ["fail", "fail"]
    assert doc["exit_code"] == done.returncode == 4


def test_a_missing_config_file_is_exit_2_and_touches_nothing(
    tmp_path: Path, state_dir: Path
) -> None:
    done = doctor(state_dir, tmp_path / "nope.toml")
    assert done.returncode == 2
    assert "nope.toml" in done.stderr
    assert list(state_dir.iterdir()) == []


# ---- daemon.watchdog's verdicts (from the daemon's /v1/status "daemon" block) ----------------
def _watchdog_verdict(watchdog: dict[str, Any] | None) -> tuple[str, str]:
    block = {"pid": 4242, "uptime_s": 60.0}
    if watchdog is not None:
        block["watchdog"] = {"tick_s": 1.0, "systemd": True} | watchdog
    ctx = HealthContext(config=Config(), state_dir=Path("/nonexistent"), now=0.0)
    ctx.extra["daemon"] = DaemonProbe(4242, status={"daemon": block})
    (result,) = DOCTOR.run(ctx, ["daemon.watchdog"])
    return result.status.value, result.summary


@pytest.mark.parametrize(
    ("watchdog", "status", "words"),
    [
        ({"last_check_age_s": 0.3, "healthy": True, "stuck": []}, "ok", "fresh"),
        ({"last_check_age_s": 9.0, "healthy": True, "stuck": []}, "fail", "event loop is stuck"),
        ({"last_check_age_s": None, "healthy": None, "stuck": []}, "fail", "last ran never"),
        (
            {"last_check_age_s": 0.2, "healthy": False, "stuck": ["sync-upload"],
             "reason": "sync-upload stuck"},
            "fail",
            "sync-upload stuck",
        ),
        (
            {"last_check_age_s": 0.2, "healthy": False, "stuck": [], "loop_lag_s": 1.6,
             "reason": "event loop blocked 1.6s"},
            "warn",
            "ran 1.6s late",
        ),
        ({"last_check_age_s": 0.2, "healthy": False, "reason": "sales stuck"}, "fail", "sales"),
        (None, "warn", "does not report its watchdog"),
    ],
)  # fmt: skip
def test_watchdog_verdicts(watchdog: dict[str, Any] | None, status: str, words: str) -> None:
    got, summary = _watchdog_verdict(watchdog)
    assert got == status and words in summary, summary


def test_a_lock_this_user_may_not_read_is_not_mistaken_for_no_daemon(tmp_path: Path) -> None:
    """Another user (nobody) cannot read the root-owned 0600 lock: that is exit 2 saying so,
    never "no daemon runs"."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run a probe as another user")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    (state / "daemon.lock").write_text("1\n")
    (state / "daemon.lock").chmod(0o600)
    probe = (
        "import sys; from pathlib import Path\n"
        "from posedge.agent.errors import ConfigError\n"
        "from posedge.agent.health.daemonlink import daemon_pid\n"
        "try:\n    print(daemon_pid(Path(sys.argv[1])))\n"
        "except ConfigError as exc:\n    print(exc.exit_code, exc)\n"
    )
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         probe, str(state)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.startswith("2 cannot tell whether a posedge daemon runs"), done
    assert "permission denied" in done.stdout
