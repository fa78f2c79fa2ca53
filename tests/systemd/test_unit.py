"""posedge.service: `systemd-analyze verify` clean, security exposure ≤ 2.0, sysusers valid,
tmpfiles.d gives /etc/posedge to the service's group, the till has a group of its own.

`verify` checks that ExecStart= names an existing executable, and
/usr/bin/posedge exists only on an installed host. So the unit is verified
twice: as shipped, where the only complaint accepted is that missing binary,
and as a copy whose ExecStart= points at the posedge console script of this
environment (and nothing else differs), which must be completely clean.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "posedge.service"
SYSUSERS = ROOT / "systemd" / "posedge.sysusers.conf"
TMPFILES = ROOT / "systemd" / "posedge.tmpfiles.conf"
RULES = ROOT / "systemd" / "60-posedge.rules"
OPERATIONS = ROOT / "docs" / "operations.md"
TILL_GROUP = "posedge-till"
SHIPPED_BINARY = "/usr/bin/posedge"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (CI installs the systemd package)"
)


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` → values in order (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


def posedge_script() -> Path:
    script = Path(sys.executable).parent / "posedge"
    assert script.exists(), "the posedge console script is not installed in this environment"
    return script


@needs_analyze
def test_verify_is_clean_with_an_existing_executable(tmp_path: Path) -> None:
    text = UNIT.read_text()
    copy = tmp_path / "posedge.service"
    copy.write_text(text.replace(f"ExecStart={SHIPPED_BINARY} ", f"ExecStart={posedge_script()} "))
    changed = set(text.splitlines()) ^ set(copy.read_text().splitlines())
    assert {line.split("=", 1)[0] for line in changed} == {"ExecStart"}
    result = analyze("verify", str(copy))
    output = result.stdout + result.stderr
    # Only lines about our unit count: a host's own broken units are not ours to judge.
    ours = [line for line in output.splitlines() if "posedge" in line]
    assert result.returncode == 0 and ours == [], output


@needs_analyze
def test_verify_of_the_shipped_unit_only_misses_the_installed_binary() -> None:
    result = analyze("verify", str(UNIT))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if Path(SHIPPED_BINARY).exists():
        assert result.returncode == 0 and lines == []
    else:
        assert lines == [
            f"posedge.service: Command {SHIPPED_BINARY} is not executable: "
            "No such file or directory"
        ]


@needs_analyze
def test_security_exposure_is_at_most_two() -> None:
    result = analyze("security", "--offline=true", "--no-pager", str(UNIT))
    if "--offline" in result.stderr and "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze predates --offline (systemd < 252)")
    match = re.search(r"Overall exposure level for posedge\.service:\s*([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_keeps_the_contract_the_daemon_relies_on() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Service.Type"] == ["notify"] and s["Service.NotifyAccess"] == ["main"]
    assert s["Service.ExecStart"] == [f"{SHIPPED_BINARY} --config /etc/posedge/posedge.toml run"]
    assert s["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Service.WatchdogSec"] == ["30"] and s["Service.Restart"] == ["on-failure"]
    assert s["Service.StateDirectory"] == ["posedge"]
    assert s["Service.StateDirectoryMode"] == ["0700"]
    assert s["Service.RuntimeDirectory"] == ["posedge"]
    # 0711: the till (group posedge-till, not posedge) passes through to api.sock.
    assert s["Service.RuntimeDirectoryMode"] == ["0711"]
    assert s["Service.ConfigurationDirectory"] == ["posedge"]
    assert s["Service.User"] == ["posedge"] and s["Service.Group"] == ["posedge"]
    assert s["Service.UMask"] == ["0077"]


def test_exec_start_is_a_command_line_posedge_accepts() -> None:
    """``--config`` is a global option: it goes before the command (``posedge run --config``
    is a usage error, exit 2, which RestartPreventExitStatus= makes final)."""
    (exec_start,) = unit_settings(UNIT.read_text())["Service.ExecStart"]
    binary, *args = exec_start.split()
    assert binary == SHIPPED_BINARY
    env = {k: v for k, v in os.environ.items() if k != "POSEDGE_CONFIG"}
    done = subprocess.run(
        [str(posedge_script()), *args, "--help"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage: posedge run" in done.stdout


def test_no_core_dumps() -> None:
    """The PAN-token key and card data in flight live only in the process's memory: a core
    dump would write them to disk."""
    assert unit_settings(UNIT.read_text())["Service.LimitCORE"] == ["0"]


def test_devices_stay_reachable_under_the_hardening() -> None:
    """A private /dev would hide every serial and USB node; the device ACL must list them."""
    s = unit_settings(UNIT.read_text())
    assert s.get("Service.PrivateDevices", ["no"]) == ["no"]
    assert s["Service.DevicePolicy"] == ["closed"]
    allowed = {value.split()[0]: value.split()[1] for value in s["Service.DeviceAllow"]}
    for device_class in ("char-ttyUSB", "char-ttyACM", "char-ttyS", "char-usb_device"):
        assert allowed.get(device_class) == "rw", device_class
    families = s["Service.RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= set(families)
    assert "dialout" in s["Service.SupplementaryGroups"][0].split()
    assert s["Service.CapabilityBoundingSet"] == [""]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_creates_the_posedge_user_and_group(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-sysusers", "--dry-run", f"--root={tmp_path}", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Creating group 'posedge'" in output and "Creating user 'posedge'" in output
    assert f"Creating group '{TILL_GROUP}'" in output


def test_the_till_reaches_the_socket_through_its_own_group_not_the_devices() -> None:
    """The till's group owns the API socket; the readers' and printers' group is the
    service's alone (udev rules), and the docs tell the installer which one to join."""
    from posedge.agent.api.server import SOCKET_GROUP

    assert SOCKET_GROUP == TILL_GROUP
    s = unit_settings(UNIT.read_text())
    assert s["Service.Group"] == ["posedge"]
    assert TILL_GROUP in s["Service.SupplementaryGroups"][0].split()  # so it may chgrp the socket
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines()]
    assert ["g", TILL_GROUP, "-"] in sysusers
    assert not [line for line in sysusers if line[:1] == ["m"] and TILL_GROUP in line[1:2]]
    rules = [line for line in RULES.read_text().splitlines() if not line.startswith("#")]
    device_groups = set(re.findall(r'GROUP="([^"]+)"', "\n".join(rules)))
    assert device_groups == {"posedge"} and SOCKET_GROUP not in device_groups
    docs = OPERATIONS.read_text()
    assert f"usermod -aG {TILL_GROUP} " in docs
    assert "usermod -aG posedge " not in docs and "usermod -aG dialout" not in docs


@pytest.mark.skipif(
    shutil.which("systemd-tmpfiles") is None or shutil.which("systemd-sysusers") is None,
    reason="systemd-tmpfiles or systemd-sysusers missing",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="chown to the posedge group needs root")
def test_tmpfiles_gives_etc_posedge_to_the_service_group(tmp_path: Path) -> None:
    """In a scratch root: sysusers creates the group, tmpfiles creates /etc/posedge
    root:posedge 0750 and fixes an existing posedge.toml to root:posedge 0640 — also when
    systemd (ConfigurationDirectory=) already made the directory root:root."""
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    groups = {
        line.split(":")[0]: int(line.split(":")[2])
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    etc_posedge = tmp_path / "etc" / "posedge"
    etc_posedge.mkdir(mode=0o750)  # as ConfigurationDirectory= leaves it: root:root
    (etc_posedge / "posedge.toml").write_text("[terminal]\n")
    os.chmod(etc_posedge / "posedge.toml", 0o600)
    done = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(TMPFILES)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for path, mode in ((etc_posedge, 0o750), (etc_posedge / "posedge.toml", 0o640)):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (0, groups["posedge"]), path
        assert stat.S_IMODE(info.st_mode) == mode, path
