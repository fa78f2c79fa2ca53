"""The dump document from real driver objects over sim://, its strict reader, and its files."""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.diagnostics.dump import (
    DUMP_FORMAT,
    DumpError,
    DumpFormatError,
    build_dump,
    journal_device_errors,
    parse_dump,
    probe_printer,
    probe_reader,
    redact_url,
    unreachable,
    unreachable_devices,
)
from posedge.agent.diagnostics.files import KEEP_DUMPS, list_dumps, write_dump, write_output
from posedge.agent.errors import ConfigError
from posedge.agent.journal import Journal
from posedge.drivers.cardreader import CardReader
from posedge.drivers.errors import DeviceTimeout
from posedge.drivers.escpos.model import Cut, Receipt, Text
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.statistics import DeviceStatistics
from posedge.drivers.transport import open_transport
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.replay import ReplayedPrinter, ReplayedReader

IDENTITY = {"model": "TM-T88VI", "manufacturer": "EPSON", "firmware": "30.11 ESC/POS",
            "serial_number": "X5YK012345", "vid_pid": "04b8:0e28", "product": None}  # fmt: skip
TEST_PAN = "4111111111111111"


@pytest.fixture
def sim_printer() -> Iterator[ReplayedPrinter]:
    device = ReplayedPrinter(IDENTITY)
    register_sim_device("dumpprinter", device)
    yield device
    unregister_sim_device("dumpprinter")


@pytest.fixture
def sim_reader() -> Iterator[ReplayedReader]:
    device = ReplayedReader("framed", {"model": "MiniMag", "serial_number": "R-1"})
    register_sim_device("dumpreader", device)
    yield device
    device.close()
    unregister_sim_device("dumpreader")


def open_printer(state_dir: Path) -> ReceiptPrinter:
    return ReceiptPrinter(
        open_transport("sim://dumpprinter"), statistics=DeviceStatistics(state_dir, "printer")
    )


def test_printer_entry_decodes_status_counts_and_carries_identity(
    sim_printer: ReplayedPrinter, tmp_path: Path
) -> None:
    printer = open_printer(tmp_path)
    printer.print_receipt(Receipt([Text("one"), Text("two"), Cut()]))
    sim_printer.apply_fault("cover_open")
    sim_printer.apply_fault("paper_near_end")

    entry = probe_printer(printer)

    assert entry["reachable"] is True and entry["configured"] is True
    assert entry["url"] == "sim://dumpprinter"
    status = entry["status"]
    assert status["cover_open"] is True and status["paper_near_end"] is True
    assert status["faults"] == ["cover_open"] and status["warnings"] == ["paper_near_end"]
    assert entry["statistics"]["ReceiptLinePrintedCount"] == 2
    assert entry["statistics"]["PaperCutCount"] == 1
    assert entry["identity"]["serial_number"] == "X5YK012345"
    assert entry["identity"]["vid_pid"] == "04b8:0e28"
    assert entry["identity"]["source"] == "simulator"


def test_a_silent_printer_is_unreachable_with_the_error_recorded(
    sim_printer: ReplayedPrinter, tmp_path: Path
) -> None:
    printer = open_printer(tmp_path)
    printer.poll_timeout_s = 0.05
    sim_printer.apply_fault("no_response")
    entry = probe_printer(printer)
    assert entry["reachable"] is False and entry["status"] is None
    assert entry["errors"][0]["error"] == "DeviceTimeout"
    assert "DLE EOT" in entry["errors"][0]["message"]
    doc = build_dump({"printer": entry}, reason="command", source="command", version="t")
    assert unreachable_devices(doc) == ["printer"]


