"""Device statistics files: explicit modes whatever the umask, never through a symbolic link.

Issue 11 item 4: ``<state dir>/devices/<id>.stats.json`` is created 0640 (its directory
0750), written atomically through a temporary file nobody can plant a link for, and read
without following a link (a link or a non-regular file is set aside like a damaged file).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from posedge.drivers.statistics import DeviceStatistics


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o777])
def test_the_stats_file_is_0640_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    stats = DeviceStatistics(tmp_path, "printer-1")
    stats.increment("GoodPrintCount", 3)
    old = os.umask(mask)
    try:
        stats.save(force=True)
        stats.increment("GoodPrintCount")
        stats.save(force=True)  # the replacing file gets the mode too
    finally:
        os.umask(old)
    assert stats.path is not None
    assert mode_of(stats.path) == 0o640
    assert mode_of(stats.path.parent) == 0o750
    assert sorted(p.name for p in stats.path.parent.iterdir()) == ["printer-1.stats.json"]
    assert DeviceStatistics(tmp_path, "printer-1").get("GoodPrintCount") == 4


def test_a_link_planted_at_a_temporary_name_is_never_written_through(tmp_path: Path) -> None:
    stats = DeviceStatistics(tmp_path, "printer-1")
    assert stats.path is not None
    stats.path.parent.mkdir(mode=0o750)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # The name the temporary file used to have (predictable: the pid).
    stats.path.with_suffix(f".tmp{os.getpid()}").symlink_to(victim)
    stats.increment("GoodPrintCount")
    stats.save(force=True)
    assert victim.read_text() == "precious\n"
    assert json.loads(stats.path.read_text())["counters"] == {"GoodPrintCount": 1}


def test_a_symlinked_stats_file_is_not_read_and_its_target_left_alone(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir(mode=0o750)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"counters": {"GoodPrintCount": 99}, "online_s": 0}))
    link = devices / "printer-1.stats.json"
    link.symlink_to(elsewhere)
    stats = DeviceStatistics(tmp_path, "printer-1")
    assert stats.get("GoodPrintCount") == 0  # the link is set aside, counting restarts
    assert (devices / "printer-1.stats.corrupt").is_symlink()
    stats.increment("GoodPrintCount")
    stats.save(force=True)
    assert not link.is_symlink() and mode_of(link) == 0o640
    assert json.loads(elsewhere.read_text())["counters"] == {"GoodPrintCount": 99}


def test_a_fifo_where_the_stats_file_belongs_does_not_hang_the_driver(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir(mode=0o750)
    os.mkfifo(devices / "printer-1.stats.json")
    loaded: list[DeviceStatistics] = []
    worker = threading.Thread(
        target=lambda: loaded.append(DeviceStatistics(tmp_path, "printer-1")), daemon=True
    )
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # unblock the reader so the test process can finish
        fd = os.open(devices / "printer-1.stats.json", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("loading the statistics blocked on a FIFO")
    assert loaded and loaded[0].get("GoodPrintCount") == 0
    assert stat.S_ISFIFO(os.lstat(devices / "printer-1.stats.corrupt").st_mode)
