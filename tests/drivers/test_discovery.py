"""Discovery: known-model matching, access checks, USB via the simulated backend, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from posedge.agent.cli import cli
from posedge.drivers.discovery import (
    LIBUSB_MISSING,
    check_access,
    discover,
    list_usb_devices,
    match_model,
)
from posedge.simulator.links.usb_backend import SimUsbBackend

from .transport_fixtures import EchoDevice


def test_exact_model_beats_vendor_match() -> None:
    exact = match_model(0x04B8, 0x0E15)
    assert exact is not None and exact.name == "Epson TM-T20II"
    vendor = match_model(0x04B8, 0x9999)
    assert vendor is not None and vendor.name == "Epson TM series printer"
    reader = match_model(0x0801, 0x0011)
    assert reader is not None and reader.kind == "reader"
    assert match_model(0x1234, 0x5678) is None
    assert match_model(None, None) is None


def test_access_check_on_real_nodes(tmp_path: Path) -> None:
    node = tmp_path / "ttyUSB0"
    node.touch()
    assert check_access(str(node), "join dialout").ok is True
    assert check_access(str(tmp_path / "gone"), "x").ok is None
    if os.geteuid() != 0:  # root may open anything; the denied branch needs a normal user
        node.chmod(0)
        denied = check_access(str(node), "join dialout")
        assert (denied.ok, denied.advice) == (False, "join dialout")


def test_usb_devices_through_pyusb_backend() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice())
    backend.add_device(EchoDevice(), vendor_id=0x0801, product_id=0x0002, product="Mini Swipe")
    found, problem = list_usb_devices(backend)
    assert problem is None
    printer, reader = found
    assert printer.vid_pid == "04b8:0202" and printer.product == "TM-T88V"
    assert printer.url == "usb://04b8:0202?serial=SIM0001"
    assert printer.model is not None and printer.model.kind == "printer"
    assert reader.model is not None and reader.model.kind == "reader"
    assert printer.access.node is not None and printer.access.node.startswith("/dev/bus/usb/")


def test_unplugged_usb_device_is_not_listed() -> None:
    backend = SimUsbBackend()
    device = EchoDevice()
    backend.add_device(device)
    device.unplug()
    assert list_usb_devices(backend) == ([], None)


def test_discover_as_dict_is_json() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice())
    document = json.loads(json.dumps(discover(backend).as_dict()))
    assert document["usb"][0]["model"]["name"].startswith("Epson")
    assert isinstance(document["serial"], list)


def test_devices_command_json_is_one_document() -> None:
    result = CliRunner().invoke(cli, ["--json", "devices"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"serial", "usb", "usb_problem"}
    if document["usb_problem"] is not None:
        assert document["usb_problem"] == LIBUSB_MISSING


def test_devices_command_human() -> None:
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    assert "Serial ports" in result.stdout
    assert "USB devices" in result.stdout
