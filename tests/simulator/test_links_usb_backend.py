"""The pyusb backend behaves like libusb on the paths pyusb users hit."""

from __future__ import annotations

import errno

import pytest
import usb.core
import usb.util

from posedge.simulator.links.usb_backend import SimUsbBackend

from ..drivers.transport_fixtures import EchoDevice


def find(backend: SimUsbBackend) -> usb.core.Device:
    dev = usb.core.find(idVendor=0x04B8, idProduct=0x0202, backend=backend)
    assert dev is not None
    return dev


def test_find_descriptor_with_no_match_terminates() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice())
    dev = find(backend)
    dev.set_configuration()
    assert usb.util.find_descriptor(dev.get_active_configuration(), bInterfaceNumber=5) is None
    assert len(list(dev.get_active_configuration())) == 1


def test_read_timeout_is_usb_timeout_in_milliseconds() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice())
    dev = find(backend)
    dev.set_configuration()
    with pytest.raises(usb.core.USBTimeoutError) as info:
        dev.read(0x82, 64, 20)
    assert info.value.errno == errno.ETIMEDOUT and info.value.backend_error_code == -7


def test_write_then_read_fills_callers_array() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice())
    dev = find(backend)
    dev.set_configuration()
    assert dev.write(0x01, b"abc", 100) == 3
    buffer = usb.util.create_buffer(64)
    assert dev.read(0x82, buffer, 100) == 3
    assert bytes(buffer[:3]) == b"abc"


def test_unplug_hides_device_and_kills_old_handles() -> None:
    backend = SimUsbBackend()
    device = EchoDevice()
    backend.add_device(device)
    dev = find(backend)
    dev.set_configuration()
    old_address = dev.address
    device.unplug()
    assert usb.core.find(idVendor=0x04B8, backend=backend) is None
    with pytest.raises(usb.core.USBError) as info:
        dev.write(0x01, b"x", 100)
    assert info.value.errno == errno.ENODEV
    device.replug()
    with pytest.raises(usb.core.USBError):
        dev.write(0x01, b"x", 100)  # an old handle stays dead after replug
    again = find(backend)
    assert again.address != old_address
    again.set_configuration()
    assert again.write(0x01, b"x", 100) == 1


def test_kernel_driver_makes_claim_busy_until_detached() -> None:
    backend = SimUsbBackend()
    backend.add_device(EchoDevice(), kernel_driver=True)
    dev = find(backend)
    dev.set_configuration()
    assert dev.is_kernel_driver_active(0)
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(dev, 0)
    assert info.value.errno == errno.EBUSY
    dev.detach_kernel_driver(0)
    usb.util.claim_interface(dev, 0)
