"""A device dump replayed by the simulator: same identity, status and statistics.

Round trip in process (sim:// carries the identity): faulted simulated devices → dump
→ replay → dump again. Then through the real commands: ``simulate devices --scenario
DUMP`` serving the replayed printer over TCP, ``devices dump`` against it. Bad dump
files are exit 2 naming the place.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posedge.agent.config import load_config
from posedge.agent.devices import open_printer
from posedge.agent.diagnostics.dump_cli import dump_here
from posedge.drivers.escpos.model import Barcode, Cut, Receipt, Symbology, Text
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.replay import ReplayedPrinter, ReplayedReader, load_dump_file, replay
from posedge.simulator.scenarios import ScenarioError, load_replay
from tests.e2e.daemon_support import POSEDGE

from .test_simulate_cli import read_json_document

PRINTER_ID = {"model": "Epson TM-T88VI", "manufacturer": "EPSON", "product": "TM-T88VI",
              "firmware": "30.11 ESC/POS", "serial_number": "X5YK012345",
              "vid_pid": "04b8:0e28"}  # fmt: skip
READER_ID = {"model": "ID TECH MiniMag", "manufacturer": "ID TECH", "product": None,
             "firmware": "V1.05", "serial_number": "M-77", "vid_pid": "0acd:3810"}  # fmt: skip
COMPARED = ("configured", "reachable", "identity", "status")


def same_counters(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry["statistics"].items() if k != "HoursOnlineCount"}


def config_file(tmp_path: Path, printer: str, reader: str) -> Path:
    path = tmp_path / "posedge.toml"
    path.write_text(f'[printer]\nurl = "{printer}"\npoll_timeout = "300ms"\n'
                    f'[reader]\nurl = "{reader}"\nprotocol = "framed"\n')  # fmt: skip
    return path


@pytest.fixture
def registered() -> Iterator[None]:
    yield
    for name in ("printer", "reader"):
        unregister_sim_device(name)


def field_dump(tmp_path: Path) -> Path:
    """A 'field' terminal: receipts printed, then cover open and paper near its end."""
    printer = ReplayedPrinter(PRINTER_ID)
    reader = ReplayedReader("framed", READER_ID)
    register_sim_device("printer", printer)
    register_sim_device("reader", reader)
    config = load_config(config_file(tmp_path, "sim://printer", "sim://reader")).config
    field_state = tmp_path / "field"
    field_state.mkdir(mode=0o700)
    driver = open_printer(config, field_state)
    for _ in range(3):
        driver.print_receipt(Receipt([Text("a"), Text("b"), Barcode(Symbology.CODE128, "X1"),
                                      Cut()]))  # fmt: skip
    printer.apply_fault("paper_near_end")
    driver.status()
    printer.apply_fault("cover_open")
    driver.close()
    reader.close()
    doc = dump_here(config, field_state)
    path = tmp_path / "devices-field.json"
    path.write_text(json.dumps(doc))
    return path


def test_dump_replay_dump_keeps_identity_status_and_statistics(
    tmp_path: Path, registered: None
) -> None:
    path = field_dump(tmp_path)
    first = json.loads(path.read_text())
    assert first["devices"]["printer"]["status"]["faults"] == ["cover_open"]
    assert first["devices"]["printer"]["statistics"]["PaperCutCount"] == 3

    replayed = load_replay(path)
    for name, device in replayed.devices.items():
        register_sim_device(name, device)
    lab = tmp_path / "lab"
    lab.mkdir(mode=0o700)
    replayed.seed_statistics(lab)
    config = load_config(config_file(tmp_path, "sim://printer", "sim://reader")).config
    second = dump_here(config, lab)
    reader = replayed.devices["reader"]
    assert isinstance(reader, ReplayedReader)
    reader.close()

    for kind in ("printer", "reader"):
        a, b = first["devices"][kind], second["devices"][kind]
        assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}, kind
        assert same_counters(a) == same_counters(b), kind
    assert second["devices"]["printer"]["identity"]["serial_number"] == "X5YK012345"
    assert second["devices"]["printer"]["status"]["warnings"] == ["paper_near_end"]
    assert replayed.notes == []


def test_unreachable_devices_stay_unreachable(tmp_path: Path, registered: None) -> None:
    doc = json.loads(field_dump(tmp_path).read_text())
    doc["devices"]["printer"].update(
        reachable=False,
        status=None,
        errors=[{"at": "t", "source": "query", "error": "DeviceTimeout", "message": "no reply"}],
    )
    doc["devices"]["reader"].update(reachable=False, status=None, errors=[
        {"at": "t", "source": "open", "error": "DeviceUnplugged", "message": "gone"}])  # fmt: skip
    path = tmp_path / "gone.json"
    path.write_text(json.dumps(doc))
    replayed = replay(load_dump_file(path))
    assert replayed.devices["printer"].faults.no_response is True
    assert replayed.devices["reader"].plugged is False
    assert any("silent" in n for n in replayed.notes)
    assert any("unplugged" in n for n in replayed.notes)


def test_simulate_devices_serves_the_replayed_printer_over_tcp(
    tmp_path: Path, registered: None
) -> None:
    dump = field_dump(tmp_path)
    lab = tmp_path / "lab"
    lab.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    sim = subprocess.Popen(
        [str(POSEDGE), "--state-dir", str(lab), "--json", "simulate", "devices",
         "--scenario", str(dump)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        where = read_json_document(sim)["devices"]
        config = config_file(
            tmp_path, where["printer"]["socket_url"], where["reader"]["socket_url"]
        )
        done = subprocess.run(
            [str(POSEDGE), "--state-dir", str(lab), "--config", str(config), "--json",
             "devices", "dump"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        sim.send_signal(signal.SIGTERM)
        _, err = sim.communicate(timeout=10)
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout)
    first = json.loads(dump.read_text())
    for kind in ("printer", "reader"):
        a, b = first["devices"][kind], second["devices"][kind]
        assert a["status"] == b["status"], kind
        assert same_counters(a) == same_counters(b), kind
    assert "replay: statistics seeded into" in err
    assert sim.returncode == 0, err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "{not json", "not valid JSON at line 1 column 2"),
        (lambda d: {**d, "version": 9}, "$.version: 9 is not supported"),
        (lambda d: {**d, "devices": {"printer": {**d["devices"]["printer"],
                                                 "status": {"cover_open": "maybe"}}}},
         "$.devices.printer.status.cover_open: must be true or false, got 'maybe'"),
        (lambda d: {**d, "devices": {"reader": {**d["devices"]["reader"],
                                                "statistics": {"GoodCardReadCount": 1.5}}}},
         "$.devices.reader.statistics.GoodCardReadCount: a counter must be an integer"),
    ],
)  # fmt: skip
def test_a_bad_dump_is_exit_2_naming_the_place(
    tmp_path: Path, registered: None, edit: Any, message: str
) -> None:
    doc = json.loads(field_dump(tmp_path).read_text())
    changed = edit(copy.deepcopy(doc))
    path = tmp_path / "bad.json"
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(ScenarioError, match=r"bad\.json"):
        load_replay(path)
    done = subprocess.run(
        [str(POSEDGE), "simulate", "devices", "--scenario", str(path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and str(path) in done.stderr
