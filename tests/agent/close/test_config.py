"""``[close]`` settings: a bad one names the key, the value and what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from posedge.agent.config import load_config
from posedge.agent.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[close]\nat = "25:00"\n', "close.at = '25:00': not a local time of day"),
        ('[close]\nat = "23.30"\n', 'write "HH:MM"'),
        ('[close]\ntimezone = "Mars/Olympus"\n', "close.timezone = 'Mars/Olympus': not a known"),
        ('[close]\nday_starts = "4"\n', "close.day_starts = '4'"),
        ('[close]\nwhen = "23:30"\n', "unknown key close.when"),
    ],
)
def test_bad_close_settings_are_refused_with_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "posedge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert expected in str(info.value) and info.value.exit_code == 2


def test_close_settings_load() -> None:
    loaded = load_config(None, env={"POSEDGE_CLOSE__AT": '"23:30"',
                                    "POSEDGE_CLOSE__TIMEZONE": '"Europe/Berlin"'})  # fmt: skip
    assert loaded.config.close.at == "23:30"
    assert loaded.config.close.timezone == "Europe/Berlin"
    assert loaded.config.close.day_starts == "00:00"