def test_reader_entry_states_and_unplugged(sim_reader: ReplayedReader, tmp_path: Path) -> None:
    reader = CardReader(
        open_transport("sim://dumpreader"), token_key=b"k" * 32, protocol="framed",
        statistics=DeviceStatistics(tmp_path, "reader"), response_timeout_s=0.3,
    )  # fmt: skip
    entry = probe_reader(reader)
    assert entry["status"] == {"online": True, "state": "idle", "protocol": "framed"}
    assert entry["identity"]["model"] == "MiniMag" and entry["reachable"] is True
    assert probe_reader(reader, busy=True)["status"]["state"] == "busy"
    sim_reader.unplug()
    gone = probe_reader(reader)
    assert gone["reachable"] is False and gone["errors"][0]["error"] == "DeviceUnplugged"


def test_urls_lose_user_password_and_secret_parameters() -> None:
    assert redact_url("rfc2217://tech:s3cret@10.0.0.7:4000?token=abc&baud=9600") == (
        "rfc2217://10.0.0.7:4000?token=REDACTED&baud=9600"
    )
    assert redact_url("/dev/ttyUSB0") == "/dev/ttyUSB0"
    entry = unreachable("printer", "socket://u:pw@host:9100", DeviceTimeout("no answer"))
    assert entry["url"] == "socket://host:9100" and "pw" not in json.dumps(entry)


def test_a_document_with_card_data_is_refused_without_echoing_it() -> None:
    entry = unreachable("reader", "sim://reader", DeviceTimeout(f"read {TEST_PAN}"))
    with pytest.raises(DumpError) as caught:
        build_dump({"reader": entry}, reason="command", source="command", version="t")
    assert TEST_PAN not in str(caught.value) and "$.devices.reader" in str(caught.value)


def good_doc() -> dict[str, Any]:
    printer = unreachable("printer", "/dev/ttyUSB0", DeviceTimeout("no answer"))
    printer.update(reachable=True, status={"cover_open": True, "online": False},
                   statistics={"PaperCutCount": 3, "HoursOnlineCount": 1.5}, errors=[])  # fmt: skip
    return build_dump({"printer": printer}, reason="signal", source="daemon", version="t")


