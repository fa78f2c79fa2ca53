"""open_transport routes URLs by scheme; sim:// reaches named live devices."""

from __future__ import annotations

from importlib import metadata
from importlib.metadata import EntryPoint

import pytest

from posedge.drivers import transport
from posedge.drivers.errors import DeviceUnplugged, UnsupportedURL
from posedge.drivers.transport import (
    TransportOptions,
    open_transport,
    register_scheme,
    supported_schemes,
)
from posedge.drivers.transport.base import Transport
from posedge.drivers.transport.serial import SerialTransport
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device

from .transport_fixtures import EchoDevice


def test_loop_url_goes_to_serial() -> None:
    with open_transport("loop://") as transport:
        assert isinstance(transport, SerialTransport)
        transport.write(b"abc")
        assert transport.read_exactly(3, 1.0) == b"abc"


def test_unknown_scheme_lists_supported_forms() -> None:
    with pytest.raises(UnsupportedURL) as info:
        open_transport("ftp://printer")
    message = str(info.value)
    for form in ("/dev/ttyUSB0", "socket://", "usb://VVVV:PPPP", "sim://printer"):
        assert form in message


def test_empty_url_is_unsupported() -> None:
    with pytest.raises(UnsupportedURL):
        open_transport("  ")


def test_register_scheme_adds_a_transport() -> None:
    opened: list[tuple[str, TransportOptions]] = []

    def factory(url: str, options: TransportOptions) -> Transport:
        opened.append((url, options))
        return open_transport("loop://")

    register_scheme("test-scheme", factory)
    assert "test-scheme" in supported_schemes()
    open_transport("test-scheme://x").close()
    assert opened[0][0] == "test-scheme://x"


def test_sim_url_reaches_registered_device_and_applies_faults() -> None:
    device = EchoDevice()
    register_sim_device("echo-reg", device)
    try:
        with open_transport("sim://echo-reg?faults=garbage:hex=aa,slow_response:delay_s=0") as t:
            t.write(b"hi")
            assert t.read_exactly(3, 1.0) == b"\xaahi"
        device.unplug()
        with pytest.raises(DeviceUnplugged):
            open_transport("sim://echo-reg")
    finally:
        unregister_sim_device("echo-reg")


def test_sim_unknown_device_or_fault() -> None:
    with pytest.raises(UnsupportedURL, match="no simulated device named 'toaster'"):
        open_transport("sim://toaster")
    register_sim_device("echo-bad", EchoDevice())
    try:
        with pytest.raises(UnsupportedURL, match="bad fault 'melt'"):
            open_transport("sim://echo-bad?faults=melt")
        with pytest.raises(UnsupportedURL, match="allowed: faults"):
            open_transport("sim://echo-bad?fault=split")
    finally:
        unregister_sim_device("echo-bad")


# ---- schemes from plug-ins (posedge.transports entry points) --------------------
def _plugins(monkeypatch: pytest.MonkeyPatch, *found: EntryPoint) -> None:
    """Pretend the installed plug-ins are ``found``, none of them loaded yet."""
    monkeypatch.setattr(transport, "_FACTORIES", dict(transport._FACTORIES))
    for entry in found:
        transport._FACTORIES.pop(entry.name, None)
    transport._FACTORIES.pop("sim", None)
    monkeypatch.setattr(
        transport,
        "entry_points",
        lambda group: [e for e in found if e.group == group],
    )


def _loop_factory(url: str, options: TransportOptions) -> Transport:
    return open_transport("loop://")


def test_a_scheme_comes_from_its_plugin_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint("plug", f"{__name__}:_loop_factory", transport.TRANSPORT_ENTRY_POINTS)
    _plugins(monkeypatch, entry)
    assert "plug" in supported_schemes() and "plug" not in transport._FACTORIES
    open_transport("plug://x").close()
    assert transport._FACTORIES["plug"] is _loop_factory


def test_sim_without_the_simulator_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _plugins(monkeypatch)
    assert "sim" not in supported_schemes()
    with pytest.raises(UnsupportedURL) as info:
        open_transport("sim://printer")
    message = str(info.value)
    assert "posedge simulator" in message and "pip install posedge" in message
    assert "posedge.transports" in message


def test_a_plugin_that_cannot_load_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint("sim", "posedge.no_such_module:factory", transport.TRANSPORT_ENTRY_POINTS)
    _plugins(monkeypatch, entry)
    with pytest.raises(UnsupportedURL, match=r"posedge.no_such_module:factory cannot be loaded"):
        open_transport("sim://printer")


def test_the_simulator_provides_sim() -> None:
    (entry,) = (e for e in metadata.entry_points(group=transport.TRANSPORT_ENTRY_POINTS)
                if e.name == "sim")  # fmt: skip
    assert entry.value == "posedge.simulator.transport:open_sim_transport"
