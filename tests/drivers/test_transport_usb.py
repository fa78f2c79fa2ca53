"""Real pyusb code against the simulated backend: discovery, claiming, descriptors."""

from __future__ import annotations

import pytest
import usb.core
import usb.util

from posedge.drivers.errors import DeviceBusy, DeviceError, DeviceUnplugged, UnsupportedURL
from posedge.drivers.transport import open_transport
from posedge.drivers.transport.usb import UsbTransport, parse_usb_url
from posedge.simulator.links.usb_backend import SimUsbBackend

from .transport_fixtures import EchoDevice


def make_backend(**identity: object) -> tuple[SimUsbBackend, EchoDevice]:
    backend = SimUsbBackend()
    device = EchoDevice()
    backend.add_device(device, **identity)
    return backend, device


def test_pyusb_sees_descriptors_and_strings() -> None:
    backend, _ = make_backend()
    dev = usb.core.find(idVendor=0x04B8, idProduct=0x0202, backend=backend)
    assert dev is not None
    assert (dev.manufacturer, dev.product, dev.serial_number) == ("EPSON", "TM-T88V", "SIM0001")
    text = str(dev)  # walks every descriptor, ending on IndexError
    assert "TM-T88V" in text and "0x82" in text
    cfg = dev[0]
    intf = cfg[(0, 0)]
    assert usb.util.find_descriptor(intf, bEndpointAddress=0x05) is None
    with pytest.raises(usb.core.USBError):
        dev.read(0x83, 1, 10)  # no such endpoint: pyusb's error path terminates


def test_open_via_registry_and_round_trip() -> None:
    backend, device = make_backend()
    with open_transport("usb://04b8:0202?interface=0", usb_backend=backend) as transport:
        transport.write(b"ping")
        assert transport.read_exactly(4, 1.0) == b"ping"
    assert device.received == b"ping"


def test_detaches_kernel_driver() -> None:
    backend, _ = make_backend(kernel_driver=True)
    sim = backend.enumerate_devices().__next__()
    with UsbTransport("usb://04b8:0202", backend=backend) as transport:
        assert not sim.kernel_driver_active
        transport.write(b"x")


def test_second_claim_is_busy() -> None:
    backend, _ = make_backend()
    first = UsbTransport("usb://04b8:0202", backend=backend)
    with first, pytest.raises(DeviceBusy, match="usblp"):
        UsbTransport("usb://04b8:0202", backend=backend)


def test_selects_by_serial_number() -> None:
    backend = SimUsbBackend()
    first, second = EchoDevice(), EchoDevice()
    backend.add_device(first, serial="AAA")
    backend.add_device(second, serial="BBB")
    with UsbTransport("usb://04b8:0202?serial=BBB", backend=backend) as transport:
        transport.write(b"2")
    assert (bytes(first.received), bytes(second.received)) == (b"", b"2")


def test_not_found_says_what_was_searched() -> None:
    backend, _ = make_backend()
    with pytest.raises(DeviceUnplugged, match="no USB device 04b8:0202 with serial 'ZZZ'"):
        UsbTransport("usb://04b8:0202?serial=ZZZ", backend=backend)


def test_missing_interface_is_reported() -> None:
    backend, _ = make_backend()
    with pytest.raises(DeviceError, match="no interface 3"):
        UsbTransport("usb://04b8:0202?interface=3", backend=backend)


def test_writes_in_chunks() -> None:
    backend, device = make_backend()
    with UsbTransport("usb://04b8:0202", backend=backend, chunk_bytes=10) as transport:
        device.apply_fault("no_response")
        transport.write(bytes(95))
    assert len(device.received) == 95


def test_no_libusb_is_a_clear_error() -> None:
    try:
        usb.core.find()
    except usb.core.NoBackendError:
        with pytest.raises(DeviceError, match="libusb"):
            UsbTransport("usb://04b8:0202")
    else:
        pytest.skip("a real libusb backend is installed here")


@pytest.mark.parametrize(
    "url",
    ["usb://04b8", "usb://zzzz:0202", "usb://04b8:0202?speed=1", "usb://04b8:0202?interface=x"],
)
def test_bad_usb_urls(url: str) -> None:
    with pytest.raises(UnsupportedURL):
        parse_usb_url(url)


def test_parse_usb_url() -> None:
    address = parse_usb_url("usb://04B8:0e15?serial=X1&interface=1")
    assert (address.vendor_id, address.product_id, address.serial, address.interface) == (
        0x04B8,
        0x0E15,
        "X1",
        1,
    )
