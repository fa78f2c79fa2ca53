"""``posedge simulate devices`` as a real process: endpoints, fault commands, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.drivers.transport import open_transport
from posedge.drivers.transport.serial import SerialParams

DLE_EOT_PRINTER = b"\x10\x04\x01"
DLE_EOT_PAPER = b"\x10\x04\x04"
PAPER_END = 0x60


def posedge_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from posedge.agent.cli import main; main()", *args]


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('[[steps]]\nat_s = 0\ndevice = "reader"\nfault = "unreadable"\n')
    proc = subprocess.Popen(
        posedge_command(
            "--json",
            "simulate",
            "devices",
            "--symlink-dir",
            str(tmp_path),
            "--scenario",
            str(scenario),
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, read_json_document(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_json_document(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    text = ""
    for line in proc.stdout:
        text += line
        if line.rstrip("\n") == "}":
            document: dict[str, Any] = json.loads(text)
            return document
    raise AssertionError(f"no JSON document; stderr: {proc.stderr.read() if proc.stderr else ''}")


def stderr_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline()


def test_simulate_devices_end_to_end(
    simulator: tuple[subprocess.Popen[str], dict[str, Any]], tmp_path: Path
) -> None:
    proc, document = simulator
    printer = document["devices"]["printer"]
    assert printer["pty"] == str(tmp_path / "printer")
    assert os.readlink(printer["pty"]) == printer["pty_slave"]
    assert document["devices"]["reader"]["socket_url"].startswith("socket://127.0.0.1:")
    assert stderr_line(proc) == "scenario: reader unreadable applied at 0s\n"

    params = SerialParams(timeout_s=2.0)
    with open_transport(printer["socket_url"], serial=params) as transport:
        transport.write(DLE_EOT_PRINTER)
        status = transport.read_exactly(1, 2.0)[0]
        assert status & 0b1001_0011 == 0b0001_0010  # DLE EOT fixed bits

        assert proc.stdin is not None
        proc.stdin.write("printer paper_out\nprinter melt\nbogus\n")
        proc.stdin.flush()
        assert stderr_line(proc) == "ok: printer paper_out\n"
        assert stderr_line(proc).startswith("error: printer melt: unknown fault 'melt'")
        assert stderr_line(proc).startswith("error: expected 'DEVICE FAULT")
        transport.write(DLE_EOT_PAPER)
        assert transport.read_exactly(1, 2.0)[0] & PAPER_END == PAPER_END

    with open_transport(printer["pty"], serial=params) as transport:
        transport.write(DLE_EOT_PRINTER)
        assert len(transport.read_exactly(1, 2.0)) == 1

    proc.stdin.close()  # end of commands is not the end of the simulator
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert not (tmp_path / "printer").exists()


def test_bad_scenario_exits_2_naming_the_step(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        '[[steps]]\nat_s = 1\ndevice = "printer"\nfault = "paper_out"\n'
        '[[steps]]\nat_s = 2\ndevice = "toaster"\nfault = "x"\n'
    )
    result = subprocess.run(
        posedge_command("simulate", "devices", "--scenario", str(scenario)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "step 2: 'device' must be one of printer, reader, got 'toaster'" in result.stderr
    assert result.stdout == ""
