"""``posedge test print``, ``test swipe`` and ``devices check`` against simulated devices.

The real console script runs in a subprocess and reaches a VirtualPrinter /
VirtualReader served by this process over TCP (``socket://``) or a
pseudo-terminal. ``sim://`` URLs (in-process devices) run through click's
CliRunner with a device registered under a test-only name. Also: building
devices from configuration (:mod:`posedge.agent.devices`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from posedge.agent.cli import cli
from posedge.agent.config import Config, load_config
from posedge.agent.devices import open_printer, open_reader
from posedge.agent.errors import ConfigError
from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.links.pty import PtyLink
from posedge.simulator.links.tcp import TcpLink
from posedge.simulator.printer import VirtualPrinter
from posedge.simulator.reader import MASTERCARD_TEST_PAN, VISA_TEST_PAN, VirtualReader

POSEDGE_EXE = Path(sys.executable).parent / "posedge"
FAST_PRINTER = 'poll_timeout = "300ms"\njob_timeout = "3s"\n'
FAST_READER = 'ack_timeout = "200ms"\nresponse_timeout = "500ms"\n'


def run(
    tmp_path: Path,
    *args: str,
    printer: str = "",
    reader: str = "",
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """The real ``posedge`` with a private state dir and a config file of fast timeouts.

    ``printer`` / ``reader``: extra TOML lines for those sections."""
    config_file = tmp_path / "posedge.toml"
    config_file.write_text(f"[printer]\n{FAST_PRINTER}{printer}[reader]\n{FAST_READER}{reader}")
    env = {**os.environ, "POSEDGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("POSEDGE_CONFIG", None)
    return subprocess.run(
        [str(POSEDGE_EXE), "--config", str(config_file), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=stdin,
        timeout=30,
    )


def document(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.fixture
def printer() -> Iterator[tuple[VirtualPrinter, str]]:
    device = VirtualPrinter()
    with TcpLink(device) as link:
        yield device, link.url


@pytest.fixture
def printer_pty(tmp_path: Path) -> Iterator[tuple[VirtualPrinter, str]]:
    device = VirtualPrinter()
    with PtyLink(device, symlink=tmp_path / "ttyPRINTER") as link:
        yield device, link.path


@pytest.fixture
def framed_reader() -> Iterator[tuple[VirtualReader, str]]:
    device = VirtualReader("framed")
    with TcpLink(device) as link:
        yield device, link.url
    device.close()


# ---- test print ---------------------------------------------------------------
def test_print_prints_the_test_receipt(tmp_path: Path, printer: tuple[VirtualPrinter, str]) -> None:
    device, url = printer
    done = run(tmp_path, "--json", "test", "print", "--printer", url)
    assert done.returncode == 0, done.stderr
    doc = document(done)
    assert doc["ok"] is True and doc["printed"] is True and doc["url"] == url
    assert doc["status"]["ready"] is True and doc["print"]["complete"] is True
    assert device.wait_for_receipts(1, 2.0)
    text = device.plain_text()
    for expected in ("POSEDGE TEST", "Size 2x1", "Size 3x3", "[CODE128 POSEDGE-TEST]", "[QR "):
        assert expected in text
    assert text.endswith("--- cut ---") and device.unknown == []
    stats = json.loads((tmp_path / "state" / "devices" / "printer.stats.json").read_text())
    assert stats["counters"]["PaperCutCount"] == 1


def test_print_human_output_over_a_pty(
    tmp_path: Path, printer_pty: tuple[VirtualPrinter, str]
) -> None:
    device, path = printer_pty
    device.apply_fault("paper_near_end")
    done = run(tmp_path, "test", "print", "--printer", path)
    assert done.returncode == 0, done.stderr
    assert "printed and confirmed" in done.stdout and "paper_near_end" in done.stdout
    assert device.wait_for_receipts(1, 2.0)


def test_print_paper_out_exits_3_and_prints_nothing(
    tmp_path: Path, printer_pty: tuple[VirtualPrinter, str]
) -> None:
    device, path = printer_pty
    device.apply_fault("paper_out")
    done = run(tmp_path, "test", "print", "--printer", path)
    assert done.returncode == 3
    assert "paper_end" in done.stderr and "load a new paper roll" in done.stderr
    assert "nothing was printed" in done.stderr
    assert device.job_bytes_received == 0 and device.receipts == []


def test_print_cover_open_exits_3_as_json(
    tmp_path: Path, printer: tuple[VirtualPrinter, str]
) -> None:
    device, url = printer
    device.apply_fault("cover_open")
    done = run(tmp_path, "--json", "test", "print", "--printer", url)
    assert done.returncode == 3
    doc = document(done)
    assert doc["faults"] == ["cover_open"] and doc["printed"] is False and doc["ok"] is False
    assert "close the printer cover" in doc["error"]["hint"]
    assert device.job_bytes_received == 0 and device.receipts == []


def test_print_unconfirmed_job_exits_3_reprint(
    tmp_path: Path, printer: tuple[VirtualPrinter, str]
) -> None:
    device, url = printer
    device.apply_fault("cutter_error")
    done = run(tmp_path, "--json", "test", "print", "--printer", url)
    assert done.returncode == 3
    doc = document(done)
    assert doc["print"]["reprint_needed"] is True and doc["print"]["fault"] == "cutter_error"
    assert "reprint" in doc["error"]["message"]


def test_print_unplugged_mid_job_exits_3_with_what_to_check(
    tmp_path: Path, printer: tuple[VirtualPrinter, str]
) -> None:
    device, url = printer
    device.apply_fault("unplug_after_bytes", bytes=30)
    done = run(tmp_path, "test", "print", "--printer", url)
    assert done.returncode == 3
    assert "DeviceUnplugged" in done.stderr and "what to check" in done.stderr
    assert "reprint" in done.stderr


def test_print_silent_printer_exits_3(
    tmp_path: Path, printer_pty: tuple[VirtualPrinter, str]
) -> None:
    device, path = printer_pty
    device.apply_fault("no_response")
    done = run(tmp_path, "--json", "test", "print", "--printer", path)
    assert done.returncode == 3
    doc = document(done)
    assert doc["error"]["type"] == "DeviceTimeout" and doc["printed"] is False
    assert "cable" in doc["error"]["hint"] and device.job_bytes_received == 0


def test_print_without_a_url_is_a_config_error(tmp_path: Path) -> None:
    done = run(tmp_path, "test", "print")
    assert done.returncode == 2
    assert "printer.url" in done.stderr and "--printer" in done.stderr


def test_print_unsupported_url_is_a_usage_error(tmp_path: Path) -> None:
    done = run(tmp_path, "test", "print", "--printer", "gopher://x")
    assert done.returncode == 2 and "--printer" in done.stderr


def test_print_url_from_config(tmp_path: Path, printer: tuple[VirtualPrinter, str]) -> None:
    device, url = printer
    done = run(tmp_path, "test", "print", printer=f'url = "{url}"\n')
    assert done.returncode == 0, done.stderr
    assert device.wait_for_receipts(1, 2.0)


# ---- test swipe ---------------------------------------------------------------
def _no_card_data(done: subprocess.CompletedProcess[str], pan: str) -> None:
    for stream in (done.stdout, done.stderr):
        assert pan not in stream
        assert re.search(r"\d{13,}", stream) is None  # no PAN-length digit run at all
        assert "TEST/CARD" not in stream  # cardholder name from track 1


@pytest.mark.parametrize("json_flag", [True, False], ids=["json", "human"])
def test_swipe_framed_shows_only_masked_data(
    tmp_path: Path, framed_reader: tuple[VirtualReader, str], json_flag: bool
) -> None:
    device, url = framed_reader
    device.present_card(pan=MASTERCARD_TEST_PAN)  # swiped when the command arms the reader
    args = ["--json"] if json_flag else []
    done = run(tmp_path, *args, "test", "swipe", "--reader", url, "--protocol", "framed")
    assert done.returncode == 0, done.stderr
    _no_card_data(done, MASTERCARD_TEST_PAN)
    if json_flag:
        card = document(done)["card"]
        assert card["masked_pan"] == "555555******4444" and card["brand"] == "mastercard"
        assert card["expiry"] == "2912" and card["track_quality"] == {"1": "ok", "2": "ok"}
        assert "pan_token" not in card
    else:
        assert "555555******4444" in done.stdout and "mastercard" in done.stdout
        assert "track 1      ok" in done.stdout and "2029-12" in done.stdout
    # reading a card creates no key file: the PAN-token key lives in memory only
    assert not (tmp_path / "state" / "device.key").exists()


def test_swipe_magtek_over_a_pty(tmp_path: Path) -> None:
    device = VirtualReader("magtek", auto_present=True, auto_present_delay_s=0.1)
    with PtyLink(device, symlink=tmp_path / "ttyREADER") as link:
        done = run(tmp_path, "test", "swipe", "--reader", link.path, "--timeout", "5")
        device.close()
    assert done.returncode == 0, done.stderr
    assert "411111******1111" in done.stdout and "visa" in done.stdout
    _no_card_data(done, VISA_TEST_PAN)


def test_swipe_unreadable_exits_3_with_track_quality(
    tmp_path: Path, framed_reader: tuple[VirtualReader, str]
) -> None:
    device, url = framed_reader
    device.apply_fault("unreadable", count=1, tracks="1,2")
    device.present_card(pan=MASTERCARD_TEST_PAN)
    args = ("test", "swipe", "--reader", url, "--protocol", "framed")
    done = run(tmp_path, "--json", *args)
    assert done.returncode == 3
    doc = document(done)
    assert doc["track_quality"] == {"1": "unreadable", "2": "unreadable"}
    assert doc["error"]["type"] == "CardUnreadable" and "swipe again" in doc["error"]["hint"]
    _no_card_data(done, MASTERCARD_TEST_PAN)


def test_swipe_timeout_exits_3(tmp_path: Path, framed_reader: tuple[VirtualReader, str]) -> None:
    _device, url = framed_reader
    args = ("test", "swipe", "--reader", url, "--protocol", "framed", "--timeout", "0.3")
    done = run(tmp_path, *args)
    assert done.returncode == 3
    assert "SwipeTimeout" in done.stderr and "no card was swiped" in done.stderr


# ---- devices check --------------------------------------------------------------
def test_check_internal_defaults_from_config(
    tmp_path: Path, printer: tuple[VirtualPrinter, str], framed_reader: tuple[VirtualReader, str]
) -> None:
    (_p, printer_url), (_r, reader_url) = printer, framed_reader
    config = f'url = "{reader_url}"\nprotocol = "framed"\n'
    done = run(tmp_path, "devices", "check", "--printer", printer_url, reader=config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.endswith("Internal HCheck: Successful") for line in lines)
    assert lines[0].startswith("printer") and lines[1].startswith("reader")


def test_check_fails_with_unifiedpos_text(
    tmp_path: Path, printer: tuple[VirtualPrinter, str]
) -> None:
    device, url = printer
    device.apply_fault("cover_open")
    done = run(tmp_path, "--json", "devices", "check", "--printer", url)
    assert done.returncode == 3
    doc = document(done)
    assert doc["ok"] is False and doc["level"] == "internal"
    (check,) = doc["checks"]
    assert check["text"] == "Internal HCheck: Not ready (cover_open)" and check["url"] == url


def test_check_external_prints_and_reads(
    tmp_path: Path, printer: tuple[VirtualPrinter, str], framed_reader: tuple[VirtualReader, str]
) -> None:
    (printer_device, printer_url), (reader_device, reader_url) = printer, framed_reader
    reader_device.present_card(pan=MASTERCARD_TEST_PAN)
    args = ["devices", "check", "--level", "external", "--timeout", "3"]
    args += ["--printer", printer_url, "--reader", reader_url]
    done = run(tmp_path, *args, "--json", reader='protocol = "framed"\n')
    assert done.returncode == 0, done.stderr
    texts = [check["text"] for check in document(done)["checks"]]
    assert texts == ["External HCheck: Successful"] * 2
    assert printer_device.wait_for_receipts(1, 2.0)
    _no_card_data(done, MASTERCARD_TEST_PAN)


def test_check_unreachable_device_fails_the_check(tmp_path: Path) -> None:
    missing = tmp_path / "ttyGONE"
    done = run(tmp_path, "devices", "check", "--printer", str(missing))
    assert done.returncode == 3
    assert "Internal HCheck: DeviceUnplugged" in done.stdout


def test_check_interactive_needs_a_tty(tmp_path: Path, printer: tuple[VirtualPrinter, str]) -> None:
    device, url = printer
    done = run(tmp_path, "devices", "check", "--level", "interactive", "--printer", url)
    assert done.returncode == 2 and "TTY" in done.stderr
    assert device.job_bytes_received == 0


def test_check_interactive_asks_on_the_terminal(
    tmp_path: Path, printer: tuple[VirtualPrinter, str]
) -> None:
    device, url = printer
    master, slave = os.openpty()
    try:
        os.write(master, b"y\n")  # the technician's answer, waiting in the tty
        args = ("--json", "devices", "check", "--level", "interactive", "--printer", url)
        done = run(tmp_path, *args, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0, done.stderr
    assert "Did the test receipt print correctly?" in done.stderr
    assert document(done)["checks"][0]["text"] == "Interactive HCheck: Successful"
    assert device.wait_for_receipts(1, 2.0)


# ---- sim:// URLs in process -------------------------------------------------------
@pytest.fixture
def sim_printer() -> Iterator[VirtualPrinter]:
    device = VirtualPrinter()
    register_sim_device("cli-test-printer", device)
    yield device
    unregister_sim_device("cli-test-printer")


def invoke(tmp_path: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(cli, ["--state-dir", str(tmp_path), *args], catch_exceptions=False)


def test_sim_url_with_faults_in_process(tmp_path: Path, sim_printer: VirtualPrinter) -> None:
    result = invoke(
        tmp_path, "--json", "test", "print", "--printer", "sim://cli-test-printer?faults=paper_out"
    )
    assert result.exit_code == 3
    assert json.loads(result.stdout)["faults"] == ["paper_end"]
    assert sim_printer.job_bytes_received == 0
    sim_printer.apply_fault("clear")
    result = invoke(tmp_path, "test", "print", "--printer", "sim://cli-test-printer")
    assert result.exit_code == 0, result.output
    assert len(sim_printer.receipts) == 1


def test_sim_url_check_in_process(tmp_path: Path, sim_printer: VirtualPrinter) -> None:
    url = "sim://cli-test-printer?faults=cutter_error"
    result = invoke(tmp_path, "devices", "check", "--level", "external", "--printer", url)
    assert result.exit_code == 3
    assert "External HCheck: Test receipt failed (cutter_error)" in result.stdout


def test_sim_url_interactive_without_tty_in_process(
    tmp_path: Path, sim_printer: VirtualPrinter
) -> None:
    args = ("devices", "check", "--level", "interactive", "--printer", "sim://cli-test-printer")
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2 and sim_printer.job_bytes_received == 0


# ---- building devices from configuration ---------------------------------------
def test_open_printer_maps_config_keys(tmp_path: Path, sim_printer: VirtualPrinter) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[printer]\nurl = "sim://cli-test-printer"\ncode_page = "PC437"\ncolumns = 32\n'
        'poll_timeout = "250ms"\njob_timeout = "12s"\n'
    )
    printer = open_printer(load_config(path).config, tmp_path)
    assert printer.code_page is CodePage.PC437 and printer.columns == 32
    assert printer.poll_timeout_s == 0.25 and printer.job_timeout_s == 12.0
    assert printer.stats.path == tmp_path / "devices" / "printer.stats.json"
    assert printer.status().ready


def test_open_reader_maps_config_keys(tmp_path: Path) -> None:
    device = VirtualReader("framed")
    register_sim_device("cli-test-reader", device)
    path = tmp_path / "c.toml"
    path.write_text(
        '[reader]\nurl = "sim://cli-test-reader"\nprotocol = "framed"\nlrc_seed = 127\n'
        'lrc_include_stx = true\nresponse_timeout = "700ms"\ntrack_lrc = true\n'
    )
    try:
        reader = open_reader(load_config(path).config, tmp_path)
        assert reader.protocol == "framed" and reader.track_lrc
        assert reader.response_timeout_s == pytest.approx(0.7)
        assert reader._link.rule.seed == 0x7F and reader._link.rule.include_stx
        override = open_reader(load_config(path).config, tmp_path, protocol="magtek")
        assert override.protocol == "magtek"
    finally:
        unregister_sim_device("cli-test-reader")
        device.close()


def test_missing_url_names_the_key_and_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reader\.url.*--reader"):
        open_reader(Config(), tmp_path)
    with pytest.raises(ConfigError, match=r"printer\.url.*--printer"):
        open_printer(Config(), tmp_path)
