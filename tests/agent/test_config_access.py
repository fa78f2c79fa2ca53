"""A configuration file the service cannot read is a configuration error (issue 11 item 7).

Exit 2 with "cannot read FILE: permission denied; the service user needs read
access", never a traceback, and never a silent fall-back to built-in defaults.

The real thing: the real ``posedge`` entry point under a real non-root uid
(65534, nobody), so the kernel itself denies the read. Tests run as root, and
this environment's Python lives under /root (mode 0700), which nobody may not
execute, so a ``subprocess.run(user=65534)`` cannot even start the
interpreter. Instead the test forks (the child inherits the already imported
modules), drops to uid/gid 65534 for good (setgroups, setgid, setuid), and runs
``posedge.agent.cli.main`` there with stdout and stderr captured.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import posedge.agent.cli as cli_module
from posedge.agent import config as config_module
from posedge.agent.errors import ConfigError

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")


def as_nobody(work: Callable[[], object]) -> str:
    """Run ``work`` in a forked child as uid/gid 65534; what it printed, its exit code or its
    exception, as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        out, err = io.StringIO(), io.StringIO()
        result = ""
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sys.stdout, sys.stderr = out, err
            try:
                value = work()
                result = f"returned {value!r}"
            except SystemExit as exc:
                result = f"exit {exc.code}"
            except BaseException as exc:
                result = f"raised {type(exc).__name__}: {exc}"
        finally:
            report = f"{result}\n--stdout--\n{out.getvalue()}\n--stderr--\n{err.getvalue()}"
            os.write(write_end, report.encode())
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's own tmp dirs are under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="posedge-cfg-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_cli(*argv: str, config_env: Path | None = None) -> Callable[[], object]:
    def work() -> object:
        os.environ.pop("POSEDGE_CONFIG", None)
        if config_env is not None:
            os.environ["POSEDGE_CONFIG"] = str(config_env)
        cli_module.main(list(argv))
        return None

    return work


def test_a_config_file_the_service_cannot_read_is_exit_2(open_dir: Path) -> None:
    config = open_dir / "posedge.toml"
    config.write_text('[terminal]\nname = "lane 1"\n')
    os.chmod(config, 0o000)
    state = open_dir / "state"
    report = as_nobody(run_cli("--state-dir", str(state), "sync", "status", config_env=config))
    assert report.startswith("exit 2"), report
    assert f"cannot read {config}: permission denied; the service user needs read access" in report
    assert "Traceback" not in report
    assert not state.exists()


def test_an_explicit_config_the_service_cannot_read_gets_the_same_message(open_dir: Path) -> None:
    """Named with --config the file reaches posedge's own loader (click does not check it
    first), so the message is the uniform one, not click's "not readable"."""
    config = open_dir / "posedge.toml"
    config.write_text('[terminal]\nname = "lane 1"\n')
    os.chmod(config, 0o000)
    state = open_dir / "state"
    report = as_nobody(
        run_cli("--config", str(config), "--state-dir", str(state), "sync", "status")
    )
    assert report.startswith("exit 2"), report
    assert f"cannot read {config}: permission denied; the service user needs read access" in report
    assert "not readable" not in report and "Traceback" not in report
    assert not state.exists()


def test_a_config_dir_the_service_cannot_search_is_exit_2_not_a_traceback(open_dir: Path) -> None:
    """/etc/posedge as systemd's ConfigurationDirectory= makes it: root:root 0750."""
    etc = open_dir / "etc-posedge"
    etc.mkdir(mode=0o750)
    config = etc / "posedge.toml"
    config.write_text('[terminal]\nname = "lane 1"\n')
    report = as_nobody(run_cli("--config", str(config), "--state-dir", str(open_dir / "s"),
                               "sync", "status"))  # fmt: skip
    assert report.startswith("exit 2"), report
    assert f"cannot read {config}: permission denied" in report
    assert "the service user needs read access" in report
    assert "Traceback" not in report and "internal error" not in report


def test_an_unreadable_default_config_is_an_error_not_the_defaults(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config the default file is optional, but one that is there and cannot be
    read must not be silently replaced by the built-in defaults."""
    etc = open_dir / "etc-posedge"
    etc.mkdir(mode=0o750)
    default = etc / "posedge.toml"
    default.write_text('[sync]\nurl = "https://bo.example.com"\n')
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", default)

    def load() -> object:
        try:
            return config_module.load_config(None, env={}).config.sync.url
        except ConfigError as exc:
            return f"ConfigError exit {exc.exit_code}: {exc}"

    report = as_nobody(load)
    assert report.startswith("returned 'ConfigError exit 2: cannot read"), report
    assert "permission denied" in report
    # Root (or the posedge user once tmpfiles.d gave it access) reads it fine.
    assert config_module.load_config(None, env={}).config.sync.url == "https://bo.example.com"


def test_a_missing_default_config_still_means_the_defaults(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", open_dir / "absent" / "x.toml")
    report = as_nobody(lambda: config_module.load_config(None, env={}).source)
    assert report.startswith("returned None"), report


def test_a_readable_config_still_loads_as_nobody(open_dir: Path) -> None:
    config = open_dir / "posedge.toml"
    config.write_text('[terminal]\nname = "lane 1"\n')
    os.chmod(config, 0o644)
    report = as_nobody(lambda: config_module.load_config(config, env={}).config.terminal.name)
    assert report.startswith("returned 'lane 1'"), report
