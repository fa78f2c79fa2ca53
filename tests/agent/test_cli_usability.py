"""Usability fixes found by a new user (issue 13 item 8), each through the real ``posedge``.

- ``--help`` is quick: no heavy module is imported for the root or a command's help
  (checked in ``sys.modules`` of a subprocess, not timed; benchmarks/bench_cli_startup.py
  times it), and the lazy registry stays easy to extend;
- global options after the subcommand; a ``--config`` named explicitly is checked by every
  command, read-only ones included;
- with ``--json`` an error is a JSON document on stdout too;
- exit codes: 1 only for internal errors (a table over fresh and missing state dirs, bad
  URLs and down back offices);
- Ctrl-C in ``sync now`` (a real SIGINT against a slow back office) says what was kept;
- ``sync status`` tells a current error from an old one;
- ``backoffice report`` fits the terminal and never cuts a terminal id;
- the back office logs a client that went away at info;
- the demo's narration follows what happened; the simulator banner says how to swipe.

Reprinting every copy: tests/agent/sales/test_reprint_copies.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from posedge.agent.cli import cli
from posedge.agent.cli.lazy import LazyCommand, LazyGroup
from posedge.agent.journal import Journal
from posedge.simulator.backoffice import BackofficeServer

from .journal.helpers import POSEDGE_EXE, fill, posedge

HEAVY = ("pydantic", "starlette", "uvicorn", "httpx", "psycopg", "cryptography")
DISCARD = "http://127.0.0.1:9"  # nothing listens: connection refused
DEADLINE_S = 30.0


def until(condition: Any, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    server = BackofficeServer(tmp_path / "bo.sqlite3").start()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------- quick --help
HELP_PATHS = [
    (), ("journal",), ("journal", "verify"), ("sync",), ("sync", "now"), ("sync", "status"),
    ("run",), ("enroll",), ("token",), ("token", "rotate"), ("devices",), ("devices", "check"),
    ("test",), ("test", "print"), ("backoffice",), ("backoffice", "report"),
    ("backoffice", "serve"), ("simulate",), ("simulate", "devices"), ("simulate", "card"),
    ("demo",), ("doctor",), ("status",), ("close-day",), ("support-bundle",),
    ("devices", "dump"),
]  # fmt: skip

HEAVY_PROBE = """
import json, sys
from posedge.agent.cli import main
try:
    main(sys.argv[1:] + ["--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
print("HEAVY=" + json.dumps(heavy))
"""


def test_support_bundle_help_defaults_are_the_bundles() -> None:
    """`support-bundle` keeps copies of the bundle's limits so its --help stays light."""
    from posedge.agent.cli import bundle as command
    from posedge.agent.diagnostics import bundle

    assert (command.DEFAULT_LOG_LINES, command.MAX_LOG_LINES) == (
        bundle.DEFAULT_LOG_LINES,
        bundle.MAX_LOG_LINES,
    )


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "posedge")
def test_help_imports_no_heavy_module(path: tuple[str, ...]) -> None:
    code = f"HEAVY = {json.dumps(json.dumps(HEAVY))}\n{HEAVY_PROBE}"
    done = subprocess.run([sys.executable, "-c", code, *path], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage: posedge" in done.stdout
    heavy = json.loads(done.stdout.rsplit("HEAVY=", 1)[1])
    assert heavy == [], f"posedge {' '.join(path)} --help imported {heavy}"


def test_the_root_help_lists_every_command_with_its_own_help() -> None:
    done = posedge("--help")
    assert done.returncode == 0
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", done.stdout.split("Commands:")[1], re.M))
    ctx = click.Context(cli)
    for name, command in cli.load_all(ctx).items():
        own = command.short_help or (command.help or "").split("\n\n")[0].replace("\n", " ")
        assert name in listed
        assert own.startswith(listed[name].removesuffix("...")), (name, listed[name])


def lazy_entries() -> list[tuple[str, LazyGroup, LazyCommand]]:
    """Every lazy reference: the root's (own and plug-ins') and those of lazy subgroups."""
    ctx = click.Context(cli)
    cli.list_commands(ctx)  # loads the plug-ins' references
    found: list[tuple[str, LazyGroup, LazyCommand]] = []
    groups: list[LazyGroup] = [cli]
    while groups:
        group = groups.pop()
        for name, spec in list(group.lazy_commands.items()):
            found.append((name, group, spec))
            command = group.get_command(ctx, name)
            if isinstance(command, LazyGroup):
                groups.append(command)
    return found


@pytest.mark.parametrize("entry", lazy_entries(), ids=lambda e: e[0])
def test_a_lazy_command_is_listed_the_same_before_and_after_it_loads(
    entry: tuple[str, LazyGroup, LazyCommand],
) -> None:
    name, group, spec = entry
    assert spec.short_help.strip()
    listed = click.Command(name, help=spec.short_help).get_short_help_str(60)
    command = spec.load()
    assert command.help, f"{spec.target} has no help of its own"
    assert group.short_help_of(click.Context(group), name, 60) == listed


REGISTER_PROBE = """
import sys
from pathlib import Path
import click
from posedge.agent.cli import cli, main

sys.path.insert(0, sys.argv[1])
Path(sys.argv[1], "latecomer.py").write_text(
    "import click\\n"
    "from posedge.agent.cli.context import pass_cli\\n"
    "@click.command()\\n"
    "@pass_cli\\n"
    "def late(cli):\\n"
    "    '''A command registered by one lazy line.'''\\n"
    "    cli.emit({'state_dir': str(cli.state_dir_option)}, 'late ran')\\n"
)
cli.add_lazy("late", "latecomer:late", "A command registered by one lazy line.")

@click.command()
def eager():
    '''A command added the ordinary way.'''
    click.echo("eager ran")

cli.add_command(eager)
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("args", "expected_rc", "expected_out"),
    [
        (["--help"], 0, "A command registered by one lazy line."),
        (["late", "--state-dir", "{tmp}/sd", "--json"], 0, '"state_dir": "{tmp}/sd"'),
        (["eager", "--json"], 0, "eager ran"),
        (["late", "--config", "{tmp}/missing.toml"], 2, ""),
        (["eager", "--config", "{tmp}/missing.toml"], 2, ""),
    ],
)
def test_a_command_added_by_one_line_gets_the_global_options(
    tmp_path: Path, args: list[str], expected_rc: int, expected_out: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run([sys.executable, "-c", REGISTER_PROBE, str(tmp_path), *argv],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == expected_rc, done.stdout + done.stderr
    assert expected_out.replace("{tmp}", str(tmp_path)) in done.stdout
    if expected_rc == 2:
        assert "missing.toml does not exist" in done.stderr


# ---------------------------------------------------------------- global options after
def test_global_options_after_the_subcommand_mean_the_same(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 5)
    before = posedge("--state-dir", str(state), "--json", "journal", "stats")
    after = posedge("journal", "stats", "--state-dir", str(state), "--json")
    assert before.returncode == after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["head_seq"] == json.loads(before.stdout)["head_seq"] == 5
    mixed = posedge("journal", "--state-dir", str(state), "verify", "--json")
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["ok"] is True


def test_global_options_reach_a_plug_ins_lazily_loaded_subcommand(tmp_path: Path) -> None:
    done = posedge("simulate", "backoffice", "--db", "ftp://x", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["kind"] == "usage"
    done = posedge("simulate", "backoffice", "--db", str(tmp_path / "bo.sqlite3"),
                   "--config", str(tmp_path / "missing.toml"))  # fmt: skip
    assert done.returncode == 2 and "missing.toml does not exist" in done.stderr


# ---------------------------------------------------------------- --config named explicitly
BAD_CONFIGS = {
    "missing": None,
    "not TOML": "sync = [\n",
    "bad value": '[sync]\nbackoff_cap = "forever"\n',
}
READ_ONLY = [
    ("journal", "verify"), ("journal", "stats"), ("journal", "export"), ("sync", "status"),
    ("devices",), ("backoffice", "report", "--db", "{tmp}/bo.sqlite3"),
]  # fmt: skip


@pytest.mark.parametrize("problem", BAD_CONFIGS)
@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_reject_a_missing_or_broken_config(
    tmp_path: Path, command: tuple[str, ...], problem: str
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 3)
    journal_bytes = (state / "journal.db").read_bytes()
    config = tmp_path / "posedge.toml"
    text = BAD_CONFIGS[problem]
    if text is not None:
        config.write_text(text)
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    done = posedge("--state-dir", str(state), "--config", str(config), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(config) in done.stderr or "backoff_cap" in done.stderr, done.stderr
    assert done.stdout == ""
    assert (state / "journal.db").read_bytes() == journal_bytes  # nothing touched


def test_help_still_works_with_a_broken_config(tmp_path: Path) -> None:
    done = posedge("--config", str(tmp_path / "missing.toml"), "journal", "verify", "--help")
    assert done.returncode == 0 and "Usage:" in done.stdout


# ---------------------------------------------------------------- --json errors
@pytest.mark.parametrize(
    ("args", "rc", "kind", "says"),
    [
        (["--json", "jornal"], 2, "usage", "No such command 'jornal'"),
        (["journal", "verify", "--json", "--bogus"], 2, "usage", "No such option '--bogus'"),
        (["--json", "--state-dir", "{tmp}/none", "journal", "stats"], 2, "config", "no journal"),
        (["--json", "--config", "{tmp}/none.toml", "sync", "status"], 2, "config",
         "does not exist"),
        (["--json", "--state-dir", "{tmp}/s", "sync", "now"], 2, "config",
         "no back office configured"),
        (["--json", "backoffice", "report", "--db", "postgresql://u@127.0.0.1:9/x"], 4,
         "unreachable", "cannot reach PostgreSQL"),
    ],
)  # fmt: skip
def test_with_json_an_error_is_a_json_document_on_stdout(
    tmp_path: Path, args: list[str], rc: int, kind: str, says: str
) -> None:
    done = posedge(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == rc, done.stdout + done.stderr
    doc = json.loads(done.stdout)  # exactly one document
    assert set(doc) == {"error"}
    assert doc["error"]["exit_code"] == rc and doc["error"]["kind"] == kind
    assert says in doc["error"]["message"]
    assert says in done.stderr  # a person still reads it on stderr


def test_without_json_an_error_stays_off_stdout(tmp_path: Path) -> None:
    done = posedge("--state-dir", str(tmp_path / "none"), "journal", "stats")
    assert done.returncode == 2 and done.stdout == "" and "no journal" in done.stderr


# ---------------------------------------------------------------- exit codes
@pytest.fixture
def answering_503(tmp_path: Path) -> Iterator[str]:
    server = BackofficeServer(tmp_path / "bo503.sqlite3").start()
    server.faults.add({"kind": "status_503", "retry_after_s": 0.05})
    try:
        yield server.url
    finally:
        server.close()


EXIT_TABLE = [
    # (state dir: fresh = exists and empty, missing, or none given), args, exit code
    ("fresh", ["journal", "verify"], 2),
    ("missing", ["journal", "stats"], 2),
    ("missing", ["journal", "export"], 2),
    ("fresh", ["sync", "status"], 2),
    ("fresh", ["sync", "now"], 2),  # no back office configured
    ("fresh", ["sync", "now", "--backoffice", "ftp://x"], 2),
    ("fresh", ["sync", "now", "--backoffice", "http://example.com"], 2),  # cleartext
    ("fresh", ["sync", "now", "--backoffice", DISCARD], 4),
    ("missing", ["sync", "now", "--backoffice", DISCARD], 4),
    ("fresh", ["sync", "now", "--backoffice", "{503}"], 4),
    ("fresh", ["enroll", "--backoffice", DISCARD, "--code", "ABCDEFGHJK"], 4),
    ("fresh", ["enroll", "--backoffice", "ftp://x", "--code", "ABCDEFGHJK"], 2),
    ("fresh", ["token", "rotate"], 2),  # not enrolled
    ("fresh", ["test", "print", "--printer", "bogus://x"], 2),
    ("fresh", ["devices", "check", "--printer", "bogus://x"], 2),
    ("fresh", ["run", "--backoffice", "ftp://x"], 2),
    ("none", ["backoffice", "report", "--db", "{tmp}/nope.sqlite3"], 2),
    ("none", ["backoffice", "serve", "--db", "ftp://x"], 2),
    ("none", ["backoffice", "openapi", "--write", "{tmp}/no/such/dir/openapi.json"], 2),
    ("fresh", ["simulate", "card"], 4),  # no daemon running there
    ("fresh", ["status"], 4),  # no daemon running there
    ("none", ["no-such-command"], 2),
]


@pytest.mark.parametrize("json_flag", [False, True], ids=["human", "json"])
@pytest.mark.parametrize(("state", "args", "rc"), EXIT_TABLE, ids=lambda v: str(v))
def test_exit_codes(
    tmp_path: Path,
    answering_503: str,
    state: str,
    args: list[str],
    rc: int,
    json_flag: bool,
) -> None:
    base: list[str] = []
    if state != "none":
        directory = tmp_path / "state"
        if state == "fresh":
            directory.mkdir(mode=0o700)
        base = ["--state-dir", str(directory)]
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{503}", answering_503) for a in args]
    done = posedge(*base, *(["--json"] if json_flag else []), *argv)
    assert done.returncode == rc, done.stdout + done.stderr
    assert "internal error" not in done.stderr
    if json_flag:
        doc = json.loads(done.stdout)
        if "error" in doc:
            assert doc["error"]["exit_code"] == rc
        else:  # sync now reports its own document (what was and was not acknowledged)
            assert doc["complete"] is False


def test_a_device_dump_into_a_missing_state_dir_is_a_usage_error(tmp_path: Path) -> None:
    done = posedge("--state-dir", str(tmp_path / "missing"), "devices", "dump")  # a file
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no state directory at" in done.stderr


# ---------------------------------------------------------------- Ctrl-C in sync now
def test_ctrl_c_in_sync_now_says_what_was_kept_and_exits_130(
    tmp_path: Path, backoffice: BackofficeServer
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 60)
    config = tmp_path / "posedge.toml"
    config.write_text('[terminal]\nid = "ctrl-c-1"\n[sync]\nbatch_events = 10\n')
    backoffice.faults.add({"kind": "latency", "endpoint": "events", "latency_s": 0.5})
    proc = subprocess.Popen(
        [str(POSEDGE_EXE), "--state-dir", str(state), "--config", str(config), "--json",
         "sync", "now", "--backoffice", backoffice.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"},
    )  # fmt: skip
    try:
        assert backoffice.store is not None
        store = backoffice.store

        def held() -> int:
            states = [s for s in store.terminal_states() if s.terminal == "ctrl-c-1"]
            return states[0].held_seq if states else 0

        def acked() -> int:
            with Journal.open(state, readonly=True) as journal:
                return journal.acked_seq()

        # The agent has recorded the first acknowledgement (the back office holding the batch
        # is not enough: its reply may still be on the way when the signal lands).
        until(lambda: held() >= 10 and acked() >= 10, "the first batch acknowledged")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["lost_events"] == 0
    with Journal.open(state, readonly=True) as journal:
        acked, head = journal.acked_seq(), journal.head().seq
    assert doc["acked_seq"] == acked >= 10
    assert doc["uploaded_events"] == acked
    assert doc["head_seq"] == head == 60
    assert doc["remaining_events"] == head - acked > 0
    assert held() >= acked  # the back office holds at least what the agent counts as kept


def test_ctrl_c_says_so_in_words_without_json(tmp_path: Path, backoffice: BackofficeServer) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 30)
    config = tmp_path / "posedge.toml"
    config.write_text('[terminal]\nid = "ctrl-c-2"\n[sync]\nbatch_events = 10\n')
    backoffice.faults.add({"kind": "latency", "endpoint": "events", "latency_s": 5, "count": 5})
    proc = subprocess.Popen(
        [str(POSEDGE_EXE), "--state-dir", str(state), "--config", str(config),
         "sync", "now", "--backoffice", backoffice.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"},
    )  # fmt: skip
    try:
        assert backoffice.store is not None
        # The first upload is held in the back office's latency: the agent is waiting on it.
        until(lambda: backoffice.faults.describe()[0]["remaining"] < 5,
              "the first upload to reach the back office")  # fmt: skip
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted: 0 events uploaded in this run" in out
    assert "events 1-30 (30) stay in the journal for the next sync" in out
    assert "nothing was lost" in out


# ---------------------------------------------------------------- sync status: last error
def test_sync_status_tells_a_current_error_from_a_recovered_one(
    tmp_path: Path, backoffice: BackofficeServer
) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 4)
    config = tmp_path / "posedge.toml"
    config.write_text('[terminal]\nid = "status-1"\n[sync]\nbackoff_initial = "10ms"\n'
                      'backoff_cap = "50ms"\n')  # fmt: skip
    common = ["--state-dir", str(state), "--config", str(config)]
    assert posedge(*common, "sync", "now", "--backoffice", DISCARD).returncode == 4
    failing = posedge(*common, "--json", "sync", "status")
    assert failing.returncode == 0, failing.stderr
    doc = json.loads(failing.stdout)
    assert doc["last_error"] and doc["last_error_at"] and doc["last_error_current"] is True
    assert 0 <= doc["last_error_age_s"] < 600
    human = posedge(*common, "sync", "status").stdout
    assert "CURRENT" in human and doc["last_error_at"] in human

    assert posedge(*common, "sync", "now", "--backoffice", backoffice.url).returncode == 0
    recovered = json.loads(posedge(*common, "--json", "sync", "status").stdout)
    assert recovered["last_error"] == doc["last_error"]  # history is kept …
    assert recovered["last_error_current"] is False  # … and marked as history
    human = posedge(*common, "sync", "status").stdout
    assert "recovered" in human and "CURRENT" not in human


def test_sync_status_without_any_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 1)
    doc = json.loads(posedge("--state-dir", str(state), "--json", "sync", "status").stdout)
    assert doc["last_error"] is None and doc["last_error_current"] is None


# ---------------------------------------------------------------- backoffice report width
LONG_ID = "store-0042-lane-07-terminal-with-a-long-id-0001"


@pytest.fixture
def reported_db(tmp_path: Path, backoffice: BackofficeServer) -> Path:
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        fill(journal, 3)
    config = tmp_path / "posedge.toml"
    config.write_text(f'[terminal]\nid = "{LONG_ID}"\n')
    done = posedge("--state-dir", str(state), "--config", str(config), "sync", "now",
                   "--backoffice", backoffice.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return tmp_path / "bo.sqlite3"


@pytest.mark.parametrize("columns", [40, 60, 80, 120, 250])
def test_backoffice_report_fits_the_terminal_and_never_cuts_a_terminal_id(
    reported_db: Path, columns: int
) -> None:
    done = posedge("backoffice", "report", "--db", str(reported_db),
                   env={"COLUMNS": str(columns)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(LONG_ID in line for line in lines), done.stdout
    too_long = [line for line in lines if len(line) > columns and LONG_ID not in line]
    assert not too_long, too_long
    assert all(len(line) <= max(columns, len(LONG_ID)) for line in lines)
    assert "silent" in done.stdout and "holes" in done.stdout  # every column is still shown


# ---------------------------------------------------------------- back office disconnects
def test_a_client_that_goes_away_is_logged_at_info_not_as_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = BackofficeServer(tmp_path / "bo.sqlite3", log_level="info").start()
    try:
        host, port = server.host, server.port
        with socket.create_connection((host, port)) as sock:  # half a body, then gone
            sock.sendall(b"POST /admin/faults HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":")  # fmt: skip

        def noted() -> bool:
            return any("disconnected" in r.getMessage() for r in caplog.records)

        until(noted, "the back office to notice the client went away")
    finally:
        server.close()
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert gone[0].levelno == logging.INFO and gone[0].name == "posedge.backoffice"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# ---------------------------------------------------------------- demo narration
def test_the_demo_narration_says_when_a_step_did_not_go_as_scripted(tmp_path: Path) -> None:
    from posedge.simulator import demo

    config = demo._demo_config()
    # Offline sales of at most 10.00 EUR: the outage sale (25.00) cannot be stored offline.
    config.offline.max_per_sale["EUR"] = 1000
    lines: list[str] = []
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    summary = asyncio.run(demo._session(state, demo.SCENARIO_SALES + 1, lines.append, config))
    story = "\n".join(lines)
    outage = next(line for line in lines if "sale during the outage" in line)
    assert "declined" in outage and "NOT approved offline" in outage, story
    assert "store-and-forward" not in outage
    assert summary["declined"] >= 1
    assert "journal verified" in story


def test_the_demo_narration_reports_the_scripted_outcomes_when_they_happen() -> None:
    done = posedge("demo", "--sales", "6")
    assert done.returncode == 0, done.stderr
    story = done.stdout
    assert "approved offline" in story and "(store-and-forward)" in story
    assert "authorization outcome unknown: a reversal was queued" in story
    assert "receipt FAILED" in story and "reprint: approved" in story
    assert "alert raised: void_after_approval" in story
    assert "the back office acknowledged every event" in story


# ---------------------------------------------------------------- simulator banner
def test_the_simulator_banner_tells_how_to_present_a_card() -> None:
    proc = subprocess.Popen(
        [str(POSEDGE_EXE), "simulate", "devices"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        banner = out.until("Stop with Ctrl-C")
        assert "To present a card" in banner and "'reader card'" in banner
        proc.stdin.write("reader card\n")  # what the banner says to type
        proc.stdin.flush()
        assert err.until("reader card").strip() == "ok: reader card"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(DEADLINE_S)
        proc.stdin.close()
        out.close()
        err.close()


class Lines:
    """A child's output stream read line by line on a thread (no blocking read in the test)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.put(line)
        self.lines.put("")

    def until(self, marker: str) -> str:
        text = ""
        deadline = time.monotonic() + DEADLINE_S
        while marker not in text:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {marker!r} in time; got {text!r}") from None
            if not line:
                raise AssertionError(f"end of output before {marker!r}; got {text!r}")
            text += line
        return text

    def close(self) -> None:
        self.thread.join(DEADLINE_S)
        self.stream.close()