def test_parse_dump_accepts_what_build_dump_writes() -> None:
    doc = json.loads(json.dumps(good_doc()))
    parsed = parse_dump(doc)
    assert doc["format"] == DUMP_FORMAT
    assert parsed.devices["printer"].status is not None
    assert parsed.devices["printer"].status["faults"] == ["cover_open"]
    assert parsed.devices["reader"].configured is False


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("format",), "something-else", "$.format: expected 'posedge.device-dump'"),
        (("version",), 2, "$.version: 2 is not supported; this posedge reads version 1 "
                          "(written by a newer posedge"),
        (("version",), "1", "$.version: must be an integer"),
        (("devices", "printer", "status", "cover_open"), "yes",
         "$.devices.printer.status.cover_open: must be true or false, got 'yes'"),
        (("devices", "printer", "status", "lid"), True,
         "$.devices.printer.status: unknown key 'lid'"),
        (("devices", "printer", "statistics", "PaperCutCount"), -1,
         "$.devices.printer.statistics.PaperCutCount: a counter must be a number >= 0"),
        (("devices", "printer", "kind"), "reader", "$.devices.printer.kind: must be 'printer'"),
        (("devices", "scanner"), {}, "$.devices: unknown key 'scanner'"),
        (("devices", "reader", "status"), {"state": "dancing", "protocol": "magtek"},
         "$.devices.reader.status.state: must be one of"),
    ],
)  # fmt: skip
def test_parse_dump_names_the_place_and_the_rule(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    doc = copy.deepcopy(good_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(DumpFormatError) as caught:
        parse_dump(doc, source="f.json")
    assert f"f.json: {message}" in str(caught.value)


def test_dump_files_are_private_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    paths = [write_dump(state, {"n": i}, keep=3) for i in range(5)]
    kept = list_dumps(state)
    assert kept == paths[-3:]
    assert [json.loads(p.read_text())["n"] for p in kept] == [2, 3, 4]
    assert stat.S_IMODE(os.stat(state / "dumps").st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in kept)
    assert KEEP_DUMPS >= 10


def test_a_link_where_the_dumps_directory_belongs_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (state / "dumps").symlink_to(elsewhere)
    with pytest.raises(DumpError, match="not a directory"):
        write_dump(state, {"n": 1})
    assert list(elsewhere.iterdir()) == []


def test_output_to_a_directory_or_missing_parent_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        write_output(tmp_path, {"n": 1})
    with pytest.raises(ConfigError, match="no directory"):
        write_output(tmp_path / "missing" / "d.json", {"n": 1})
    out = write_output(tmp_path / "d.json", {"n": 1})
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_recent_errors_come_from_the_journal_device_status_events(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "state") as journal:
        journal.append("device.status", {"printer": {"state": "ok", "faults": []},
                                         "reader": {"state": "configured"}})  # fmt: skip
        journal.append("device.status", {"printer": {"state": "fault", "faults": ["paper_end"]},
                                         "reader": {"state": "configured"}})  # fmt: skip
        gone = {"state": "unavailable", "error": "sim://printer: no reply"}
        journal.append("device.status", {"printer": gone})
        found = journal_device_errors(journal)
    assert [e["message"] for e in found["printer"]] == [
        "printer fault: paper_end",
        "printer unavailable: sim://printer: no reply",
    ]
    assert all(e["source"] == "journal" and e["at"] for e in found["printer"])
    assert found["reader"] == []


def test_error_messages_lose_url_credentials() -> None:
    exc = DeviceTimeout("Could not open port rfc2217://tech:pw@10.0.0.7:4000?token=t0k: refused")
    entry = unreachable("printer", "rfc2217://tech:pw@10.0.0.7:4000?token=t0k", exc)
    text = json.dumps(entry)
    assert "pw" not in text and "t0k" not in text
    assert "rfc2217://10.0.0.7:4000?token=REDACTED: refused" in entry["errors"][0]["message"]


def test_dump_service_writes_once_per_burst_and_refuses_after_close(tmp_path: Path) -> None:
    import asyncio

    from posedge.agent.diagnostics.service import DumpService

    state = tmp_path / "state"
    state.mkdir(mode=0o700)

    async def scenario() -> list[Path]:
        service = DumpService(lambda: None, state)

        async def settled() -> None:
            await asyncio.wait_for(asyncio.gather(*list(service._tasks)), timeout=30)

        for _ in range(5):
            service.request_file()  # a burst before the loop runs: one dump
        await settled()
        service.request_file()
        await settled()
        await service.close()
        service.request_file()
        assert not service._tasks
        return service.written

    written = asyncio.run(scenario())
    assert len(written) == 2 and list_dumps(state) == written
    doc = parse_dump(json.loads(written[0].read_text()))
    assert doc.reason == "signal" and doc.devices["printer"].configured is False


def test_dumps_made_in_the_same_millisecond_keep_their_order(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    directory = state / "dumps"
    directory.mkdir(mode=0o700)
    stamps = ["000Z", "000Z-1", "000Z-2", "001Z"]
    names = [f"devices-20261207T010000.{stamp}.json" for stamp in stamps]
    for name in reversed(names):
        (directory / name).write_text("{}")
    assert [p.name for p in list_dumps(state)] == names


def test_identity_from_a_usb_url_and_none_from_a_socket() -> None:
    from posedge.agent.diagnostics.identity import device_identity

    usb = device_identity("usb://04b8:0e28?serial=X5YK012345")
    assert usb["model"] == "Epson TM-T88VI/TM-m30 (TM series)" and usb["source"] == "usb url"
    assert usb["vid_pid"] == "04b8:0e28" and usb["serial_number"] == "X5YK012345"
    assert set(device_identity("socket://127.0.0.1:9100").values()) == {None}
    assert device_identity("usb://nothex")["source"] is None  # a bad URL: unknown, no error
