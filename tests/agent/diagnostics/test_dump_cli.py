"""``posedge devices dump`` without a daemon: real processes, simulated and absent devices."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.diagnostics.dump import parse_dump
from posedge.agent.diagnostics.files import list_dumps
from tests.e2e.daemon_support import POSEDGE


def run(state: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(POSEDGE), "--state-dir", str(state), "--config", str(config), *args]
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def write_config(tmp_path: Path, printer: str, reader: str | None = "sim://reader") -> Path:
    path = tmp_path / "posedge.toml"
    text = f'[printer]\nurl = "{printer}"\npoll_timeout = "200ms"\n'
    if reader is not None:
        text += f'[reader]\nurl = "{reader}"\n'
    path.write_text(text)
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def test_json_prints_the_document_and_writes_no_file(tmp_path: Path, state: Path) -> None:
    config = write_config(tmp_path, "sim://printer?faults=paper_out")
    done = run(state, config, "--json", "devices", "dump")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    parsed = parse_dump(doc)
    assert doc["reason"] == "command" and doc["agent"]["source"] == "command"
    status = parsed.devices["printer"].status
    assert status is not None and status["paper_end"] is True and status["faults"] == ["paper_end"]
    assert parsed.devices["reader"].status == {
        "online": True, "state": "unknown", "protocol": "magtek"}  # fmt: skip
    assert list_dumps(state) == []


def test_default_writes_a_private_file_and_prints_its_path(tmp_path: Path, state: Path) -> None:
    config = write_config(tmp_path, "sim://printer?faults=cover_open", reader=None)
    done = run(state, config, "devices", "dump")
    assert done.returncode == 0, done.stderr
    [path] = list_dumps(state)
    assert done.stdout.splitlines()[0] == f"device dump written to {path}"
    assert "NOT READY (cover_open)" in done.stdout and "reader   not configured" in done.stdout
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["devices"]["reader"]["configured"] is False


def test_output_file(tmp_path: Path, state: Path) -> None:
    config = write_config(tmp_path, "sim://printer")
    out = tmp_path / "field.json"
    done = run(state, config, "devices", "dump", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"device dump written to {out}" in done.stdout
    assert parse_dump(json.loads(out.read_text())).devices["printer"].reachable is True
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_an_unreachable_printer_is_exit_3_and_still_dumped(tmp_path: Path, state: Path) -> None:
    url = f"socket://tech:pw@127.0.0.1:{closed_port()}"
    config = write_config(tmp_path, url)
    done = run(state, config, "devices", "dump")
    assert done.returncode == 3, done.stderr
    assert "printer could not be reached" in done.stderr
    [path] = list_dumps(state)
    doc = json.loads(path.read_text())
    printer = doc["devices"]["printer"]
    assert printer["reachable"] is False and printer["errors"][-1]["source"] == "open"
    assert printer["url"].startswith("socket://127.0.0.1:") and "pw" not in path.read_text()
    assert doc["devices"]["reader"]["reachable"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("devices", "dump", "--output"), "requires an argument"),
        (("devices", "dump", "--bogus"), "No such option"),
        (("devices", "dump", "--output", "/nonexistent-dir/d.json"), "no directory"),
    ],
)
def test_bad_usage_is_exit_2(
    tmp_path: Path, state: Path, args: tuple[str, ...], message: str
) -> None:
    config = write_config(tmp_path, "sim://printer")
    done = run(state, config, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert list_dumps(state) == []


def test_output_to_a_directory_is_exit_2(tmp_path: Path, state: Path) -> None:
    config = write_config(tmp_path, "sim://printer")
    done = run(state, config, "devices", "dump", "--output", str(tmp_path))
    assert done.returncode == 2 and "is a directory" in done.stderr


def test_a_bad_configuration_is_exit_2_and_touches_nothing(tmp_path: Path, state: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[printer]\nurl = "sim://printer"\nbaudrate = "fast"\n')
    done = run(state, config, "devices", "dump")
    assert done.returncode == 2 and "baudrate" in done.stderr
    assert not (state / "dumps").exists()


def test_a_daemon_that_does_not_answer_is_exit_4(tmp_path: Path, state: Path) -> None:
    from posedge.agent.daemon import StateDirLock

    config = write_config(tmp_path, "sim://printer")
    token = state / "api-token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    with StateDirLock.for_state_dir(state):  # "a daemon" (this test) holds the state dir
        done = run(state, config, "devices", "dump")
    assert done.returncode == 4, done.stderr
    assert f"(pid {os.getpid()})" in done.stderr and "did not answer" in done.stderr
    assert list_dumps(state) == []
