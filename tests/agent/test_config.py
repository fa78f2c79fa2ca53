"""Strict configuration: every bad key, type and range is named; stored data is untouched."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from posedge.agent.config import Config, load_config, parse_duration, parse_size
from posedge.agent.errors import ConfigError
from posedge.agent.journal import JOURNAL_FILE_NAME, Journal

from .journal.helpers import fill, posedge

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented_example(tmp_path: Path) -> Path:
    """The complete example file from docs/configuration.md, so the doc cannot rot."""
    text = DOCS.read_text()
    block = text.split("## Complete example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.toml"
    path.write_text(block)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "posedge.toml"
    path.write_text(text)
    return path


def test_defaults_apply_when_the_default_file_is_absent() -> None:
    loaded = load_config(None, env={})
    assert loaded.source is None or loaded.source.exists()
    assert loaded.config.journal.retention_s == 90 * 86400
    assert loaded.config.reader.protocol == "magtek"


def test_documented_example_file_loads_and_sets_every_key(tmp_path: Path) -> None:
    path = documented_example(tmp_path)
    loaded = load_config(path, env={})
    assert loaded.source == path
    assert loaded.config.reader.protocol == "framed"
    example = tomllib.loads(path.read_text())
    for section, model in Config.model_fields.items():
        assert model.annotation is not None
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            assert key in example[section], f"example lacks {section}.{key}"
            assert f"`{key}`" in DOCS.read_text(), f"docs lack {section}.{key}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[journal]\nretension = '30d'\n", "unknown key journal.retension"),
        ("[jornal]\nretention = '30d'\n", "unknown key jornal"),
        ("[journal]\nretention = 30\n", "journal.retention = 30"),
        ("[journal]\nretention = '30 days'\n", "not a duration"),
        ("[journal]\nretention = '5m'\n", "out of range; allowed 1h to 3650d"),
        ("[printer]\nbaudrate = 9601\n", "printer.baudrate = 9601: allowed: 1200, 2400"),
        ("[printer]\ncolumns = 200\n", "printer.columns = 200"),
        ("[reader]\nprotocol = 'zvt'\n", "allowed: 'magtek' or 'framed'"),
        ("[printer]\nurl = ''\n", "empty device URL"),
        ("[terminal]\nid = 'has space'\n", "terminal.id = 'has space'"),
        ("[journal\nretention = '30d'\n", "not valid TOML"),
        ("journal = 5\n", "journal = 5"),
    ],
)
def test_bad_files_name_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_environment_overrides_win_and_are_named_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "[printer]\nbaudrate = 9600\n")
    loaded = load_config(path, env={"POSEDGE_PRINTER__BAUDRATE": "19200"})
    assert loaded.config.printer.baudrate == 19200
    loaded = load_config(path, env={"POSEDGE_READER__URL": "socket://127.0.0.1:9100"})
    assert loaded.config.reader.url == "socket://127.0.0.1:9100"
    with pytest.raises(
        ConfigError, match=r"printer.baudrate = 7 \(from POSEDGE_PRINTER__BAUDRATE\)"
    ):
        load_config(path, env={"POSEDGE_PRINTER__BAUDRATE": "7"})
    with pytest.raises(ConfigError, match="POSEDGE_<SECTION>__<KEY>"):
        load_config(path, env={"POSEDGE_A__B__C": "1"})


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, env={"POSEDGE_CONFIG": str(tmp_path / "missing.toml")})


def test_durations_and_sizes() -> None:
    assert parse_duration("90s") == 90 and parse_duration("72h") == 72 * 3600
    assert parse_duration("250ms") == 0.25
    assert parse_size("1MiB") == 1024**2 and parse_size("512") == 512
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ValueError, match="not a size"):
        parse_size("1.5MB")


def test_bad_config_exits_2_and_never_touches_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Journal.open(state) as jr:
        fill(jr, 5)
    digest = hashlib.sha256((state / JOURNAL_FILE_NAME).read_bytes()).hexdigest()
    listing = sorted(p.name for p in state.iterdir())
    bad = write(tmp_path, "[journal]\nbusy_timeout = 'forever'\n")
    done = posedge("--state-dir", str(state), "--config", str(bad), "journal", "note", "x")
    assert done.returncode == 2
    assert "journal.busy_timeout = 'forever'" in done.stderr
    assert hashlib.sha256((state / JOURNAL_FILE_NAME).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in state.iterdir()) == listing
