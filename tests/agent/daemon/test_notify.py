"""sd_notify against real AF_UNIX datagram sockets the test owns (path and abstract)."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.agent.daemon import Notifier, watchdog_interval

from .support import captured_logs


class Receiver:
    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def recv(self) -> str:
        return self.sock.recv(4096).decode()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="pn-") as name:
        yield Path(name)


@pytest.fixture
def path_receiver(short_dir: Path) -> Iterator[tuple[Receiver, str]]:
    path = str(short_dir / "notify.sock")
    receiver = Receiver(path)
    yield receiver, path
    receiver.sock.close()


def test_path_socket_gets_each_message(path_receiver: tuple[Receiver, str]) -> None:
    receiver, path = path_receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("ready · printer ok · backlog 0")
    assert receiver.recv() == "READY=1\nSTATUS=ready · printer ok · backlog 0"
    assert notifier.status("printer paper out")
    assert receiver.recv() == "STATUS=printer paper out"
    assert notifier.watchdog()
    assert receiver.recv() == "WATCHDOG=1"
    assert notifier.stopping("stopping: parking sale")
    assert receiver.recv() == "STOPPING=1\nSTATUS=stopping: parking sale"
    assert notifier.extend_timeout(5_000_000)
    assert receiver.recv() == "EXTEND_TIMEOUT_USEC=5000000"
    notifier.close()


def test_reloading_carries_monotonic_usec(path_receiver: tuple[Receiver, str]) -> None:
    receiver, path = path_receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.close()
    lines = receiver.recv().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_abstract_socket() -> None:
    name = f"posedge-test-{uuid.uuid4().hex}"
    receiver = Receiver("\0" + name)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.address == "\0" + name
        assert notifier.watchdog()
        assert receiver.recv() == "WATCHDOG=1"
        notifier.close()
    finally:
        receiver.sock.close()


def test_status_text_cannot_inject_assignments(path_receiver: tuple[Receiver, str]) -> None:
    receiver, path = path_receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.status("evil\nREADY=1\n\tand more")
    notifier.close()
    assert receiver.recv() == "STATUS=evil READY=1 and more"


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.reloading()


def test_unusable_notify_socket_value_disables_notifications() -> None:
    with captured_logs() as records:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "relative/path"})
    assert not notifier.enabled
    assert any("NOTIFY_SOCKET" in r.getMessage() for r in records)


def test_send_failure_never_raises_and_logs_once_per_streak(short_dir: Path) -> None:
    path = str(short_dir / "later.sock")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    with captured_logs() as records:
        assert notifier.watchdog() is False
        assert notifier.status("x") is False
        warnings = [r for r in records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "cannot notify systemd" in warnings[0].getMessage()
        receiver = Receiver(path)  # systemd comes back
        assert notifier.watchdog() is True
        assert receiver.recv() == "WATCHDOG=1"
        receiver.sock.close()
    notifier.close()


def test_extend_timeout_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Notifier("/nonexistent").extend_timeout(0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected
